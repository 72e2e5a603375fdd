"""The guardrail soak: many simulated incidents of every kind, and an auditor that counts breaches.

Nine ECS services live on the local AWS endpoint (moto), watched by the real watcher, guarded
remediator and incident log. A simulated world gives them incidents of the six kinds of the
response matrix at random (some services busy enough to hit cooldowns and the daily cap), ships
deployments that take minutes to roll out (moto has no rollouts, so the world shows them in
DescribeServices while they last), removes old revisions on one service, attaches an
Application Auto Scaling target to another, and keeps one outside the allow-list. Two services
run in approve mode. A simulated on-call engineer acknowledges, approves, takes manual actions
and resolves; an alarm invokes the rollback path now and then.

The auditor does not trust the guardrails' own bookkeeping: it hooks every mutating ECS call
(UpdateService, StopTask) the platform makes, reads the service's true state from the endpoint
at that moment, and checks each rule against it. ``breaches`` must be 0.

What is measured is guardrail behaviour, not detection: the metrics are synthetic symptoms and
the detector is a threshold stand-in behind the watcher's detector seam, so a thousand incidents
take minutes, not hours.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly
from harness.world import SimulatedPlatform
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service import usecases
from service.aws import ClientFactory
from service.bootstrap import Platform
from service.ecs import EcsActions, parse_task_definition
from service.guardrails import GuardrailConfig, Guardrails
from service.repository import IncidentRepository
from service.requests import ActionCommand, RollbackCommand
from service.settings import Mode, ServiceTarget, Settings
from service.store import OPEN_STATUSES, IncidentStore
from service.watch_config import WatchConfig
from service.watcher import TickResult, Watcher

CLUSTER = "soak"
NOMINAL = 2
SOAK_START = pd.Timestamp("2026-11-02T00:00:00Z")   # a Monday: the published soak figures start here
# kind -> (metric values while it lasts, the action that cures it)
KINDS: dict[str, tuple[dict[str, float], str | None]] = {
    "high_cpu": ({"cpu_utilization": 85.0}, "scale_up"),
    "high_cpu_with_errors": ({"cpu_utilization": 85.0, "error_count": 30.0}, "scale_up"),
    "memory_leak": ({"memory_utilization": 85.0}, "restart_tasks"),
    "error_rate_low": ({"error_count": 8.0}, None),
    "error_rate_high": ({"error_count": 40.0}, "rollback"),
    "slow_response": ({"response_time": 0.9}, "scale_up"),
}
QUIET = {"cpu_utilization": 30.0, "memory_utilization": 45.0, "error_count": 0.0, "response_time": 0.15}
LIMITS = {"cpu_utilization": 60.0, "memory_utilization": 70.0, "error_count": 4.0, "response_time": 0.5}


@dataclass(frozen=True)
class ServicePlan:
    """One soak service: how often it has incidents and what is special about it."""

    name: str
    mean_gap_minutes: float
    mode: Mode = Mode.AUTO
    allowed: bool = True
    autoscaling_max: int | None = None
    prune_old_revisions: bool = False


PLANS = (
    ServicePlan("busy-a", 20), ServicePlan("busy-b", 60), ServicePlan("web", 120),
    ServicePlan("api", 240), ServicePlan("scaled", 90, autoscaling_max=3),
    ServicePlan("pruned", 120, prune_old_revisions=True), ServicePlan("outside", 120, allowed=False),
    ServicePlan("approve-a", 90, mode=Mode.APPROVE), ServicePlan("approve-b", 180, mode=Mode.APPROVE),
)
GUARDRAILS = GuardrailConfig(
    allowed_services=[f"{CLUSTER}/{p.name}" for p in PLANS if p.allowed],
    cooldown_minutes={"scale_up": 10, "scale_to": 10, "restart_tasks": 30, "rollback": 60},
    max_desired_count=5, max_actions_per_day=8)


@dataclass
class Symptom:
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp | None   # None: until cured or resolved by a person
    cures: bool                # whether the playbook's action fixes it this time


class ThresholdDetector:
    """A stand-in detector behind the watcher's seam: fixed limits, scores of 10 above them."""

    threshold = 4.0
    specs = None

    def detect(self, frame: pd.DataFrame) -> list[Anomaly]:
        found = []
        for metric, limit in LIMITS.items():
            if metric not in frame.columns:
                continue
            for ts, value in frame[metric][frame[metric] > limit].items():
                found.append(Anomaly.build(metric, ts, value, QUIET[metric], 0.0, limit, 10.0))
        return sorted(found, key=lambda a: (a.timestamp, a.metric))

    def expected_frame(self, index: pd.DatetimeIndex, metrics: list[str]) -> pd.DataFrame:
        return pd.DataFrame({m: np.full(len(index), QUIET[m]) for m in metrics if m in QUIET}, index=index)

    def within_baseline(self, frame: pd.DataFrame, metrics: list[str]) -> dict[str, bool]:
        return {m: bool(np.nanmedian(frame[m].to_numpy()) <= LIMITS[m]) for m in metrics
                if m in LIMITS and frame[m].notna().any()}


