"""``aiops demo``: the whole loop on the embedded environment, one fault per matrix row.

A moto server on loopback stands in for AWS; the simulator creates the ECS service, writes two
weeks of history to CloudWatch, and then plays each fault minute by minute while the watcher
detects, diagnoses, acts through the ECS API and verifies 15 simulated minutes later.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from detection.metrics import spec_for
from service.aws import ClientFactory, local_aws
from service.bootstrap import build_watcher
from service.cloudwatch import CloudWatchMetrics
from service.notify import SnsNotifier
from service.settings import Settings
from service.store import IncidentStore
from service.watcher import Watcher
from simulation.clock import SimClock
from simulation.ecs_world import EcsWorld
from simulation.faults import FAULTS
from simulation.simulator import Simulator
from training.baselines import train_detector

QUIET_MINUTES = 10
MAX_FAULT_MINUTES = 45
FAMILY = "aiops-platform"


@dataclass(frozen=True)
class ScorecardRow:
    """One fault's story, as the demo prints it."""

    fault: str
    expected_cause: str
    start: str
    detected: str
    delay_min: float | None
    anomalies: str
    root_cause: str
    severity: str
    action: str
    ecs_change: str
    verification: str
    escalation: str
    incident_id: int | None
    report: str

    @property
    def correct(self) -> bool:
        return self.root_cause == self.expected_cause and self.verification.startswith("resolved")


@dataclass(frozen=True)
class DemoResult:
    rows: list[ScorecardRow]
    run_dir: Path
    db_path: Path
    false_alarms: int
    history_points: int


class DemoEnvironment:
    """The embedded environment, ready to play faults: moto, the simulated service, the watcher.

    Use as a context manager; ``play(fault)`` runs one fault to its verification and returns
    its scorecard row. Tests use the same class the demo does.
    """

    def __init__(self, settings: Settings, seed: int = 7, history_days: int | None = None,
                 progress: Callable[[str], None] = print):
        self.settings = settings
        self.seed = seed
        self.days = history_days or settings.history_days
        self.progress = progress
        self.false_alarms = 0
        self._stack = ExitStack()

    def __enter__(self) -> "DemoEnvironment":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _start(self) -> None:
        settings, say = self.settings, self.progress
        self.endpoint = self._stack.enter_context(local_aws())
        say(f"local AWS endpoint (moto) at {self.endpoint}")
        self.factory = ClientFactory()
        self.clock = SimClock(pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=12))
        self.cloudwatch = CloudWatchMetrics(self.factory.client("cloudwatch"), settings.metrics,
                                            settings.target, settings.period_seconds)
        world = EcsWorld(self.factory.client("ecs"), settings.target.cluster, settings.target.service,
                         FAMILY, endpoint_url=self.endpoint, ec2_client=self.factory.client("ec2"))
        self.sim = Simulator(world, self.cloudwatch.write, self.clock, seed=self.seed)
        say(f"creating ECS service {settings.target.service} and writing {self.days} days of "
            "1-minute history to CloudWatch ...")
        self.history = self.sim.bootstrap(self.days)
        say(f"training baselines from CloudWatch history ({self.history.size:,} points) ...")
        self.trained = train_detector(self.cloudwatch, self.clock.now, self.days,
                                      settings.model_dir / "demo", threshold=settings.threshold)
        say(f"baselines fitted ({self.trained.resolution}, {self.trained.points:,} points), "
            f"bundle at {self.trained.bundle}")
        sns = self.factory.client("sns")
        notifier = SnsNotifier(sns, sns.create_topic(Name="aiops-escalations")["TopicArn"])
        self.store = IncidentStore(settings.db_path)
        self.watcher = build_watcher(settings, self.factory, self.trained.detector, notifier,
                                     self.clock, store=self.store)

    def quiet(self, minutes: int) -> int:
        """Run ``minutes`` with no fault at nominal capacity; return the incidents opened."""
        self.sim.clear()
        opened = sum(_step(self.sim, self.watcher).opened is not None for _ in range(minutes))
        self.false_alarms += opened
        return opened

    def play(self, fault: str, quiet_minutes: int = QUIET_MINUTES) -> ScorecardRow:
        """A quiet spell at nominal capacity, then ``fault`` until its incident is verified."""
        self.quiet(quiet_minutes)
        return _play_fault(self.sim, self.watcher, self.store, fault, self.progress)


