"""``aiops demo``: the whole loop on the embedded environment, one fault per matrix row.

A moto server on loopback stands in for AWS; the simulator creates the ECS service, writes two
weeks of history to CloudWatch, and then plays each fault minute by minute while the watcher
detects, diagnoses, acts through the ECS API and verifies 15 simulated minutes later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from detection.metrics import spec_for
from harness.world import SimulatedPlatform
from service import usecases
from service.settings import Settings
from service.store import IncidentStore
from simulation.clock import DEFAULT_START
from simulation.faults import FAULTS
from training.detectors import DEFAULT_DETECTOR, detector_config
from training.pipeline import ServiceResult, TrainOptions

QUIET_MINUTES = 10
MAX_FAULT_MINUTES = 45


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
    expected_outcome: str = "resolved"
    recovery_min: float | None = None
    oom_kills: int = 0   # tasks the simulated ECS killed for memory while the fault was played

    @property
    def correct(self) -> bool:
        """Right cause, and the outcome the fault calls for: fixed, or escalated when it can't be;
        a leak fixed before any task was OOM-killed."""
        if self.root_cause != self.expected_cause or self.oom_kills:
            return False
        if self.expected_outcome == "escalated":
            return self.verification.startswith("FAILED") and self.escalation != "none"
        return self.verification.startswith("resolved")


@dataclass(frozen=True)
class DemoResult:
    rows: list[ScorecardRow]
    run_dir: Path
    db_path: Path
    false_alarms: int
    history_points: int
    training: ServiceResult | None = None


class DemoEnvironment(SimulatedPlatform):
    """The embedded environment, ready to play faults: moto, the simulated service, the watcher.

    Use as a context manager; ``play(fault)`` runs one fault to its verification and returns
    its scorecard row. Tests use the same class the demo does.
    """

    def __init__(self, settings: Settings, seed: int = 7, history_days: int | None = None,
                 progress: Callable[[str], None] = print, detector: str = DEFAULT_DETECTOR,
                 mlflow_uri: str | None = None, speed: float = 0.0,
                 start: pd.Timestamp = DEFAULT_START):
        super().__init__(settings, start, seed=seed)
        self.days = history_days or settings.history_days
        self.progress = progress
        self.detector = detector
        self.mlflow_uri = mlflow_uri
        self.speed = speed
        self.false_alarms = 0

    def _start(self) -> None:
        super()._start()
        settings, say = self.settings, self.progress
        say(f"local AWS endpoint (moto) at {self.endpoint}")
        self.simulated = self.make_service()
        self.cloudwatch, self.sim = self.simulated.metrics, self.simulated.sim
        say(f"creating ECS service {settings.target.service} and writing {self.days + 1} days of "
            "1-minute history to CloudWatch (the last day is held back to evaluate the model) ...")
        self.history = self.sim.bootstrap(self.days + 1)
        self.trained = self._train()
        self.notifier = self.escalation_notifier()
        self.built = self.make_platform()
        self.store = self.built.store
        self.watcher = self.built.watcher(settings.target, self.trained.model, source=self.cloudwatch)

    def _train(self) -> ServiceResult:
        """Train the service's model through the nightly pipeline, tracked in MLflow."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        uri = self.mlflow_uri or f"sqlite:///{(settings.data_dir / 'mlflow.db').resolve()}"
        self.progress(f"training the {self.detector} model from CloudWatch history "
                      f"({self.history.size:,} points), tracked in MLflow at {uri} ...")
        options = TrainOptions(detector=detector_config(self.detector), days=self.days, n_jobs=1)
        result = self.train(self.simulated, options, mlflow_uri=uri)
        self.progress(f"model {result.status} (F1 on the held-back day "
                      f"{result.evaluation.get('f1', float('nan')):.2f}); bundle {result.deployed}; "
                      f"MLflow: {result.tracking or 'run ' + str(result.run_id)}")
        return result

    def step(self):
        """One simulated minute: the service writes its metrics, the watcher scores them."""
        started = time.monotonic()
        self.sim.step()
        result = self.watcher.tick()
        self.clock.advance()
        if self.speed > 0:
            time.sleep(max(0.0, 1.0 / self.speed - (time.monotonic() - started)))
        return result

    def quiet(self, minutes: int) -> int:
        """Run ``minutes`` with no fault at nominal capacity; return the incidents opened."""
        self.sim.clear()
        opened = sum(self.step().opened is not None for _ in range(minutes))
        self.false_alarms += opened
        return opened

    def play(self, fault: str, quiet_minutes: int = QUIET_MINUTES) -> ScorecardRow:
        """A quiet spell at nominal capacity, then ``fault`` until its incident is verified.

        A fault the playbook cannot fix runs on until the escalation reaches the second role of
        the path; then the operator acknowledges and resolves it, as a person would.
        """
        self.quiet(quiet_minutes)
        kills = len(self.sim.oom_kills)
        active = self.sim.inject(fault)
        self.progress(f"{active.start:%H:%M} injected {fault}: {active.fault.description}")
        incident_id = None
        for _ in range(MAX_FAULT_MINUTES):
            result = self.step()
            incident_id = incident_id or result.opened
            if result.verified is not None and result.verified == incident_id:
                break
        if active.fault.escalates and incident_id is not None:
            self._escalate_then_close(incident_id)
        row = replace(scorecard_row(self.store, fault, active.start, incident_id,
                                    active.fault.expected_cause,
                                    "escalated" if active.fault.escalates else "resolved"),
                      oom_kills=len(self.sim.oom_kills) - kills)
        self.progress(f"      -> {row.root_cause}, {row.action}: {row.ecs_change}; {row.verification}"
                      + (f"; escalated to {row.escalation}" if row.escalation != "none" else ""))
        return row

    def _escalate_then_close(self, incident_id: int) -> None:
        second = self.watcher.playbook.escalation[min(1, len(self.watcher.playbook.escalation) - 1)]
        for _ in range(int(second.after_minutes) + 1):
            self.step()
        usecases.acknowledge(self.built, incident_id, by="demo operator")
        self.sim.clear()   # the operator restores the dependency by hand ...
        for _ in range(self.settings.group_window + 1):   # ... and waits for clean minutes
            self.step()
        if self.store.get(incident_id).status != "resolved":
            usecases.resolve(self.built, incident_id, by="demo operator",
                             note="dependency restored by hand after escalation")


