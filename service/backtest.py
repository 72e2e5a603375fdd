"""``aiops backtest``: what automatic remediation would have done on a service's own history.

The history is replayed minute by minute through **the watcher itself** (:class:`~service.watcher.
Watcher`, built by the bootstrap exactly as ``aiops watch`` builds it): the service's production
detector, the root-cause classifier every door uses, the playbook and the guardrails. Three
things are swapped, each for one that cannot change anything:

- the metric source reads the history instead of CloudWatch (:class:`HistorySource`);
- the ECS adapter answers reads from the deployment history and makes no call at all
  (:class:`ReplayEcs`, a dry run: every action is judged by the guardrails and recorded as it
  would have run, counted by the cooldowns, the daily cap and "one in flight");
- the incident log is in memory and the pages are recorded, not sent (:class:`PageLog`).

So the same history gives the same decisions as the live watcher (``tests/integration/
test_backtest.py`` checks it against a watcher reading the same minutes from CloudWatch).

What a replay cannot know: what an action would have changed. The metrics that follow are the
ones history recorded, so a verification judges whether the symptoms were gone 15 minutes later
anyway (by themselves or by what people did then). A simulated **operator** does what the live
watcher leaves to people, so one escalation does not swallow the rest of the history: it
approves a held action after ``approve_minutes``, acknowledges an escalation after
``ack_minutes``, and resolves an incident it owns once no anomaly has joined it for
``quiet_minutes``. Learned outcomes stay empty: no action really ran.

Scores, with operator labels (``aiops incidents label`` in the log, or a CSV of
``start,end,cause``): an incident *matches* a label when it opened between ``LABEL_LEAD`` before
the label's start and ``LABEL_LAG`` after its end. An automatic ECS action is correct when its
incident matches a label whose playbook action is that action; **action precision** is the
share of actions that are correct, **action recall** the share of labels whose playbook action
is an ECS action (scale up, restart, rollback) that got it. A **false page** is a page (an
escalation, an alert, an approval request) for an incident that matches no label;
**false pages per week** scales their count to seven days of history.
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rca.diagnosis import RootCauseClassifier
from rca.playbook import Playbook
from service.bootstrap import build_platform
from service.ecs import ActionResult, EcsActionError, ServiceState
from service.guardrails import GuardrailConfig
from service.memory_store import MemoryIncidentStore
from service.settings import Mode, ServiceTarget, Settings
from service.watch_config import WatchConfig
from service.watcher import Detector

ECS_ACTIONS = ("scale_up", "restart_tasks", "rollback")
LABEL_LEAD = pd.Timedelta(minutes=5)
LABEL_LAG = pd.Timedelta(minutes=30)
FAMILY = "service"


class BacktestError(ValueError):
    """A backtest that cannot run as asked; the message names the input at fault."""


@dataclass(frozen=True)
class Deployment:
    """One deployment of the service's history: when, the task-definition revision, and when it
    finished rolling out (None: at once; while it rolls out a rollback or restart is refused)."""

    at: pd.Timestamp
    revision: int
    finished: pd.Timestamp | None = None


@dataclass(frozen=True)
class Label:
    """What an operator says happened: a root cause between two instants."""

    start: pd.Timestamp
    end: pd.Timestamp
    cause: str


@dataclass(frozen=True)
class Operator:
    """The simulated people of a replay (see the module docstring)."""

    approve_minutes: float = 5
    ack_minutes: float = 5
    quiet_minutes: float = 15


# ---------------------------------------------------------------------- the swapped adapters


class HistorySource:
    """The metric source over a recorded frame: ``read`` returns its minutes in ``[start, end)``."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame.sort_index()

    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        index = self.frame.index
        return self.frame.iloc[index.searchsorted(start):index.searchsorted(end)]


class ReplayClock:
    """The replay's "now", moved on one period at a time."""

    def __init__(self, now: pd.Timestamp):
        self.now = pd.Timestamp(now)

    def __call__(self) -> pd.Timestamp:
        return self.now


