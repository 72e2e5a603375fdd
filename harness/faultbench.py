"""Reliability under AWS API faults: every matrix fault played while the platform's calls fail.

The simulated service runs on the local AWS endpoint through its own, healthy clients. The
platform (watcher, guarded remediator, SNS notifier) gets separate clients whose calls are made
to fail the ways AWS fails (``simulation.api_faults``): throttling, 5xx, read timeouts, access
denied. botocore's standard retry mode retries what is transient; ``RetryLog`` counts every
attempt. Each row of the response matrix is played under each kind of fault, and the outcome
of its incident is read back from the log.

"No incident lost" means: every injected fault opened an incident, and every incident ended
remediated (verified) or escalated to a person, within the scenario's time.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from harness.world import SimulatedPlatform
from service.aws import ClientFactory
from service.guardrails import GuardrailConfig
from service.retry_log import RetryLog
from service.settings import Settings
from service.watch_config import ServiceConfig, WatchConfig
from simulation.api_faults import ApiFaults
from simulation.clock import DEFAULT_START
from simulation.faults import FAULTS
from training.detectors import BASELINES_ONLY, detector_config
from training.pipeline import TrainOptions

QUIET_MINUTES = 5
SCENARIO_MINUTES = 45
FAULTED = ("ecs", "cloudwatch", "application-autoscaling", "sns")
# The fault benchmark measures faults, not cooldowns: scenarios follow each other closely.
GUARDRAILS = GuardrailConfig(cooldown_minutes={}, max_actions_per_day=10_000)


@dataclass(frozen=True)
class ApiFaultPlan:
    """How the platform's AWS calls fail during a scenario.

    ``rate`` None means the benchmark's rate; ``services`` limits the faults to those AWS
    services; ``minutes`` limits them to the scenario's first minutes (an outage that ends).
    """

    name: str
    kind: str
    rate: float | None = None
    services: tuple[str, ...] | None = None
    minutes: int | None = None


PLANS = {p.name: p for p in (
    ApiFaultPlan("throttling", "throttling"),
    ApiFaultPlan("server_error", "server_error"),
    ApiFaultPlan("timeout", "timeout"),
    # the role lacks the ECS permissions: every action fails, nothing is retried
    ApiFaultPlan("ecs_access_denied", "access_denied", 1.0, ("ecs", "application-auto-scaling")),
    # CloudWatch refuses the role for ten minutes after the fault starts, then comes back
    ApiFaultPlan("cloudwatch_access_denied_10min", "access_denied", 1.0, ("cloudwatch",), 10),
)}


@dataclass(frozen=True)
class ScenarioResult:
    api_fault: str
    fault: str
    incident: int | None
    detected_after_min: float | None
    root_cause: str | None
    action: str | None
    action_status: str | None
    outcome: str          # remediated | escalated | lost
    ticks_without_metrics: int


@dataclass
class FaultReport:
    rate: float
    scenarios: list[ScenarioResult]
    injected: dict[str, int]
    retries: dict
    max_attempts_allowed: int
    seconds: float
    details: dict = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(s.outcome == "lost" for s in self.scenarios)

    def outcomes(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter] = {}
        for s in self.scenarios:
            table.setdefault(s.api_fault, Counter())[s.outcome] += 1
        return {k: dict(v) for k, v in table.items()}

    def to_dict(self) -> dict:
        return {"rate": self.rate, "scenarios": [asdict(s) for s in self.scenarios],
                "injected": self.injected, "retries": self.retries, "lost": self.lost,
                "outcomes": self.outcomes(), "max_attempts_allowed": self.max_attempts_allowed,
                "seconds": self.seconds, **self.details}


class FaultEnvironment(SimulatedPlatform):
    """The simulated service with healthy clients, and a watcher whose AWS calls can fail.

    Parameters
    ----------
    data_dir : where the incident log, models and reports go.
    start : the simulated instant the history ends and the scenarios begin.
    seed : the simulation's noise.
    history_days : days of history the detector is fitted on.
    max_attempts : botocore's retries of the platform's calls.
    detector : ``robust_z`` (the per-metric baselines) or ``ensemble`` (what ``aiops train``
        fits), trained from the CloudWatch history through the nightly pipeline.
    """

    def __init__(self, data_dir: Path, start: pd.Timestamp, seed: int = 11, history_days: int = 3,
                 max_attempts: int = 5, detector: str = BASELINES_ONLY):
        super().__init__(Settings(data_dir=data_dir), start, seed=seed)
        self.data_dir = data_dir
        self.days = history_days
        self.max_attempts = max_attempts
        self.detector = detector
        self.false_alarms = 0

    def _start(self) -> None:
        super()._start()
        target = self.settings.target
        simulated = self.make_service()
        self.ecs_world, self.sim = simulated.world, simulated.sim
        self.sim.bootstrap(self.days)
        options = TrainOptions(detector=detector_config(self.detector), days=self.days,
                               holdout=pd.Timedelta(0), promote="always", n_jobs=1,
                               backend="sequential")
        detector = self.train(simulated, options).model
        # the platform's own clients: their calls fail as the scenario says, and are counted
        platform = ClientFactory(endpoint_url=self.endpoint, max_attempts=self.max_attempts)
        self.faults, self.retry_log = ApiFaults(seed=self.seed), RetryLog()
        for name in FAULTED:
            self.faults.attach(platform.client(name))
            self.retry_log.attach(platform.client(name))
        config = WatchConfig(services=[ServiceConfig(cluster=target.cluster, service=target.service)],
                             guardrails=GUARDRAILS)
        built = self.make_platform(config, factory=platform,
                                   notifier=self.escalation_notifier(platform))
        self.store = built.store
        self.watcher = built.watcher(target, detector)

    def minute(self):
        self.sim.step()
        result = self.watcher.tick()
        self.clock.advance()
        return result

    def play(self, plan: ApiFaultPlan, fault: str, rate: float) -> ScenarioResult:
        """A quiet spell, then ``fault`` while the platform's calls fail as ``plan`` says."""
        self.quiet(QUIET_MINUTES)
        self.faults.rates = {plan.kind: plan.rate if plan.rate is not None else rate}
        self.faults.operations = set(plan.services) if plan.services else None
        self.faults.enabled = True
        start = self.clock.now
        self.sim.inject(fault)
        incident_id, blind = None, 0
        for minute in range(SCENARIO_MINUTES):
            if plan.minutes is not None and minute >= plan.minutes:
                self.faults.enabled = False
            result = self.minute()
            blind += result.read_error is not None
            incident_id = incident_id or result.opened
            if incident_id and self.store.get(incident_id).status in ("resolved", "escalated"):
                break
        self.faults.enabled = False
        return self._settle(plan.name, fault, start, incident_id, blind)

    def quiet(self, minutes: int) -> int:
        """``minutes`` with no fault and healthy AWS calls; returns the incidents opened: false
        alarms. They stay open (a person is slow to look), so a fault that follows must not be
        swallowed by them."""
        self.faults.enabled = False
        self.sim.clear()
        opened = sum(self.minute().opened is not None for _ in range(minutes))
        self.false_alarms += opened
        return opened

    def close_open(self) -> None:
        """A person closes every incident still open on the service."""
        target = self.settings.target
        while (still := self.store.open_for(target.cluster, target.service)) is not None:
            self._close(still.id)

    def _settle(self, api_fault: str, fault: str, start: pd.Timestamp, incident_id: int | None,
                blind: int) -> ScenarioResult:
        """The scenario's outcome read from the log; then a person takes over what is left open."""
        if incident_id is None:
            row = ScenarioResult(api_fault, fault, None, None, None, None, None, "lost", blind)
        else:
            incident = self.store.get(incident_id)
            actions = self.store.actions(incident_id=incident_id)
            events = [e["kind"] for e in self.store.events(incident_id)]
            outcome = {"resolved": "remediated", "escalated": "escalated"}.get(incident.status, "lost")
            action = incident.auto_action
            status = actions[-1].status if actions else ("alerted" if "alert_sent" in events else
                                                         "failed" if "action_failed" in events else None)
            row = ScenarioResult(api_fault, fault, incident_id,
                                 (incident.opened_at - start).total_seconds() / 60, incident.root_cause,
                                 action, status, outcome, blind)
        target = self.settings.target
        if self.store.open_for(target.cluster, target.service) is not None:
            self._take_over()
        return row

    def _take_over(self) -> None:
        """A person fixes what automation could not, then closes what is still open.

        The fault ends first and the metrics settle (their last anomalies join the open
        incidents), so the next scenario starts on a quiet service with no incident open.
        """
        self.sim.clear()
        for _ in range(QUIET_MINUTES):
            self.minute()
        self.close_open()

    def _close(self, incident_id: int) -> None:
        """A person acknowledges and resolves the incident."""
        now = self.clock.now
        if self.store.get(incident_id).acked_at is None:
            self.store.acknowledge(incident_id, now, "fault-bench")
        self.store.resolve(incident_id, now, "fault-bench", "fixed by hand in the benchmark")