def run_demo(settings: Settings, faults: list[str] | None = None, seed: int = 7,
             history_days: int | None = None, progress: Callable[[str], None] = print,
             detector: str = DEFAULT_DETECTOR, mlflow_uri: str | None = None,
             speed: float = 0.0, start: pd.Timestamp = DEFAULT_START) -> DemoResult:
    """Run the demo scenario from simulated time ``start`` and return its scorecard.

    Writes under ``settings.data_dir``; the history ends at ``start`` and the faults follow it.
    """
    faults = list(faults or FAULTS)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    with DemoEnvironment(settings, seed, history_days, progress, detector, mlflow_uri, speed,
                         start) as env:
        rows = [env.play(name) for name in faults]
        return DemoResult(rows, settings.data_dir, settings.db_path, env.false_alarms,
                          int(env.history.size), env.trained)


def scorecard_row(store: IncidentStore, fault: str, start: pd.Timestamp, incident_id: int | None,
                  expected_cause: str, expected_outcome: str = "resolved") -> ScorecardRow:
    """Read one fault's outcome back from the incident log."""
    if incident_id is None:
        return ScorecardRow(fault, expected_cause, f"{start:%H:%M}", "not detected", None, "", "-", "-",
                            "-", "-", "-", "-", None, "", expected_outcome)
    incident = store.get(incident_id)
    events = store.events(incident_id)
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
    recovery = ((pd.Timestamp(verification["at"]) - start).total_seconds() / 60
                if verification is not None and verification["data"]["passed"] else None)
    return ScorecardRow(fault, expected_cause, f"{start:%H:%M}", f"{incident.opened_at:%H:%M}", delay,
                        "; ".join(texts), incident.root_cause or "-",
                        incident.severity or "-", incident.auto_action or "-", change,
                        verdict, ", ".join(escalations) or "none", incident_id, report,
                        expected_outcome, recovery)


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