class ReplayEcs:
    """The ECS adapter of a replay: reads from the deployment history, never calls ECS.

    ``describe`` gives the revision deployed at the replay's now, when it was deployed and whether
    it is still rolling out (until its ``finished``); actions are dry runs that report what they
    would have changed.
    """

    dry_run = True

    def __init__(self, deployments: list[Deployment], clock: Callable[[], pd.Timestamp],
                 desired: int = 2):
        self.deployments = sorted(deployments, key=lambda d: d.at)
        self.clock = clock
        self.desired = desired

    def _current(self) -> tuple[Deployment | None, list[int]]:
        now = self.clock()
        past = [d for d in self.deployments if d.at <= now]
        revisions = sorted({d.revision for d in past})
        return (past[-1] if past else None), revisions

    def describe(self, cluster: str, service: str) -> ServiceState:
        current, _ = self._current()
        revision = current.revision if current else 1
        rolling = current is not None and current.finished is not None and self.clock() < current.finished
        return ServiceState(cluster, service, self.desired, self.desired, f"{FAMILY}:{revision}", FAMILY,
                            revision, 2 if rolling else 1, rolling,
                            deployed_at=current.at.isoformat() if current else None)

    def scaling_target(self, cluster: str, service: str):
        return None

    def active_revisions(self, cluster: str, service: str, family: str) -> dict[int, str]:
        current, revisions = self._current()
        known = set(revisions) | {current.revision - 1 if current else 0}
        return {r: f"{FAMILY}:{r}" for r in sorted(known) if r > 0}

    def _would(self, action: str, cluster: str, service: str, change: str) -> ActionResult:
        state = self.describe(cluster, service)
        return ActionResult(action, state, state, change, dry_run=True)

    def scale_up(self, cluster: str, service: str, by: int = 1, max_count: int | None = None):
        return self._would("scale_up", cluster, service, f"would set desired count "
                                                        f"{self.desired} -> {self.desired + by}")

    def scale_to(self, cluster: str, service: str, count: int):
        return self._would("scale_to", cluster, service, f"would set desired count {self.desired} -> {count}")

    def restart_tasks(self, cluster: str, service: str):
        return self._would("restart_tasks", cluster, service,
                           f"would replace {self.desired} tasks in a rolling deployment")

    def rollback(self, cluster: str, service: str, to_revision: int | None = None,
                 while_rolling_out: bool = True):
        state = self.describe(cluster, service)
        earlier = [r for r in self.active_revisions(cluster, service, FAMILY) if r < state.revision]
        target = to_revision or (earlier[-1] if earlier else None)
        if target is None:
            raise EcsActionError(f"no previous task definition revision of {service} to roll back to")
        return self._would("rollback", cluster, service, f"would roll back {FAMILY}:{state.revision} "
                                                         f"-> {FAMILY}:{target}")


@dataclass
class PageLog:
    """The notifier of a replay: every message kept with the replay's time, none sent."""

    clock: Callable[[], pd.Timestamp]
    sent: list[dict] = field(default_factory=list)

    def notify(self, role: str, subject: str, body: str) -> str:
        self.sent.append({"at": self.clock(), "role": role, "subject": subject})
        return f"replay-{len(self.sent)}"

    @property
    def pages(self) -> list[dict]:
        """Messages that page a person (reports of resolved incidents are not pages)."""
        return [m for m in self.sent if not m["subject"].startswith("Resolved:")]


# ---------------------------------------------------------------------- what-ifs


SETTINGS_KEYS = ("open_after", "group_window", "verify_after_minutes", "mode")
GUARDRAIL_KEYS = ("max_actions_per_day", "max_desired_count", "respect_autoscaling")
PLAYBOOK_KEYS = ("skip_after_failures", "error_boundary", "recent_deployment_minutes",
                 "min_confidence", "min_confidence_destructive")
