"""The live watcher: one tick a scoring period — read, score, group, diagnose, act, verify.

Anomalies that arrive while the service has an open incident are filed by the policy of
:mod:`service.triage`: they join the incident automation is working on (``open``,
``verifying``: a fault's symptoms change after an action and its verification judges), or an
open incident that already shows their symptoms or has their root cause (the same fault is one
incident). When every open incident awaits approval, is escalated or acknowledged and the
anomalies' root cause (the classifier's answer for the current window) is another one, they
open a new incident, linked to the other (``related_to``), with its own diagnosis and, within
the guardrails, its own action, verification, escalation and report. So a false alarm that
escalated never swallows the next real fault. Its verification leaves aside the metrics an
older open incident still shows; that older incident is not re-verified, it stays with its
person.

Each tick moves every open incident of the service on by the steps that are due (oldest
first), read back from the incident log, so a watcher killed at any point picks up where it
stopped:

``open``               diagnose (if not yet), decide, act through the guarded executor
``awaiting_approval``  page until approved or acknowledged; once approved, act
``verifying``          at ``verify_due_at`` compare the health metrics with their baselines,
                       exactly once: resolved (and the RCA report sent) or escalated
``escalated``          page the next role of the path when its delay has passed, until acked
``acknowledged``       a person owns it; it stays open until ``aiops incidents resolve``

A failed read of CloudWatch is logged and skips the tick's detection and verification (they
happen on the next tick that has data, which also scores the periods the outage hid, within the
15-minute read window); nothing is lost.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from detection.anomaly import Anomaly
from detection.forecast import OomForecast, time_to_limit
from detection.metrics import spec_for
from rca.diagnosis import Diagnosis, Evidence, RootCauseClassifier
from rca.features import incident_features
from rca.outcomes import track_record
from rca.playbook import Playbook
from service.action import ActionOutcome
from service.cloudwatch import MetricSourceError
from service.escalation import Escalator
from service.metric_window import EVENT as WINDOW_EVENT
from service.metric_window import capture_window
from service.notify import Notifier, NotifyError
from service.remediation import Outcome, Remediator
from service.reporting import send_report, unsent_reports, write_report
from service.settings import ServiceTarget, Settings
from service.store import Incident, IncidentStore
from service.triage import Filing, decide, in_automated_phase, left_to_others

try:  # ECS facts for the classifier, in rca versions whose feature builder takes them
    from rca.features import EcsContext
except ImportError:  # pragma: no cover - an rca without ECS context
    EcsContext = None

FEATURE_WINDOW = pd.Timedelta(minutes=15)
# On (re)start, the streaming member is fed the minutes it missed since its live stream stopped
# (the end of training, or the last tick of a replica that died), this far back at most: its
# shift and sustained channels look back up to 16 hours, its level a day.
CATCH_UP = pd.Timedelta(days=1)
MEMORY = "memory_utilization"   # the metric whose trend gives the time to OOM
ECS_ACTIONS = ("scale_up", "restart_tasks", "rollback")   # what learned outcomes may skip
BLIND_ALERT_TICKS = 5  # periods without metrics before the on-call engineer is told
log = logging.getLogger("aiops.watcher")


class MetricSource(Protocol):
    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


class Detector(Protocol):
    """The detector seam: the z-score detector, the ensemble, or a fake."""

    threshold: float
    specs: Any

    def detect(self, frame: pd.DataFrame) -> list[Anomaly]: ...

    def expected_frame(self, index: pd.DatetimeIndex, metrics: list[str]) -> pd.DataFrame: ...

    def within_baseline(self, frame: pd.DataFrame, metrics: list[str]) -> dict[str, bool]: ...


@dataclass(frozen=True)
class IncidentStep:
    """What one tick did to one open incident: its status after the tick, an action's outcome,
    a verification."""

    incident: int
    status: str
    outcome: Outcome | None = None
    verified: bool = False
    passed: bool | None = None


@dataclass(frozen=True)
class TickResult:
    """What one tick did, for the CLI, the demo and the tests.

    ``steps`` holds what the tick did to each open incident of the service, oldest first, and
    ``joined`` the open incident the tick's anomalies joined. The single-incident fields
    (``incident``, ``status``, ``outcome``, ``verified``, ``passed``) describe the incident the
    tick opened, else the one it verified, else the one it acted on, else the one the anomalies
    joined, else the newest open one: callers that follow one incident read them as before.
    """

    at: pd.Timestamp
    anomalies: list[Anomaly]
    opened: int | None = None
    verified: int | None = None
    passed: bool | None = None
    incident: int | None = None
    status: str | None = None
    outcome: Outcome | None = None
    read_error: str | None = None
    joined: int | None = None
    steps: tuple[IncidentStep, ...] = ()

    @classmethod
    def of(cls, at: pd.Timestamp, anomalies: list[Anomaly], error: str | None,
           steps: tuple[IncidentStep, ...], opened: int | None, joined: int | None) -> "TickResult":
        """The result of a tick that moved ``steps`` on, opened ``opened``, filed into ``joined``."""
        main = _main_step(steps, opened, joined)
        if main is None:
            return cls(at, anomalies, opened=opened, read_error=error, joined=joined, steps=steps)
        return cls(at, anomalies, opened=opened, verified=main.incident if main.verified else None,
                   passed=main.passed, incident=main.incident, status=main.status,
                   outcome=main.outcome, read_error=error, joined=joined, steps=steps)


def _main_step(steps: tuple[IncidentStep, ...], opened: int | None,
               joined: int | None) -> IncidentStep | None:
    """The step the single-incident fields of a tick's result describe (see TickResult)."""
    for chosen in (lambda s: s.incident == opened, lambda s: s.verified,
                   lambda s: s.outcome is not None, lambda s: s.incident == joined):
        found = next((s for s in steps if chosen(s)), None)
        if found is not None:
            return found
    return steps[-1] if steps else None


