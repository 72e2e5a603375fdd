"""The live watcher: one tick a scoring period — read, score, group, diagnose, act, verify.

One open incident per service at a time: anomalies that arrive while it is open join it and
cause no new action. An incident is verified ``verify_after_minutes`` after its action, against
the baselines of the health metrics; a failed verification or action escalates along the
playbook's path until someone acknowledges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from detection.anomaly import Anomaly
from detection.metrics import spec_for
from detection.zscore import RobustZDetector
from rca.diagnosis import RootCauseClassifier
from rca.features import incident_features
from rca.playbook import Playbook
from rca.report import render_markdown
from service.notify import Notifier, NotifyError
from service.remediation import Remediator
from service.settings import ServiceTarget, Settings
from service.store import Incident, IncidentStore

FEATURE_WINDOW = pd.Timedelta(minutes=15)


class MetricSource(Protocol):
    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


@dataclass(frozen=True)
class TickResult:
    """What one tick did, for the CLI, the demo and the tests."""

    at: pd.Timestamp
    anomalies: list[Anomaly]
    opened: int | None = None
    verified: int | None = None
    passed: bool | None = None


class Watcher:
    """Watches one service. Everything that talks to the world is handed in."""

    def __init__(self, target: ServiceTarget, source: MetricSource, detector: RobustZDetector,
                 classifier: RootCauseClassifier, remediator: Remediator, store: IncidentStore,
                 notifier: Notifier, playbook: Playbook, settings: Settings,
                 clock: Callable[[], pd.Timestamp]):
        self.target = target
        self.source = source
        self.detector = detector
        self.classifier = classifier
        self.remediator = remediator
        self.store = store
        self.notifier = notifier
        self.playbook = playbook
        self.settings = settings
        self.clock = clock
        self.period = pd.Timedelta(seconds=settings.period_seconds)

    def tick(self) -> TickResult:
        """Score the newest points and move the service's incident on by one step."""
        now = self.clock()
        window = self.source.read(now - FEATURE_WINDOW, now + self.period)
        recent = window[window.index > now - self.settings.group_window * self.period]
        anomalies = self.detector.detect(recent) if not recent.dropna(how="all").empty else []
        incident = self.store.open_for(self.target.cluster, self.target.service)
        if incident is not None:
            return self._follow(incident, anomalies, window, now)
        if self._should_open(anomalies):
            return TickResult(now, anomalies, opened=self._open(anomalies, window, now))
        return TickResult(now, anomalies)

    def _should_open(self, anomalies: list[Anomaly]) -> bool:
        periods = {a.timestamp for a in anomalies if spec_for(a.metric, self.detector.specs).health}
        return len(periods) >= self.settings.open_after

    def _open(self, anomalies: list[Anomaly], window: pd.DataFrame, now: pd.Timestamp) -> int:
        incident_id = self.store.open_incident(self.target.cluster, self.target.service, now)
        self.store.add_anomalies(incident_id, anomalies)
        expected = self.detector.expected_frame(window.index, list(window.columns))
        features = incident_features(anomalies, window, expected, list(self.settings.metrics))
        self.store.record(incident_id, now, "features", features)
        diagnosis = self.classifier.diagnose(features)
        self.store.set_diagnosis(incident_id, now, diagnosis.to_dict())
        outcome = self.remediator.remediate(incident_id, self.target, diagnosis, now)
        if outcome.status == "failed":
            self._escalate(incident_id, now, f"action {outcome.action} failed: {outcome.error}")
        elif outcome.status != "awaiting_approval":
            due = now + pd.Timedelta(minutes=self.settings.verify_after_minutes)
            self.store.set_status(incident_id, now, "verifying", verify_due_at=due,
                                  payload={"verify_due_at": due.isoformat()})
        return incident_id

    def _follow(self, incident: Incident, anomalies: list[Anomaly], window: pd.DataFrame,
                now: pd.Timestamp) -> TickResult:
        if anomalies:
            self.store.add_anomalies(incident.id, anomalies)
        if incident.status == "escalated":
            self._continue_escalation(incident, now)
        if incident.status == "verifying" and incident.verify_due_at is not None \
                and now >= incident.verify_due_at:
            passed = self._verify(incident, window, now)
            return TickResult(now, anomalies, verified=incident.id, passed=passed)
        return TickResult(now, anomalies)

    def _verify(self, incident: Incident, window: pd.DataFrame, now: pd.Timestamp) -> bool:
        recent = window[window.index > now - self.settings.group_window * self.period]
        health = [m for m in recent.columns if spec_for(m, self.detector.specs).health]
        verdict = self.detector.within_baseline(recent, health)
        passed = bool(verdict) and all(verdict.values())
        summary = ("all health metrics back inside their baselines" if passed else
                   "still outside baseline: " + ", ".join(m for m, ok in verdict.items() if not ok)
                   if verdict else "no data to verify against")
        self.store.record(incident.id, now, "verification", {"passed": passed, "metrics": verdict,
                                                             "summary": summary})
        if passed:
            self.store.set_status(incident.id, now, "resolved", closed=True, payload={"summary": summary})
            self.write_report(incident.id)
        else:
            self._escalate(incident.id, now, f"verification failed: {summary}")
        return passed

    def _escalate(self, incident_id: int, now: pd.Timestamp, reason: str) -> None:
        self.store.set_status(incident_id, now, "escalated", payload={"reason": reason})
        self._notify_step(incident_id, now, 0, reason)
        self.write_report(incident_id)

    def _continue_escalation(self, incident: Incident, now: pd.Timestamp) -> None:
        """Page the next role of the path once its delay since escalation has passed."""
        events = self.store.events(incident.id)
        started = next(pd.Timestamp(e["at"]) for e in events if e["kind"] == "status:escalated")
        done = {e["data"]["step"] for e in events if e["kind"] == "escalation"}
        minutes = (now - started).total_seconds() / 60
        for step, entry in enumerate(self.playbook.escalation):
            if step not in done and minutes >= entry.after_minutes:
                self._notify_step(incident.id, now, step, "no acknowledgement yet")

    def _notify_step(self, incident_id: int, now: pd.Timestamp, step: int, reason: str) -> None:
        role = self.playbook.escalation[step].role
        subject = f"Escalation: incident {incident_id} on {self.target.service}"
        try:
            message_id = self.notifier.notify(role, subject, reason)
            self.store.record(incident_id, now, "escalation",
                              {"step": step, "role": role, "reason": reason, "message_id": message_id})
        except NotifyError as exc:
            self.store.record(incident_id, now, "escalation_failed",
                              {"step": step, "role": role, "error": str(exc)})

    def write_report(self, incident_id: int) -> Path:
        """Write (or rewrite) the incident's Markdown report; its path is logged."""
        incident = self.store.get(incident_id)
        text = render_markdown(incident.to_dict(), self.store.anomalies(incident_id),
                               self.store.events(incident_id))
        path = self.settings.reports_dir / f"incident-{incident_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.store.record(incident_id, self.clock(), "report", {"path": str(path)})
        return path