KNOWN_KEYS = ("threshold", *SETTINGS_KEYS, *GUARDRAIL_KEYS, "cooldown.<action>", *PLAYBOOK_KEYS,
              "oom.<field>")


def parse_what_if(text: str) -> dict[str, str]:
    """``threshold=5,cooldown.scale_up=20`` as ``{"threshold": "5", "cooldown.scale_up": "20"}``."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise BacktestError(f"--set {text!r}: write KEY=VALUE (several joined by commas)")
        known = key in KNOWN_KEYS or key.split(".", 1)[0] in ("cooldown", "oom")
        if not known:
            raise BacktestError(f"--set {key}: unknown setting; known: {', '.join(KNOWN_KEYS)}")
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class Scenario:
    """One column of a backtest: a name and the settings it runs with."""

    name: str
    settings: Settings
    guardrails: GuardrailConfig
    playbook: Playbook
    threshold: float | None = None


def scenario(name: str, base: Scenario, changes: dict[str, str]) -> Scenario:
    """``base`` with ``changes`` applied, each validated where it belongs (BacktestError if not)."""
    settings_update, guard_update, play_update = {}, {}, {}
    threshold = base.threshold
    cooldowns = dict(base.guardrails.cooldown_minutes)
    oom = base.playbook.oom.model_dump()
    for key, value in changes.items():
        if key == "threshold":
            threshold = _number(key, value)
        elif key in SETTINGS_KEYS:
            settings_update[key] = value
        elif key in GUARDRAIL_KEYS:
            guard_update[key] = value
        elif key.startswith("cooldown."):
            cooldowns[key.split(".", 1)[1]] = _number(key, value)
        elif key.startswith("oom."):
            oom[key.split(".", 1)[1]] = value
        else:
            play_update[key] = value
    try:
        settings = Settings.model_validate({**base.settings.model_dump(), **settings_update})
        guardrails = GuardrailConfig.model_validate({**base.guardrails.model_dump(), **guard_update,
                                                     "cooldown_minutes": cooldowns})
        playbook = Playbook.model_validate({**base.playbook.model_dump(), **play_update, "oom": oom})
    except ValueError as exc:
        raise BacktestError(f"what-if {name!r}: {exc}") from None
    return Scenario(name, settings, guardrails, playbook, threshold)


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BacktestError(f"--set {key}={value}: not a number") from None


def with_threshold(detector: Detector, threshold: float | None) -> Detector:
    """A copy of ``detector`` judging at ``threshold`` (its fitted threshold when None)."""
    if threshold is None:
        return detector
    if not threshold > 0:
        raise BacktestError(f"threshold must be positive, got {threshold}")
    changed = copy.copy(detector)
    if hasattr(changed, "threshold_"):
        changed.threshold_ = threshold
    changed.threshold = threshold
    return changed


# ---------------------------------------------------------------------- the replay


@dataclass
class Replay:
    """One scenario replayed: its incident log, its pages, the minutes it covered."""

    scenario: Scenario
    store: MemoryIncidentStore
    pages: list[dict]
    start: pd.Timestamp
    end: pd.Timestamp


def replay(history: pd.DataFrame, detector: Detector, classifier: RootCauseClassifier,
           target: ServiceTarget, scen: Scenario, deployments: Iterable[Deployment] = (),
           operator: Operator | None = Operator(), start: pd.Timestamp | None = None,
           progress: Callable[[str], None] = lambda _: None) -> Replay:
    """Replay ``history`` (canonical metric columns, one row a period) minute by minute.

    ``start`` is the first minute scored (default: the history's first minute plus the watcher's
    read window, so the first tick sees a full window). ``operator`` None leaves every incident to
    the watcher alone (what the live watcher does without people).
    """
    if history.empty:
        raise BacktestError("the history is empty")
    period = pd.Timedelta(seconds=scen.settings.period_seconds)
    first = pd.Timestamp(history.index[0])
    now = pd.Timestamp(start) if start is not None else first + pd.Timedelta(minutes=15)
    end = pd.Timestamp(history.index[-1])
    clock = ReplayClock(now)
    pages = PageLog(clock)
    store = MemoryIncidentStore()
    ecs = ReplayEcs(list(deployments), clock)
    with tempfile.TemporaryDirectory(prefix="aiops-backtest-") as scratch:
        settings = scen.settings.model_copy(update={"data_dir": Path(scratch), "target": target})
        config = WatchConfig(guardrails=scen.guardrails)
        platform = build_platform(settings, config, actions=lambda dry_run: ecs, store=store,
                                  notifier=pages, clock=clock, classifier=classifier)
        platform.playbook = scen.playbook
        watcher = platform.watcher(target, with_threshold(detector, scen.threshold),
                                   source=HistorySource(history))
        days = 0
        while clock.now <= end:
            watcher.tick()
            if operator is not None:
                _operate(store, target, clock.now, operator)
            clock.now += period
            if clock.now.normalize() != (clock.now - period).normalize():
                days += 1
                progress(f"{scen.name}: day {days} replayed ({clock.now:%Y-%m-%d})")
    return Replay(scen, store, pages.pages, now, end)


def _operate(store: MemoryIncidentStore, target: ServiceTarget, now: pd.Timestamp,
             operator: Operator) -> None:
    """The simulated people: approve, acknowledge, resolve what automation left to them."""
    for incident in store.open_incidents(target.cluster, target.service):
        since = (now - (incident.escalated_at or incident.opened_at)).total_seconds() / 60
        if incident.status == "awaiting_approval" and incident.approved_at is None \
                and since >= operator.approve_minutes:
            store.approve(incident.id, now, "backtest operator")
        elif incident.status == "escalated" and incident.acked_at is None and since >= operator.ack_minutes:
            store.acknowledge(incident.id, now, "backtest operator")
        elif incident.status == "acknowledged":
            anomalies = store.anomalies(incident.id)
            last = max((pd.Timestamp(a["timestamp"]) for a in anomalies), default=incident.opened_at)
            if (now - last).total_seconds() / 60 >= operator.quiet_minutes:
                store.resolve(incident.id, now, "backtest operator", "symptoms gone (backtest)")


# ---------------------------------------------------------------------- decisions and scores


def decisions(store: MemoryIncidentStore) -> list[dict]:
    """What the platform decided for each incident, in order: the comparable record of a run."""
    out = []
    for incident in sorted(store.list(limit=1_000_000), key=lambda i: i.id):
        events = store.events(incident.id)
        decided = next((e["data"] for e in events if e["kind"] == "decision"), {})
        refused = next((e["data"] for e in events if e["kind"] == "guardrail_refused"), None)
        actions = [a for a in store.actions(incident_id=incident.id) if a.origin == "auto"]
        verification = next((e["data"] for e in events if e["kind"] == "verification"), None)
        if decided.get("skipped"):
            outcome = "skipped"
        elif refused is not None:
            outcome = f"refused: {refused.get('reason')}"
        elif actions:
            outcome = "would run" if actions[-1].status == "dry_run" else actions[-1].status
        elif any(e["kind"] == "alert_sent" for e in events):
            outcome = "alerted"
        elif any(e["kind"] == "approval_requested" for e in events):
            outcome = "awaiting approval"
        else:
            outcome = "none"
        out.append({"incident": incident.id, "opened_at": incident.opened_at.isoformat(),
                    "cause": incident.root_cause or "undiagnosed",
                    "action": decided.get("action") or incident.auto_action or "-",
                    "outcome": outcome, "refusal": (refused or {}).get("reason"),
                    "verified": None if verification is None else bool(verification.get("passed")),
                    "opened_by": "oom_forecast" if any(e["kind"] == "oom_forecast" for e in events)
                    else "anomalies"})
    return out


def _matches(opened: pd.Timestamp, label: Label) -> bool:
    return label.start - LABEL_LEAD <= opened <= label.end + LABEL_LAG


def _label_of(opened: pd.Timestamp, labels: list[Label]) -> Label | None:
    return next((label for label in labels if _matches(opened, label)), None)


def scores(run: Replay, labels: list[Label], playbook: Playbook) -> dict:
    """Action precision and recall against the labels, and false pages per week (module docstring)."""
    rows = decisions(run.store)
    taken = [r for r in rows if r["action"] in ECS_ACTIONS and r["outcome"] == "would run"]
    expected = {label: playbook.cause(label.cause).auto_action.value for label in labels}
    correct = [r for r in taken
               if (lab := _label_of(pd.Timestamp(r["opened_at"]), labels)) is not None
               and expected[lab] == r["action"]]
    wanted = [label for label in labels if expected[label] in ECS_ACTIONS]
    got = [label for label in wanted
           if any(_matches(pd.Timestamp(r["opened_at"]), label) and r["action"] == expected[label]
                  for r in taken)]
    opened = {r["incident"]: pd.Timestamp(r["opened_at"]) for r in rows}
    weeks = max((run.end - run.start) / pd.Timedelta(days=7), 1e-9)
    false_pages = [p for p in run.pages if (incident := _page_incident(p, opened)) is None
                   or _label_of(opened[incident], labels) is None]
    detected = [label for label in labels if any(_matches(t, label) for t in opened.values())]
    return {"labels": len(labels), "incidents": len(rows), "actions": len(taken),
            "correct_actions": len(correct),
            "action_precision": len(correct) / len(taken) if taken else None,
            "action_recall": len(got) / len(wanted) if wanted else None,
            "labels_detected": len(detected), "pages": len(run.pages),
            "false_pages": len(false_pages), "false_pages_per_week": len(false_pages) / weeks,
            "refusals": sum(1 for r in rows if r["refusal"])}


def _page_incident(page: dict, opened: dict[int, pd.Timestamp]) -> int | None:
    """The incident a page is about (its subject names it), None for a platform page."""
    import re

    found = re.search(r"incident (\d+)", page["subject"])
    return int(found.group(1)) if found and int(found.group(1)) in opened else None


def per_day(run: Replay) -> pd.DataFrame:
    """Per day: incidents, causes, actions that would have run, guardrail refusals, pages."""
    rows = decisions(run.store)
    days = pd.date_range(run.start.normalize(), run.end.normalize(), freq="1D")
    table = []
    for day in days:
        mine = [r for r in rows if pd.Timestamp(r["opened_at"]).normalize() == day]
        causes = Counter(r["cause"] for r in mine)
        actions = Counter(r["action"] for r in mine if r["outcome"] == "would run" and r["action"] != "-")
        refusals = Counter(r["refusal"] for r in mine if r["refusal"])
        pages = [p for p in run.pages if pd.Timestamp(p["at"]).normalize() == day]
        table.append({"day": f"{day:%Y-%m-%d}", "incidents": len(mine),
                      "causes": _counts(causes), "actions": _counts(actions),
                      "refusals": _counts(refusals), "pages": len(pages)})
    return pd.DataFrame(table)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "-"


def base_scenario(settings: Settings, config: WatchConfig, playbook: Playbook) -> Scenario:
    """The scenario as the service runs today: its settings, guardrails and playbook."""
    mode = settings.mode if "mode" in settings.model_fields_set or config.mode is None else config.mode
    return Scenario("as configured", settings.model_copy(update={"mode": Mode(mode)}), config.guardrails,
                    playbook)


# ---------------------------------------------------------------------- inputs


def _csv(path: Path, what: str, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise BacktestError(f"{what} {path}: cannot read it: {exc}") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BacktestError(f"{what} {path}: needs the columns {', '.join(columns)}; "
                            f"missing {', '.join(missing)}")
    return table


def _times(values: pd.Series, path: Path, what: str, column: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
    except (ValueError, TypeError) as exc:
        raise BacktestError(f"{what} {path}: column {column}: not an ISO 8601 time ({exc})") from None


def read_deployments(path: Path) -> list[Deployment]:
    """A CSV of ``timestamp,revision[,finished]``: when each task-definition revision was deployed
    (and, optionally, when it finished rolling out)."""
    table = _csv(path, "--deployments", ("timestamp", "revision"))
    at = _times(table["timestamp"], path, "--deployments", "timestamp")
    revisions = pd.to_numeric(table["revision"], errors="coerce")
    if revisions.isna().any() or (revisions < 1).any():
        raise BacktestError(f"--deployments {path}: revision must be a positive whole number")
    finished: list = [None] * len(at)
    if "finished" in table.columns and table["finished"].notna().any():
        done = _times(table["finished"].fillna(table["timestamp"]), path, "--deployments", "finished")
        finished = list(done)
    return [Deployment(t, int(r), f) for t, r, f in zip(at, revisions, finished, strict=True)]


def read_labels(path: Path, playbook: Playbook) -> list[Label]:
    """A CSV of ``start,end,cause``: what operators say happened (causes of the playbook)."""
    table = _csv(path, "--labels", ("start", "end", "cause"))
    start = _times(table["start"], path, "--labels", "start")
    end = _times(table["end"], path, "--labels", "end")
    labels = []
    for s, e, cause in zip(start, end, table["cause"].astype(str).str.strip(), strict=True):
        try:
            playbook.cause(cause)
        except KeyError:
            raise BacktestError(f"--labels {path}: unknown cause {cause!r}; known: "
                                f"{', '.join(c.id for c in playbook.causes)}") from None
        if e < s:
            raise BacktestError(f"--labels {path}: a label ends ({e}) before it starts ({s})")
        labels.append(Label(s, e, cause))
    return labels


def labels_from_log(store, target: ServiceTarget, start: pd.Timestamp,
                    end: pd.Timestamp) -> list[Label]:
    """The operator labels of the service's incidents in the log (``aiops incidents label``)."""
    out = []
    for incident in store.list(limit=1_000_000):
        if (incident.cluster, incident.service) != (target.cluster, target.service):
            continue
        if not start <= incident.opened_at <= end:
            continue
        marks = [e["data"].get("cause") for e in store.events(incident.id) if e["kind"] == "label"]
        if marks and marks[-1]:
            closed = incident.closed_at or incident.opened_at + pd.Timedelta(hours=1)
            out.append(Label(incident.opened_at, closed, marks[-1]))
    return sorted(out, key=lambda label: label.start)