class Watcher:
    """Watches one service. Everything that talks to the world is handed in.

    Parameters
    ----------
    ecs : optional; an object with ``describe(cluster, service)`` (``EcsActions``) whose
        answer gives the classifier ECS facts (time since the last deployment, running tasks)
        when the feature builder accepts them.
    """

    def __init__(self, target: ServiceTarget, source: MetricSource, detector: Detector,
                 classifier: RootCauseClassifier, remediator: Remediator, store: IncidentStore,
                 notifier: Notifier, playbook: Playbook, settings: Settings,
                 clock: Callable[[], pd.Timestamp], ecs: Any | None = None):
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
        self.ecs = ecs
        self.period = pd.Timedelta(seconds=settings.period_seconds)
        self.escalator = Escalator(store, notifier, playbook)
        self.remediator.watch(target)
        self._resumed = False
        self._blind_ticks = 0
        self._blind_alerted = False
        self._memory = pd.Series(dtype=float)   # the last lookback minutes of memory (time to OOM)
        self._ahead: tuple | None = None        # a read made ahead of the tick (read_ahead)

    @property
    def name(self) -> str:
        return f"{self.target.cluster}/{self.target.service}"

    # ------------------------------------------------------------------ the tick

    def read_ahead(self) -> tuple[pd.DataFrame | None, pd.Timestamp | None]:
        """This tick's read, made before ``tick`` so that a fleet can score every service's
        window in one pass (``service.fleet.Fleet.tick``): the window, and the first timestamp
        whose anomalies the tick keeps (None for both when the tick will score nothing)."""
        now = self.clock()
        if not self._resumed:
            self.resume(now)
        missed = self._blind_ticks
        window, error = self._read(now)
        self._ahead = (now, missed, window, error)
        if window is None:
            return None, None
        recent = self._recent(window, now, extra=missed)
        return (window, recent.index[0]) if not recent.dropna(how="all").empty else (None, None)

    def tick(self, detected: list[Anomaly] | None = None) -> TickResult:
        """Score the newest points, file them, and move every open incident on by its due steps.

        ``detected``: the anomalies of the window ``read_ahead`` returned, found by a fleet-wide
        scorer (what ``detector.detect`` of that window gives); used only with that read.
        """
        now = self.clock()
        if not self._resumed:
            self.resume(now)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == now:
            _, missed, window, error = ahead
        else:
            missed = self._blind_ticks   # periods no tick could score: scored now, once readable
            window, error = self._read(now)
            detected = None
        anomalies: list[Anomaly] = []
        if window is not None:
            recent = self._recent(window, now, extra=missed)
            if not recent.dropna(how="all").empty:
                # the whole window is scored (a level shift is judged against the minutes before
                # it); the anomalies of the recent periods are this tick's
                found = detected if detected is not None else self.detector.detect(window)
                anomalies = [a for a in found if a.timestamp >= recent.index[0]]
        opened, joined = self._file(anomalies, window, now)
        if opened is None and joined is None:
            opened = self._restart_before_oom(window, now)
        steps = tuple(self._advance(incident, window, now) for incident in self._open_incidents())
        return TickResult.of(now, anomalies, error, steps, opened, joined)

    def _open_incidents(self) -> list[Incident]:
        return self.store.open_incidents(self.target.cluster, self.target.service)

    def take_over(self) -> None:
        """This replica has just taken the service (its lease): resume on the next tick, as after a
        restart, whatever another replica left (an action it was in, a report it held back);
        what this watcher remembered of the service from before is stale."""
        self._resumed = False
        self._blind_ticks, self._blind_alerted = 0, False
        self._memory = pd.Series(dtype=float)

    def resume(self, now: pd.Timestamp) -> None:
        """After a (re)start: settle actions a crash interrupted, send reports a crash held back."""
        self._resumed = True
        interrupted = self.remediator.recover(self.target.cluster, self.target.service, now)
        if interrupted:
            log.warning("%s: actions %s were interrupted by a restart; not repeated",
                        self.name, interrupted)
        for incident_id in unsent_reports(self.store, self.target.cluster, self.target.service):
            send_report(self.store, self.notifier, incident_id, self.escalator.on_call,
                        self.settings.reports_dir, now)
        self._catch_up(now)

    def _catch_up(self, now: pd.Timestamp) -> None:
        """Feed the detector's live stream the minutes it missed before this tick's window
        (``CATCH_UP`` at most); without them its next judgement would jump the gap."""
        stream_end = getattr(self.detector, "stream_end", None)
        end = stream_end() if stream_end is not None else None
        until = now - FEATURE_WINDOW - self.period
        if end is None or end >= until:
            return
        start = max(end, now - CATCH_UP)
        try:
            missed = self.source.read(start, until)
        except MetricSourceError as exc:  # the tick goes on; the stream jumps the gap as before
            log.warning("%s: could not read the %s missed before this start: %s",
                        self.name, until - start, exc)
            return
        self.detector.catch_up(missed)
        log.info("%s: detector caught up on %s of metrics missed before this start", self.name, until - start)

    def _read(self, now: pd.Timestamp) -> tuple[pd.DataFrame | None, str | None]:
        """The metric window, or None and the error; a long outage pages the on-call engineer once."""
        where = {"cluster": self.target.cluster, "service": self.target.service}
        # the first read (and the first after a spell without metrics) reaches back far enough
        # for memory's trend; the scored window is always the last FEATURE_WINDOW of it
        reach = FEATURE_WINDOW if not self._memory.empty and not self._blind_ticks else max(
            FEATURE_WINDOW, pd.Timedelta(minutes=self.playbook.oom.lookback_minutes))
        try:
            read = self.source.read(now - reach, now + self.period)
        except MetricSourceError as exc:
            if self._blind_ticks == 0:
                self.store.record(None, now, "read_failed", {**where, "error": str(exc)})
            self._blind_ticks += 1
            log.error("%s: %s", self.name, exc)
            if self._blind_ticks >= BLIND_ALERT_TICKS and not self._blind_alerted:
                self._alert_blind(now, str(exc))
            return None, str(exc)
        self._remember_memory(read, now)
        window = read[read.index >= now - FEATURE_WINDOW] if len(read) else read
        if self._blind_ticks:
            self.store.record(None, now, "read_recovered", {**where, "ticks_without_metrics":
                                                            self._blind_ticks})
            self._blind_ticks, self._blind_alerted = 0, False
        return window, None

    # ------------------------------------------------------------------ time to OOM

    def _remember_memory(self, read: pd.DataFrame, now: pd.Timestamp) -> None:
        """Keep the newest ``lookback`` minutes of memory (newer reads of a minute win)."""
        if MEMORY not in read.columns:
            return
        fresh = read[MEMORY].dropna()
        if fresh.empty:
            return
        kept = self._memory
        if not kept.empty:   # what was read again (the recent minutes) comes from the newest read
            kept = kept.iloc[:kept.index.searchsorted(fresh.index[0])]
        merged = pd.concat([kept, fresh]) if not kept.empty else fresh
        lookback = pd.Timedelta(minutes=self.playbook.oom.lookback_minutes)
        self._memory = merged.iloc[merged.index.searchsorted(now - lookback, side="right"):]

    def forecast(self) -> OomForecast | None:
        """Memory's time to its limit at the current trend (:mod:`detection.forecast`), if rising."""
        policy = self.playbook.oom
        return time_to_limit(self._memory, policy.limit_percent, policy.lookback_minutes,
                             policy.confidence)

    def _restart_before_oom(self, window: pd.DataFrame | None, now: pd.Timestamp) -> int | None:
        """Open a memory_leak incident when the forecast puts OOM inside the playbook's horizon.

        Only when automation is not already working on an incident of the service and no open
        incident is a memory leak; the incident then takes the memory_leak row's action (restart,
        a rolling deployment) through the guardrails like any other. Returns the incident opened.
        """
        horizon = self.playbook.oom.horizon_minutes
        if window is None or horizon <= 0:
            return None
        incidents = self._open_incidents()
        if in_automated_phase(incidents) is not None or any(i.root_cause == "memory_leak"
                                                            for i in incidents):
            return None
        forecast = self.forecast()
        if forecast is None or not forecast.within(horizon):
            return None
        expected = None
        try:
            frame = self.detector.expected_frame(window.index[-1:], [MEMORY])
            expected = float(frame[MEMORY].iloc[-1])
        except (KeyError, ValueError, IndexError):
            pass   # no baseline for memory: the forecast stands on its own
        diagnosis = Diagnosis.from_cause(
            self.playbook, "memory_leak", forecast.confidence,
            f"Memory is climbing towards its limit: even the slowest plausible trend reaches "
            f"{forecast.limit:.0f}% within the {horizon:.0f}-minute horizon, so the tasks are "
            "restarted before they are killed.",
            [Evidence(MEMORY, round(forecast.level, 3), None if expected is None else round(expected, 3)),
             Evidence("memory_slope_per_minute", round(forecast.slope_per_minute, 4), 0.0)],
        ).with_forecast(forecast)
        payload = {"reason": "oom_forecast", "root_cause": "memory_leak",
                   "summary": f"time to OOM inside the {horizon:.0f}-minute horizon: {forecast.summary()}"}
        if incidents:
            payload.update(other_root_cause=incidents[-1].root_cause, other_status=incidents[-1].status)
            opened = self.store.split_incident(self.target.cluster, self.target.service, now,
                                               incidents[-1].id, payload)
        else:
            opened = self.store.open_incident(self.target.cluster, self.target.service, now)
        self.store.record(opened, now, "oom_forecast", {**forecast.to_dict(), **payload})
        self._record_window(opened, window, now, "opened")
        self.store.set_diagnosis(opened, now, diagnosis.to_dict())
        log.warning("%s: incident %s opened ahead of OOM: %s", self.name, opened, forecast.summary())
        return opened

    def _alert_blind(self, now: pd.Timestamp, error: str) -> None:
        """Tell the on-call engineer the watcher cannot see the service (it cannot detect anything)."""
        role = self.escalator.on_call
        subject = f"aiops cannot read the metrics of {self.name}"
        body = (f"For {self._blind_ticks} scoring periods the watcher could not read {self.name}'s "
                f"metrics, so it cannot detect incidents there.\nLast error: {error}\n"
                "Check the IAM permissions (cloudwatch:GetMetricStatistics) and CloudWatch's health.")
        try:
            message_id = self.notifier.notify(role, subject, body)
        except NotifyError as exc:
            self.store.record(None, now, "blind_alert_failed", {"service": self.name, "error": str(exc)})
            return
        self._blind_alerted = True
        self.store.record(None, now, "blind_alert", {"service": self.name, "role": role,
                                                     "message_id": message_id, "error": error})

    def _recent(self, window: pd.DataFrame, now: pd.Timestamp, extra: int = 0) -> pd.DataFrame:
        """The last ``group_window`` periods of ``window``, and ``extra`` periods before them.

        After a spell without metrics the periods it hid are still in CloudWatch: the first tick
        that can read them scores them too (within the read window), so a fault that began
        while the watcher was blind is not missed because it was half over when it could see.
        """
        return window[window.index > now - (self.settings.group_window + extra) * self.period]

    def _is_health(self, metric: str) -> bool:
        return spec_for(metric, self.detector.specs).health

    def _should_open(self, anomalies: list[Anomaly]) -> bool:
        """``open_after`` periods with a health anomaly within some ``group_window`` periods."""
        periods = sorted({a.timestamp for a in anomalies if self._is_health(a.metric)})
        need, span = self.settings.open_after, (self.settings.group_window - 1) * self.period
        return any(periods[i + need - 1] - periods[i] <= span for i in range(len(periods) - need + 1))

    # ------------------------------------------------------------------ filing anomalies

    def _file(self, anomalies: list[Anomaly], window: pd.DataFrame | None,
              now: pd.Timestamp) -> tuple[int | None, int | None]:
        """Join the anomalies to an open incident or open one (service.triage's policy).

        Returns ``(opened, joined)``: the incident opened or the one joined, if any.
        """
        if not anomalies or window is None:
            return None, None
        incidents = self._open_incidents()
        if not incidents:
            return (self._open(anomalies, window, now) if self._should_open(anomalies) else None), None
        filing = decide(self.store, incidents, {a.metric for a in anomalies if self._is_health(a.metric)},
                        self._should_open(anomalies), self._is_health,
                        lambda: self._classify(anomalies, window))
        if filing.splits:
            return self._split(filing, anomalies, window, now), None
        self.store.add_anomalies(filing.incident.id, anomalies)
        if filing.reason in ("lingering", "same_root_cause"):
            self._note_join(filing, anomalies, now)
        return None, filing.incident.id

    def _open(self, anomalies: list[Anomaly], window: pd.DataFrame, now: pd.Timestamp) -> int:
        """Open the service's incident (none is open); its diagnosis follows in this tick."""
        opened = self.store.open_incident(self.target.cluster, self.target.service, now)
        self.store.add_anomalies(opened, anomalies)
        self._record_window(opened, window, now, "opened")
        return opened

    def _split(self, filing: Filing, anomalies: list[Anomaly], window: pd.DataFrame,
               now: pd.Timestamp) -> int:
        """Open an incident for another fault, diagnosed with the signature that told it apart."""
        other, cause = filing.related, filing.signature.root_cause
        aside = "".join(f"; {m} left to incident {i}" for m, i in filing.set_aside.items())
        payload = {"reason": filing.reason, "root_cause": cause, "other_root_cause": other.root_cause,
                   "other_status": other.status, "set_aside": filing.set_aside,
                   "summary": f"another fault ({cause}) while incident {other.id} "
                              f"({other.root_cause or 'undiagnosed'}) is {other.status}{aside}"}
        opened = self.store.split_incident(self.target.cluster, self.target.service, now, other.id,
                                           payload)
        self.store.add_anomalies(opened, anomalies)
        self._record_window(opened, window, now, "opened")
        self.store.record(opened, now, "features", filing.features)
        self.store.set_diagnosis(opened, now, self._with_track_record(filing.signature).to_dict())
        log.warning("%s: incident %s split off from incident %s: %s", self.name, opened, other.id,
                    payload["summary"])
        return opened

    def _note_join(self, filing: Filing, anomalies: list[Anomaly], now: pd.Timestamp) -> None:
        """Log that anomalies joined an incident automation is done with, when that changes.

        One ``joined`` event per change of reason or root cause, never one per tick.
        """
        incident = filing.incident
        cause = filing.signature.root_cause if filing.signature is not None else None
        last = self.store.last_event(incident.id, "joined")
        if last is not None and (last["data"].get("reason"), last["data"].get("root_cause")) == \
                (filing.reason, cause):
            return
        metrics = sorted({a.metric for a in anomalies if self._is_health(a.metric)})
        why = (f"same root cause ({cause})" if filing.reason == "same_root_cause"
               else "symptoms it already shows")
        self.store.record(incident.id, now, "joined", {
            "reason": filing.reason, "root_cause": cause, "metrics": metrics,
            "status": incident.status,
            "summary": f"new anomalies ({', '.join(metrics)}) joined while {incident.status}: {why}"})

    # ------------------------------------------------------------------ the lifecycle

    def _advance(self, incident: Incident, window: pd.DataFrame | None,
                 now: pd.Timestamp) -> IncidentStep:
        """Move one open incident on by the steps that are due now."""
        outcome = None
        if incident.status == "open":
            if incident.diagnosis is None:
                if window is None:
                    return IncidentStep(incident.id, incident.status)
                self._diagnose(incident, window, now)
            diagnosis = self._diagnosis(incident.id)
            outcome = (self._skip(incident.id, diagnosis, now) if self._never_works(diagnosis)
                       else self.remediator.remediate(incident.id, self.target, diagnosis, now))
            self._after_action(incident.id, outcome, now)
        elif incident.status == "awaiting_approval":
            if incident.approved_at is not None:
                outcome = self.remediator.execute_approved(incident.id, self.target,
                                                           self._diagnosis(incident.id), now,
                                                           approved_by=incident.approved_by)
                self._after_action(incident.id, outcome, now)
            else:
                self.escalator.page_due(incident, now)
        elif incident.status == "verifying":
            due = incident.verify_due_at is not None and now >= incident.verify_due_at
            if due and window is not None:
                passed = self._verify(incident, window, now)
                return IncidentStep(incident.id, self.store.get(incident.id).status, verified=True,
                                    passed=passed)
        elif incident.status == "escalated":
            self.escalator.page_due(incident, now)
        return IncidentStep(incident.id, self.store.get(incident.id).status, outcome=outcome)

    def _diagnose(self, incident: Incident, window: pd.DataFrame, now: pd.Timestamp) -> None:
        features, diagnosis = self._classify(self._stored_anomalies(incident.id), window)
        self.store.record(incident.id, now, "features", features)
        self.store.set_diagnosis(incident.id, now, self._with_track_record(diagnosis).to_dict())

    def _classify(self, anomalies: list[Anomaly], window: pd.DataFrame) -> tuple[dict, Diagnosis]:
        """The features of ``anomalies`` over the window and the classifier's diagnosis of them.

        The one path from anomalies to a root cause: an incident's diagnosis and the signature
        that tells a new fault from an open incident's both come from here.
        """
        expected = self.detector.expected_frame(window.index, list(window.columns))
        features = self._features(anomalies, window, expected)
        diagnosis = self.classifier.diagnose(features)
        if diagnosis.root_cause == "memory_leak":
            diagnosis = diagnosis.with_forecast(self.forecast())
        return features, diagnosis

    def _features(self, anomalies: list[Anomaly], window: pd.DataFrame,
                  expected: pd.DataFrame) -> dict:
        """The incident's features, with the baseline spread and ECS facts when they are known."""
        accepts = inspect.signature(incident_features).parameters
        extra: dict = {}
        if "spread" in accepts:
            spread = self._spread(window)
            if spread is not None:
                extra["spread"] = spread
        allowed = self.remediator.guardrails.allowed_service(self.target.cluster, self.target.service)
        if "context" in accepts and self.ecs is not None and EcsContext is not None and allowed:
            extra["context"] = self._ecs_context()   # outside the allow-list: not even a read
        return incident_features(anomalies, window, expected, list(self.settings.metrics), **extra)

    def _spread(self, window: pd.DataFrame) -> pd.DataFrame | None:
        """The baseline spread at the window's timestamps, if the detector exposes its baselines."""
        baseline = getattr(self.detector, "baseline_", None)
        if baseline is None:
            return None
        fitted = getattr(baseline, "metrics_", list(window.columns))
        return pd.DataFrame({m: baseline.expected(m, window.index).spread
                             for m in window.columns if m in fitted}, index=window.index)

    def _ecs_context(self):
        """ECS facts for the classifier; what cannot be read is unknown (never blocks a tick)."""
        cluster, service = self.target.cluster, self.target.service
        try:
            state = self.ecs.describe(cluster, service)
        except Exception as exc:  # noqa: BLE001 - context is optional; the reason is logged
            log.warning("%s: no ECS context for the diagnosis: %s", self.name, exc)
            return EcsContext()
        minutes = None
        if state.deployed_at:
            deployed = pd.Timestamp(state.deployed_at)
            deployed = deployed.tz_localize("UTC") if deployed.tz is None else deployed.tz_convert("UTC")
            elapsed = (self.clock() - deployed).total_seconds() / 60
            minutes = elapsed if elapsed >= 0 else None  # a deployment "in the future": clocks differ
        oom = None
        counter = getattr(self.ecs, "oom_stopped_tasks", None)
        if counter is not None:
            try:
                oom = counter(cluster, service)
            except Exception as exc:  # noqa: BLE001 - as above
                log.warning("%s: cannot count OOM-stopped tasks: %s", self.name, exc)
        return EcsContext(minutes_since_deployment=minutes, oom_stopped_tasks=oom,
                          running_tasks=state.running_count, desired_tasks=state.desired_count)

    # ------------------------------------------------------------------ learned outcomes

    def _with_track_record(self, diagnosis: Diagnosis) -> Diagnosis:
        """The diagnosis with its automatic action's past outcomes for the cause on this service
        (:mod:`rca.outcomes`); the explanation states the rate once the action was verified here."""
        if diagnosis.auto_action not in ECS_ACTIONS:
            return diagnosis
        record = track_record(self.store.outcomes(self.target.cluster, self.target.service),
                              diagnosis.root_cause, diagnosis.auto_action)
        if not record.tried:
            return replace(diagnosis, track_record=record)
        return diagnosis.with_track_record(record)

    def _never_works(self, diagnosis: Diagnosis) -> bool:
        record = diagnosis.track_record
        return record is not None and record.never_works(self.playbook.skip_after_failures)

    def _skip(self, incident_id: int, diagnosis: Diagnosis, now: pd.Timestamp) -> Outcome:
        """Skip an action that failed its last verifications here: decided, logged, not run."""
        record = diagnosis.track_record
        why = (f"it failed to fix {diagnosis.root_cause} on {self.target.service} the last "
               f"{record.failing_streak} times ({record.summary()}; the playbook skips after "
               f"{self.playbook.skip_after_failures})")
        self.store.record(incident_id, now, "decision", {
            "action": diagnosis.auto_action, "skipped": True, "root_cause": diagnosis.root_cause,
            "track_record": record.to_dict(),
            "summary": f"{diagnosis.root_cause} -> {diagnosis.auto_action} skipped: {why}"})
        return Outcome(diagnosis.auto_action, "skipped", "none", why, reason="never_works")

    def _record_outcome(self, incident: Incident, passed: bool, now: pd.Timestamp) -> None:
        """Keep what the verification says of the incident's fix (the learned outcomes)."""
        if incident.root_cause is None:
            return
        self.store.record_outcome(ActionOutcome(incident.id, self.target.cluster, self.target.service,
                                                incident.root_cause, self._action_that_ran(incident.id),
                                                passed, now))

    def _action_that_ran(self, incident_id: int) -> str:
        """The incident's automatic action if it reached ECS; ``alert_only`` or ``none`` if not."""
        ran = [a for a in self.store.actions(incident_id=incident_id)
               if a.origin == "auto" and a.status in ("done", "interrupted")]
        if ran:
            return ran[-1].action
        if self.store.last_event(incident_id, "alert_sent") is not None:
            return "alert_only"
        return "none"

    def _stored_anomalies(self, incident_id: int) -> list[Anomaly]:
        return [Anomaly.build(a["metric"], a["timestamp"], a["value"], a["expected"], a["lower"],
                              a["upper"], a["score"], self.detector.specs)
                for a in self.store.anomalies(incident_id)]

    def _diagnosis(self, incident_id: int) -> Diagnosis:
        """The incident's diagnosis read back from the log (the same after a restart)."""
        diagnosis = self.store.get(incident_id).diagnosis
        if diagnosis is None:
            raise ValueError(f"incident {incident_id} has no diagnosis yet")
        return diagnosis

    def _after_action(self, incident_id: int, outcome: Outcome, now: pd.Timestamp) -> None:
        """Move the incident on from an action's outcome (each move taken at most once)."""
        if outcome.status == "awaiting_approval":
            self.escalator.request_approval(incident_id, now, outcome.action)
        elif outcome.status in ("failed", "refused", "skipped"):
            what = {"refused": "refused by the guardrails", "skipped": "skipped"}.get(outcome.status,
                                                                                   "failed")
            self.escalator.escalate(incident_id, now, f"{outcome.action} {what}: {outcome.error}")
            write_report(self.store, incident_id, self.settings.reports_dir, now)
        else:
            started = outcome.started_at if outcome.started_at is not None else now
            due = started + pd.Timedelta(minutes=self.settings.verify_after_minutes)
            self.store.set_status(incident_id, now, "verifying", verify_due_at=due,
                                  payload={"verify_due_at": due.isoformat(), "after": outcome.status},
                                  expect=("open", "awaiting_approval"))

    def _verify(self, incident: Incident, window: pd.DataFrame, now: pd.Timestamp) -> bool:
        """Judge the health metrics over the recent window, once; resolve or escalate.

        Metrics another open incident still shows and that are not this incident's symptoms are
        left to that incident (named under ``left_to`` in the verification).
        """
        recent = self._recent(window, now)
        left = left_to_others(self.store, incident, self._open_incidents(), self._is_health)
        health = [m for m in recent.columns if self._is_health(m) and m not in left]
        verdict = self.detector.within_baseline(recent, health)
        passed = bool(verdict) and all(verdict.values())
        summary = ("all health metrics back inside their baselines" if passed else
                   "still outside baseline: " + ", ".join(m for m, ok in verdict.items() if not ok)
                   if verdict else "no data to verify against")
        payload: dict = {"metrics": verdict, "summary": summary}
        if left:
            payload["left_to"] = left
            payload["summary"] += "; not judged: " + ", ".join(f"{m} (incident {i})"
                                                               for m, i in left.items())
        if not self.store.complete_verification(incident.id, now, passed, payload):
            return passed  # an earlier run verified it already
        self._record_outcome(incident, passed, now)
        self._record_window(incident.id, window, now, "verification")
        if passed:
            send_report(self.store, self.notifier, incident.id, self.escalator.on_call,
                        self.settings.reports_dir, now)
        else:
            self.escalator.page_due(self.store.get(incident.id), now)
            write_report(self.store, incident.id, self.settings.reports_dir, now)
        return passed

    def _record_window(self, incident_id: int, window: pd.DataFrame, now: pd.Timestamp,
                       phase: str) -> None:
        """Keep the metric window with its baseline band in the log (plots outlive CloudWatch).

        Best effort: a window that cannot be captured is logged and never holds up the incident.
        """
        try:
            payload = capture_window(self.detector, window, self.period, phase)
        except Exception as exc:  # noqa: BLE001 - a plot aid must not stop detection or verification
            log.warning("%s: metric window of incident %s not recorded: %s", self.name, incident_id, exc)
            return
        self.store.record(incident_id, now, WINDOW_EVENT, payload)

    def write_report(self, incident_id: int) -> Path:
        """Write (or rewrite) the incident's Markdown report; its path is logged."""
        return write_report(self.store, incident_id, self.settings.reports_dir, self.clock())