class SymptomSource:
    """One service's metrics: quiet values, with its symptoms while they last."""

    def __init__(self):
        self.symptoms: list[Symptom] = []

    def active(self, at: pd.Timestamp) -> Symptom | None:
        for s in reversed(self.symptoms):
            if s.start <= at and (s.end is None or at < s.end):
                return s
        return None

    def end(self, at: pd.Timestamp) -> None:
        for s in self.symptoms:
            if s.start <= at and (s.end is None or s.end > at):
                s.end = at

    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        index = pd.date_range(start, end, freq="1min", inclusive="left")
        values = {m: np.full(len(index), v) for m, v in QUIET.items()}
        for s in self.symptoms[-3:]:
            hot = (index >= s.start) & ((index < s.end) if s.end is not None else True)
            for metric, value in KINDS[s.kind][0].items():
                values[metric][hot] = value
        return pd.DataFrame(values, index=index)


@dataclass
class AuditedAction:
    at: pd.Timestamp
    service: str
    action: str
    origin: str
    incident_id: int | None


class Auditor:
    """Checks every mutating ECS call against the rules, reading the true state at that moment."""

    def __init__(self, world: "SoakWorld"):
        self.world = world
        self.actions: list[AuditedAction] = []
        self.breaches: list[str] = []
        self.origin = "auto"     # the harness says who is calling, and (manual) which action
        self.action_hint: str | None = None

    def attach(self, ecs_client: Any) -> None:
        ecs_client.meta.events.register("before-parameter-build.ecs.UpdateService", self._update)
        ecs_client.meta.events.register("before-parameter-build.ecs.StopTask", self._stop)

    def _breach(self, at: pd.Timestamp, service: str, rule: str, detail: str) -> None:
        self.breaches.append(f"{at:%Y-%m-%d %H:%M} {service}: {rule}: {detail}")

    def _update(self, params: dict, **_: Any) -> None:
        service = params["service"]
        if "taskDefinition" in params:
            self._check(service, "rollback", params)
        elif "desiredCount" in params:
            self._check(service, "scale", params)
        elif params.get("forceNewDeployment"):   # a restart is a rolling deployment
            self._check(service, "restart_tasks", params)

    def _stop(self, params: dict, **_: Any) -> None:
        at = self.world.clock()
        service = self.world.service_of_task(params["task"])
        last = self.actions[-1] if self.actions else None
        if last and last.action == "restart_tasks" and last.service == service and last.at == at:
            return  # the same restart stopping its next task
        self._check(service, "restart_tasks", params)

    def _check(self, service: str, kind: str, params: dict) -> None:
        world, at, origin = self.world, self.world.clock(), self.origin
        plan = world.plans[service]
        truth = world.ecs_truth(service)
        if not plan.allowed:
            self._breach(at, service, "allow-list", f"{kind} on a service outside the allow-list")
        if kind == "scale":
            count = int(params["desiredCount"])
            cap = GUARDRAILS.max_desired_count
            if count > cap:
                self._breach(at, service, "desired count cap", f"{count} > {cap}")
            if plan.autoscaling_max is not None and count > plan.autoscaling_max:
                self._breach(at, service, "autoscaling max", f"{count} > {plan.autoscaling_max}")
            if origin == "auto" and count != truth["desired"] + 1:
                self._breach(at, service, "scale up by one", f"{truth['desired']} -> {count}")
            kind = self.action_hint if origin == "manual" and self.action_hint else "scale_up"
        if kind == "restart_tasks" and world.rolling_out(service, at):
            self._breach(at, service, "rolling out", "restart while a deployment rolls out")
        if kind == "rollback":
            _, target = parse_task_definition(params["taskDefinition"])
            if world.rolling_out(service, at):
                self._breach(at, service, "rolling out", "rollback while a deployment rolls out")
            if target >= truth["revision"] or target not in truth["active"]:
                self._breach(at, service, "previous revision",
                             f"rollback {truth['revision']} -> {target}, active {truth['active']}")
        incident = world.store.open_for(CLUSTER, service) if origin == "auto" else None
        self._check_history(at, service, kind, origin)
        self.actions.append(AuditedAction(at, service, kind, origin, incident.id if incident else None))

    def _check_history(self, at: pd.Timestamp, service: str, kind: str, origin: str) -> None:
        mine = [a for a in self.actions if a.service == service]
        for earlier in mine:
            if earlier.origin == "auto" and earlier.incident_id is not None:
                incident = self.world.store.get(earlier.incident_id)
                settled = incident.verified_at is not None or incident.status in (
                    "escalated", "acknowledged", "resolved")
                if not settled:
                    self._breach(at, service, "one in flight",
                                 f"{kind} while {earlier.action} of incident {incident.id} "
                                 "awaits verification")
        if origin == "manual":
            return
        cooldown = pd.Timedelta(minutes=GUARDRAILS.cooldown_minutes.get(kind, 0))
        same = [a for a in mine if a.action == kind]
        if same and at - same[-1].at < cooldown:
            self._breach(at, service, "cooldown", f"{kind} {at - same[-1].at} after the last one")
        day = [a for a in mine if at - a.at < pd.Timedelta(days=1)]
        if len(day) >= GUARDRAILS.max_actions_per_day:
            self._breach(at, service, "daily cap", f"{len(day) + 1} actions in 24 h")