def run_fault_benchmark(data_dir: Path, rate: float = 0.2, api_faults: tuple[str, ...] = tuple(PLANS),
                        faults: tuple[str, ...] = tuple(FAULTS), seed: int = 11, history_days: int = 3,
                        progress: Callable[[str], None] = print,
                        pairs: list[tuple[str, str]] | None = None,
                        start: pd.Timestamp = DEFAULT_START) -> FaultReport:
    """Play every matrix fault under every API fault kind (or just ``pairs`` of them).

    The incident log stays under ``data_dir``.
    """
    pairs = pairs or [(a, f) for a in api_faults for f in faults]
    unknown = sorted({a for a, _ in pairs if a not in PLANS})
    if unknown:
        raise ValueError(f"unknown API fault(s) {', '.join(unknown)}; known: {', '.join(PLANS)}")
    unknown = sorted({f for _, f in pairs if f not in FAULTS})
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    started = time.monotonic()
    with FaultEnvironment(data_dir, start, seed, history_days) as env:
        results = []
        for api_fault, fault in pairs:
            row = env.play(PLANS[api_fault], fault, rate)
            progress(f"{api_fault:>30} x {fault:<16} -> {row.outcome} ({row.action}: "
                     f"{row.action_status}; {row.ticks_without_metrics} tick(s) without metrics)")
            results.append(row)
        blind_alerts = len(env.store.events_of_kind("blind_alert"))
        return FaultReport(rate, results, env.faults.summary(), env.retry_log.summary(),
                           env.max_attempts + 1, round(time.monotonic() - started, 1),
                           {"log": str(env.settings.db_path), "blind_alerts": blind_alerts,
                            "false_alarms": env.false_alarms, "start": start.isoformat()})


def render(report: FaultReport) -> str:
    out = io.StringIO()
    out.write(f"{len(report.scenarios)} scenarios from {report.details.get('start', '?')}; transient faults "
              f"on {report.rate:.0%} of the platform's AWS calls ({report.seconds:.0f} s)\n")
    for kind, outcomes in report.outcomes().items():
        out.write(f"  {kind:>30}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + "\n")
    r = report.retries
    out.write(f"faults injected: {report.injected}\n")
    out.write(f"AWS calls: {r['calls']}, retried {r['retried_calls']} ({r['retries']} retries), failed after "
              f"retries {r['failed_calls']}; most attempts for one call {r['max_attempts_per_call']} "
              f"(bound {report.max_attempts_allowed})\n")
    out.write(f"'cannot read metrics' alerts sent: {report.details.get('blind_alerts', 0)}\n")
    out.write(f"false alarms (incidents opened in quiet minutes): {report.details.get('false_alarms', 0)}\n")
    out.write(f"incidents lost: {report.lost}\n")
    return out.getvalue()