def run_demo(settings: Settings, faults: list[str] | None = None, seed: int = 7,
             history_days: int | None = None, progress: Callable[[str], None] = print) -> DemoResult:
    """Run the demo scenario and return its scorecard. Writes under ``settings.data_dir``."""
    faults = list(faults or FAULTS)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    with DemoEnvironment(settings, seed, history_days, progress) as env:
        rows = [env.play(name) for name in faults]
        return DemoResult(rows, settings.data_dir, settings.db_path, env.false_alarms,
                          int(env.history.size))


def _step(sim: Simulator, watcher: Watcher):
    """One simulated minute: the service writes its metrics, the watcher scores them."""
    sim.step()
    result = watcher.tick()
    sim.clock.advance()
    return result


def _play_fault(sim: Simulator, watcher: Watcher, store: IncidentStore, name: str,
                progress: Callable[[str], None]) -> ScorecardRow:
    active = sim.inject(name)
    progress(f"{active.start:%H:%M} injected {name}: {active.fault.description}")
    incident_id = None
    for _ in range(MAX_FAULT_MINUTES):
        result = _step(sim, watcher)
        incident_id = incident_id or result.opened
        if result.verified is not None and result.verified == incident_id:
            break
    row = scorecard_row(store, name, active.start, incident_id, active.fault.expected_cause)
    progress(f"      -> {row.root_cause}, {row.action}: {row.ecs_change}; {row.verification}")
    return row


def scorecard_row(store: IncidentStore, fault: str, start: pd.Timestamp, incident_id: int | None,
                  expected_cause: str) -> ScorecardRow:
    """Read one fault's outcome back from the incident log."""
    if incident_id is None:
        return ScorecardRow(fault, expected_cause, f"{start:%H:%M}", "not detected", None, "", "-", "-",
                            "-", "-", "-", "-", None, "")
    incident = store.get(incident_id)
    events = store.events(incident_id)
    diagnosis = incident.diagnosis or {}
    texts = _top_anomalies(store.anomalies(incident_id))
    change = next((e["data"].get("change", "") for e in events if e["kind"] == "action_done"),
                  next((f"alerted {e['data']['role']}" for e in events if e["kind"] == "alert_sent"),
                       next((f"failed: {e['data']['error']}" for e in events
                             if e["kind"] == "action_failed"), "none")))
    verification = next((e for e in events if e["kind"] == "verification"), None)
    escalations = [e["data"]["role"] for e in events if e["kind"] == "escalation"]
    report = next((e["data"]["path"] for e in reversed(events) if e["kind"] == "report"), "")
    delay = (incident.opened_at - start).total_seconds() / 60
    verdict = ("pending" if verification is None else
               f"{'resolved' if verification['data']['passed'] else 'FAILED'} at "
               f"{pd.Timestamp(verification['at']):%H:%M}")
    return ScorecardRow(fault, expected_cause, f"{start:%H:%M}", f"{incident.opened_at:%H:%M}", delay,
                        "; ".join(texts), diagnosis.get("root_cause", "-"),
                        diagnosis.get("severity", "-"), diagnosis.get("auto_action", "-"), change,
                        verdict, ", ".join(escalations) or "none", incident_id, report)


def _top_anomalies(anomalies: list[dict]) -> list[str]:
    """The strongest anomaly of each metric: health metrics first, then by score."""
    best: dict[str, dict] = {}
    for a in anomalies:
        if a["metric"] not in best or a["score"] > best[a["metric"]]["score"]:
            best[a["metric"]] = a
    ranked = sorted(best.values(), key=lambda a: (not spec_for(a["metric"]).health, -a["score"]))
    return [a["text"] for a in ranked][:3]


def rows_as_dicts(rows: list[ScorecardRow]) -> list[dict]:
    return [asdict(r) | {"correct": r.correct} for r in rows]