@dataclass
class SoakReport:
    incidents: int
    by_cause: dict[str, int]
    outcomes: dict[str, int]
    actions: dict[str, int]
    actions_by_origin: dict[str, int]
    refusals: dict[str, int]
    breaches: list[str]
    lost: int
    escalation_pages: int
    simulated_days: float
    seconds: float
    watcher_ticks: int
    data_dir: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__) | {"breach_count": len(self.breaches)}


class SoakWorld:
    """The simulated services, their incidents and deployments, and the people around them."""

    def __init__(self, world: SimulatedPlatform, incidents: int, progress: Callable[[str], None],
                 guardrails: Guardrails | None = None, store: IncidentRepository | None = None):
        self.rng = random.Random(world.seed)
        self.start = world.start
        self.target_incidents = incidents
        self.progress = progress
        self.plans = {p.name: p for p in PLANS}
        self.settings = world.settings
        self.clock = world.clock
        self.ecs = world.factory.client("ecs")   # the world's own calls: not audited
        self.aas = world.factory.client("application-autoscaling")
        self.worlds = {p.name: world.ecs_world(CLUSTER, p.name, family=p.name) for p in PLANS}
        self.sources = {p.name: SymptomSource() for p in PLANS}
        self.rollouts: dict[str, pd.Timestamp] = {}
        self.task_owner: dict[str, str] = {}
        self.dirty: set[str] = set(self.plans)
        self.store = store if store is not None else IncidentStore(self.settings.db_path)
        self.auditor = Auditor(self)
        self.pages = Counter()
        self.world = world
        self.guardrails = guardrails
        self.classifier = RuleClassifier(load_playbook())
        self.platforms = self.replica_platforms()   # the API's and the Lambda's, and the watchers'
        self.watchers = self.replica_watchers(self.platforms)
        self.next_incident = {p.name: self.clock.now + pd.Timedelta(minutes=self.rng.uniform(1, 30))
                              for p in PLANS}
        self.started = 0
        self.open: dict[str, int] = {}
        self.todo: dict[int, tuple[pd.Timestamp, str]] = {}   # incident -> (when, what a person does)
        self.ticks = 0
        self.last_alarm = self.clock.now

    def replica_platforms(self, hooks: Callable[[Any], None] | None = None) -> dict[Mode, Platform]:
        """The platform of one process (a watcher replica, or the API and Lambda), per mode, on
        ECS clients of its own that the auditor watches (``hooks`` may watch them too)."""
        factory = ClientFactory(endpoint_url=self.world.endpoint)
        ecs = factory.client("ecs")
        self.auditor.attach(ecs)
        ecs.meta.events.register("after-call.ecs.DescribeServices", self._show_rollouts)
        if hooks is not None:
            hooks(ecs)
        actions = EcsActions(ecs, autoscaling_client=factory.client("application-autoscaling"))
        return {mode: self.world.make_platform(WatchConfig(guardrails=GUARDRAILS),
                                               settings=self.settings.model_copy(update={"mode": mode}),
                                               factory=factory, actions=lambda dry_run: actions,
                                               store=self.store, notifier=self, classifier=self.classifier,
                                               guardrails=self.guardrails)
                for mode in (Mode.AUTO, Mode.APPROVE)}

    def replica_watchers(self, platforms: dict[Mode, Platform]) -> dict[str, Watcher]:
        """One watcher per service, each from the platform of its plan's mode."""
        return {p.name: platforms[p.mode].watcher(ServiceTarget(cluster=CLUSTER, service=p.name),
                                                  ThresholdDetector(), source=self.sources[p.name])
                for p in PLANS}

    # ------------------------------------------------------------------ the notifier seam

    def notify(self, role: str, subject: str, body: str) -> str:
        self.pages[role] += 1
        return f"page-{sum(self.pages.values())}"

    # ------------------------------------------------------------------ ECS truth and rollouts

    def setup(self) -> None:
        for plan in PLANS:
            self.worlds[plan.name].setup(self.clock.now, desired_count=NOMINAL, revisions=3)
            if plan.autoscaling_max is not None:
                self.aas.register_scalable_target(
                    ServiceNamespace="ecs", ResourceId=f"service/{CLUSTER}/{plan.name}",
                    ScalableDimension="ecs:service:DesiredCount", MinCapacity=1,
                    MaxCapacity=plan.autoscaling_max)
        self._sync_all()

    def _sync_all(self) -> None:
        for name in sorted(self.dirty):
            snap = self.worlds[name].sync(self.clock.now)
            for task in snap.tasks:
                self.task_owner[task.arn] = name
        self.dirty.clear()

    def service_of_task(self, arn: str) -> str:
        return self.task_owner.get(arn, "?")

    def ecs_truth(self, service: str) -> dict:
        raw = self.ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]
        _, revision = parse_task_definition(raw["taskDefinition"])
        arns = self.ecs.list_task_definitions(familyPrefix=service, status="ACTIVE")["taskDefinitionArns"]
        active = sorted(parse_task_definition(a)[1] for a in arns if parse_task_definition(a)[0] == service)
        return {"desired": int(raw["desiredCount"]), "revision": revision, "active": active}

    def rolling_out(self, service: str, at: pd.Timestamp) -> bool:
        return service in self.rollouts and at < self.rollouts[service]

    def _show_rollouts(self, parsed: dict, **_: Any) -> None:
        """What moto lacks: a deployment still rolling out lists the old one as ACTIVE."""
        for svc in parsed.get("services", []):
            if self.rolling_out(svc.get("serviceName", ""), self.clock.now):
                svc.setdefault("deployments", []).append(
                    {"id": "ecs-svc/old", "status": "ACTIVE", "rolloutState": "IN_PROGRESS"})

    # ------------------------------------------------------------------ the world's minute

    def _maybe_start_incident(self, name: str, now: pd.Timestamp) -> None:
        source = self.sources[name]
        if self.started >= self.target_incidents or now < self.next_incident[name] \
                or source.active(now) is not None or name in self.open:
            return
        kind = self.rng.choices(list(KINDS), weights=[3, 2, 2, 2, 2, 2])[0]
        start = now
        if kind == "error_rate_high":
            self._deploy(name, now)
            start = now + pd.Timedelta(minutes=1)
        lasting = None if KINDS[kind][1] else now + pd.Timedelta(minutes=self.rng.uniform(5, 25))
        source.symptoms.append(Symptom(kind, start, lasting, cures=self.rng.random() < 0.85))
        self.started += 1
        plan = self.plans[name]
        self.next_incident[name] = now + pd.Timedelta(minutes=30 + self.rng.expovariate(
            1 / plan.mean_gap_minutes))

    def _deploy(self, name: str, now: pd.Timestamp) -> None:
        world = self.worlds[name]
        world.deploy(f"release-{now:%m%d%H%M}")
        self.dirty.add(name)
        self.rollouts[name] = now + pd.Timedelta(minutes=self.rng.choice([0, 0, 3, 8, 20]))
        if self.plans[name].prune_old_revisions:  # old revisions cleaned up: nothing to roll back to
            truth = self.ecs_truth(name)
            for revision in truth["active"]:
                if revision != truth["revision"]:
                    self.ecs.deregister_task_definition(taskDefinition=f"{name}:{revision}")

    def _cure(self, name: str, now: pd.Timestamp) -> None:
        """An action reached ECS: the symptom it fixes ends (when it fixes it this time)."""
        symptom = self.sources[name].active(now)
        if symptom is None or not symptom.cures:
            return
        done = [a for a in self.auditor.actions if a.service == name and a.at == now]
        if any(a.action == KINDS[symptom.kind][1] or (a.action == "scale_to" and KINDS[symptom.kind][1]
                                                      == "scale_up") for a in done):
            symptom.end = now + pd.Timedelta(minutes=1)

    def _scale_in(self, name: str, now: pd.Timestamp) -> None:
        """A scale-in job's stand-in: every half hour, quiet services go back to nominal capacity."""
        if now.minute % 30 or name in self.open or self.sources[name].active(now) is not None:
            return
        if self.ecs_truth(name)["desired"] != NOMINAL:
            self.worlds[name].set_desired_count(NOMINAL)
            self.dirty.add(name)

    # ------------------------------------------------------------------ the people

    def _person(self, name: str, now: pd.Timestamp) -> None:
        """The on-call engineer: approves or takes over, acknowledges pages, acts, resolves."""
        incident_id = self.open.get(name)
        if incident_id is None:
            return
        incident = self.store.get(incident_id)
        seen = (incident.status, incident.acked_at is not None)
        plan = self.todo.get(incident_id)
        if plan is None or plan[0] != seen:
            what, delay = self._plan(incident)
            if what is None:
                self.todo.pop(incident_id, None)
                return
            plan = (seen, now + pd.Timedelta(minutes=delay), what)
            self.todo[incident_id] = plan
            if what == "resolve" and self.rng.random() < 0.25:
                self._manual_action(name, now, incident_id)
        _, when, what = plan
        if now < when:
            return
        if what == "approve":
            self.store.approve(incident_id, now, "soak-approver")
        elif what == "ack":
            self.store.acknowledge(incident_id, now, "soak-on-call")
        elif what == "resolve":
            self.store.resolve(incident_id, now, "soak-on-call", "fixed by hand")
            self.sources[name].end(now)
            self.open.pop(name, None)
        self.todo[incident_id] = (seen, pd.Timestamp.max.tz_localize("UTC"), "done")

    def _plan(self, incident) -> tuple[str | None, float]:
        if incident.status == "awaiting_approval" and incident.acked_at is None:
            if incident.approved_at is not None:
                return None, 0
            return ("approve" if self.rng.random() < 0.8 else "ack"), self.rng.uniform(1, 20)
        if incident.status == "escalated":
            return "ack", self.rng.uniform(1, 45)
        if incident.acked_at is not None:
            return "resolve", self.rng.uniform(5, 30)
        return None, 0

    def _manual_action(self, name: str, now: pd.Timestamp, incident_id: int | None) -> None:
        action, params = self.rng.choice([("scale_up", {}), ("scale_to", {"count": self.rng.randint(1, 7)}),
                                          ("restart_tasks", {}), ("rollback", {})])
        self._run_as("manual", ActionCommand(cluster=CLUSTER, service=name, action=action, **params,
                                             incident_id=incident_id, reason="soak: on-call engineer"))

    def _alarm(self, now: pd.Timestamp) -> None:
        """A CloudWatch alarm invoking the rollback Lambda on some service."""
        if now - self.last_alarm < pd.Timedelta(minutes=20) or self.rng.random() > 0.05:
            return
        self.last_alarm = now
        name = self.rng.choice(list(self.plans))
        self._run_as("lambda", RollbackCommand(cluster=CLUSTER, service=name, reason="soak: alarm",
                                               request_id=f"alarm-{now:%Y%m%d%H%M}").action())

    def _run_as(self, origin: str, command: ActionCommand) -> None:
        """A person's or an alarm's action, through the use case every door calls."""
        self.auditor.origin, self.auditor.action_hint = origin, command.action
        try:
            usecases.request_action(self.platforms[Mode.AUTO], command, origin)
        finally:
            self.auditor.origin, self.auditor.action_hint = "auto", None
        self.dirty.add(command.service)
        self._cure(command.service, self.clock.now)

    # ------------------------------------------------------------------ the loop

    def _busy(self, name: str, now: pd.Timestamp) -> bool:
        source = self.sources[name]
        recent = source.symptoms[-1] if source.symptoms else None
        ended_lately = (recent is not None and recent.end is not None
                        and now < recent.end + pd.Timedelta(minutes=4))
        return name in self.open or source.active(now) is not None or ended_lately

    def run(self) -> None:
        self.setup()
        while True:
            now = self.clock.now
            busy = False
            for name in self.plans:
                self._maybe_start_incident(name, now)
                if self._busy(name, now):
                    busy = True
                    result = self.tick(name)
                    self.ticks += result is not None
                    if result is not None and result.incident is not None:
                        if result.status in OPEN_STATUSES:
                            self.open[name] = result.incident
                        else:
                            self.open.pop(name, None)
                    self._cure(name, now)
                    self._person(name, now)
                self._scale_in(name, now)
            self._alarm(now)
            busy = self.minute_done(now) or busy
            self._sync_all()
            if self.started >= self.target_incidents and not any(self._busy(n, now) for n in self.plans):
                break
            if busy:
                self.clock.advance()
            else:  # nothing happening anywhere: jump to the next incident
                upcoming = min(self.next_incident.values())
                self.clock.advance(max(1, int((upcoming - now).total_seconds() // 60)))
            if self.ticks and self.ticks % 5000 == 0:
                self.progress(f"{self.clock.now:%Y-%m-%d %H:%M}: {self.started} incidents started, "
                              f"{self.ticks} watcher ticks")

    def tick(self, name: str) -> TickResult | None:
        """One tick of ``name``'s watcher (None when no watcher ticked it)."""
        return self.watchers[name].tick()

    def minute_done(self, now: pd.Timestamp) -> bool:
        """What else happens at the end of a simulated minute; True keeps the clock from jumping."""
        return False

    def summary(self, seconds: float) -> SoakReport:
        incidents = self.store.list(limit=10 ** 6)
        by_cause = Counter(i.root_cause or "undiagnosed" for i in incidents)
        outcomes: Counter = Counter()
        for incident in incidents:
            events = self.store.events(incident.id)
            kinds = {e["kind"] for e in events}
            if any(e["kind"] == "verification" and e["data"].get("passed") for e in events):
                outcomes["remediated, verified"] += 1
            elif "status:escalated" in kinds:
                outcomes["escalated, then resolved by a person"] += 1
            else:
                outcomes["taken over before acting, resolved by a person"] += 1
        lost = sum(1 for i in incidents if i.status != "resolved")
        actions = Counter(a.action for a in self.store.actions() if a.status in ("done", "interrupted"))
        origins = Counter(a.origin for a in self.store.actions() if a.status in ("done", "interrupted"))
        days = (self.clock.now - self.start).total_seconds() / 86400
        return SoakReport(len(incidents), dict(by_cause), dict(outcomes), dict(actions), dict(origins),
                          dict(self.store.refusals()), list(self.auditor.breaches), lost,
                          sum(self.pages.values()), round(days, 2), round(seconds, 1), self.ticks,
                          str(self.settings.data_dir),
                          {"audited_calls": len(self.auditor.actions), "started": self.started})


def run_soak(data_dir: Path, incidents: int = 1000, seed: int = 7,
             progress: Callable[[str], None] = print, guardrails: Guardrails | None = None,
             start: pd.Timestamp = SOAK_START) -> SoakReport:
    """Run the soak from simulated time ``start`` on a fresh local endpoint; the incident log
    stays under ``data_dir``.

    ``guardrails`` replaces the configured ones (a test hands in permissive ones to show the
    auditor does catch breaches).
    """
    started = time.monotonic()
    settings = Settings(data_dir=data_dir, verify_after_minutes=15)
    with SimulatedPlatform(settings, start, seed=seed) as simulated:
        world = SoakWorld(simulated, incidents, progress, guardrails)
        world.run()
        return world.summary(time.monotonic() - started)


def render(report: SoakReport) -> str:
    """The soak's figures as a person reads them."""
    lines = [f"{report.incidents} incidents over {report.simulated_days} simulated days on "
             f"{len(PLANS)} services ({report.watcher_ticks:,} watcher ticks, {report.seconds:.0f} s)",
             "root causes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_cause.items())),
             "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())),
             f"actions on ECS: {sum(report.actions.values())} ("
             + ", ".join(f"{k} {v}" for k, v in sorted(report.actions.items())) + "; by origin "
             + ", ".join(f"{k} {v}" for k, v in sorted(report.actions_by_origin.items())) + ")",
             f"refusals: {sum(report.refusals.values())} ("
             + ", ".join(f"{k} {v}" for k, v in sorted(report.refusals.items(), key=lambda kv: -kv[1])) + ")",
             f"pages sent: {report.escalation_pages}",
             f"incidents lost (not resolved at the end): {report.lost}",
             f"guardrail breaches found by the auditor: {len(report.breaches)}"]
    lines += [f"  BREACH {b}" for b in report.breaches[:20]]
    return "\n".join(lines)


def breaches_by_rule(report: SoakReport) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for b in report.breaches:
        counts[b.split(": ")[1]] += 1
    return dict(counts)