# ---------------------------------------------------------------------- the whole backtest


@dataclass
class BacktestResult:
    """Every scenario's replay, its decisions, per-day table and scores."""

    runs: list[Replay]
    labels: list[Label]

    def scores(self) -> list[dict]:
        return [{"scenario": r.scenario.name, **scores(r, self.labels, r.scenario.playbook)}
                for r in self.runs]

    def to_dict(self) -> dict:
        return {"labels": len(self.labels),
                "scenarios": [{"name": r.scenario.name, "start": r.start.isoformat(),
                               "end": r.end.isoformat(),
                               "scores": scores(r, self.labels, r.scenario.playbook),
                               "per_day": per_day(r).to_dict(orient="records"),
                               "decisions": decisions(r.store)} for r in self.runs]}


def run_backtest(history: pd.DataFrame, detector: Detector, classifier: RootCauseClassifier,
                 target: ServiceTarget, base: Scenario, what_ifs: list[tuple[str, dict[str, str]]] = (),
                 deployments: Iterable[Deployment] = (), labels: list[Label] = (),
                 operator: Operator | None = Operator(), start: pd.Timestamp | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> BacktestResult:
    """Replay the history as configured and under each what-if (name, changes), side by side."""
    scenarios = [base] + [scenario(name, base, changes) for name, changes in what_ifs]
    deployments = list(deployments)
    runs = [replay(history, detector, classifier, target, s, deployments, operator, start, progress)
            for s in scenarios]
    return BacktestResult(runs, list(labels))
