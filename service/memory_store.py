"""The incident repository in memory: the port's second adapter, for unit tests and one-shot runs.

It keeps what the SQLite log keeps, in lists and dicts behind one lock (each method is one atomic
step, as a transaction is there), and it asks the Incident aggregate before every move, so
``tests/unit/test_repository.py`` runs the same contract against both adapters and a shared
store for several replicas will run it next.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from detection.anomaly import Anomaly
from service.action import ActionHistory, ActionOutcome, ActionRecord, ActionRequest, finished_event
from service.incident import OPEN_STATUSES, Incident, Status, diagnosis_from_dict
from service.repository import Judge

EFFECTIVE_ACTIONS = ("started", "done", "interrupted")


def _utc(at: Any) -> pd.Timestamp:
    t = pd.Timestamp(at)
    return t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")


class MemoryIncidentStore:
    """Incidents, anomalies, events and actions in memory; nothing survives the process."""

    path = Path(":memory:")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._incidents: dict[int, Incident] = {}
        self._anomalies: dict[int, dict[tuple[str, str], dict]] = {}
        self._events: list[dict] = []
        self._actions: dict[int, ActionRecord] = {}
        self._outcomes: dict[int, ActionOutcome] = {}

    # ------------------------------------------------------------------ incidents

    def open_incident(self, cluster: str, service: str, at: Any, related_to: int | None = None) -> int:
        with self._lock:
            at = _utc(at)
            incident_id = len(self._incidents) + 1
            self._incidents[incident_id] = Incident(incident_id, cluster, service, Status.OPEN, at, at,
                                                    None, None, None, related_to=related_to)
            self._event(incident_id, at, "opened", {"cluster": cluster, "service": service})
            return incident_id

    def split_incident(self, cluster: str, service: str, at: Any, related_to: int, payload: dict) -> int:
        with self._lock:
            incident_id = self.open_incident(cluster, service, at, related_to=related_to)
            self._events[-1]["data"].update({"related_to": related_to, **payload})
            self._event(related_to, at, "split", {
                "incident": incident_id, "root_cause": payload.get("root_cause"),
                "summary": f"another fault, {payload.get('root_cause', '?')}: incident {incident_id}"})
            return incident_id

    def get(self, incident_id: int) -> Incident:
        with self._lock:
            if incident_id not in self._incidents:
                raise KeyError(f"no incident {incident_id} in memory")
            return self._incidents[incident_id]

    def open_for(self, cluster: str, service: str) -> Incident | None:
        found = self.open_incidents(cluster, service)
        return found[-1] if found else None

    def open_incidents(self, cluster: str, service: str) -> list[Incident]:
        with self._lock:
            return [i for i in self._incidents.values()
                    if (i.cluster, i.service) == (cluster, service) and i.status in OPEN_STATUSES]

    def list(self, status: str | None = None, limit: int = 50) -> list[Incident]:
        with self._lock:
            chosen = [i for i in self._incidents.values() if status is None or i.status == status]
            return sorted(chosen, key=lambda i: -i.id)[:limit]

    def count_by_status(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(i.status.value for i in self._incidents.values()))

    # ------------------------------------------------------------------ moves

    def _put(self, incident: Incident) -> Incident:
        self._incidents[incident.id] = incident
        return incident

    def set_diagnosis(self, incident_id: int, at: Any, diagnosis: dict) -> None:
        typed = diagnosis_from_dict(diagnosis)
        with self._lock:
            self._put(replace(self.get(incident_id), diagnosis=typed, updated_at=_utc(at)))
            self._event(incident_id, at, "diagnosed", diagnosis)

    def set_status(self, incident_id: int, at: Any, status: str, *, verify_due_at: Any = None,
                   closed: bool = False, payload: dict | None = None,
                   expect: tuple[str, ...] | None = None) -> bool:
        with self._lock:
            current, at = self.get(incident_id), _utc(at)
            if expect and current.status not in expect:
                return False
            target = current.check_move(status)
            paging = current.escalated_at
            if target is Status.ESCALATED and current.status is not Status.ESCALATED:
                paging = at
            elif target is Status.AWAITING_APPROVAL:
                paging = paging or at
            elif target is Status.VERIFYING:
                paging = None
            self._put(replace(current, status=target, updated_at=at, escalated_at=paging,
                              verify_due_at=_utc(verify_due_at) if verify_due_at is not None
                              else current.verify_due_at, closed_at=at if closed else None))
            self._event(incident_id, at, f"status:{target}", payload or {})
            return True

    def complete_verification(self, incident_id: int, at: Any, passed: bool, payload: dict) -> bool:
        with self._lock:
            current, at = self.get(incident_id), _utc(at)
            if current.status is not Status.VERIFYING:
                return False
            status = Status.RESOLVED if passed else Status.ESCALATED
            self._put(replace(current, status=status, updated_at=at, verified_at=at,
                              closed_at=at if passed else None,
                              escalated_at=current.escalated_at or (None if passed else at)))
            self._event(incident_id, at, "verification", {**payload, "passed": passed})
            self._event(incident_id, at, f"status:{status}",
                        {"summary" if passed else "reason": payload.get("summary", "")})
            return True

    def acknowledge(self, incident_id: int, at: Any, by: str) -> Incident:
        with self._lock:
            taken = self._put(self.get(incident_id).acknowledge(by, _utc(at)))
            self._event(incident_id, at, "acknowledged", {"by": by})
            return taken

    def approve(self, incident_id: int, at: Any, by: str) -> Incident:
        with self._lock:
            approved = self._put(self.get(incident_id).approve(by, _utc(at)))
            self._event(incident_id, at, "approved", {"by": by, "action": approved.auto_action})
            return approved

    def resolve(self, incident_id: int, at: Any, by: str, note: str = "") -> Incident:
        with self._lock:
            resolved = self._put(self.get(incident_id).resolve(_utc(at)))
            self._event(incident_id, at, "status:resolved",
                        {"by": by, "summary": note or f"resolved by {by}"})
            return resolved

    # ------------------------------------------------------------------ anomalies and the timeline

    def add_anomalies(self, incident_id: int, anomalies: list[Anomaly]) -> int:
        with self._lock:
            kept = self._anomalies.setdefault(incident_id, {})
            before = len(kept)
            for a in anomalies:
                stamp = _utc(a.timestamp).isoformat()
                kept.setdefault((a.metric, stamp), {
                    "metric": a.metric, "timestamp": stamp, "value": a.value, "expected": a.expected,
                    "lower": a.lower, "upper": a.upper, "score": a.score, "text": a.render()})
            return len(kept) - before

    def anomalies(self, incident_id: int) -> list[dict]:
        with self._lock:
            rows = self._anomalies.get(incident_id, {}).values()
            return [dict(r) for r in sorted(rows, key=lambda r: (r["timestamp"], r["metric"]))]

    def anomaly_onsets(self, incident_id: int) -> dict[str, pd.Timestamp]:
        """Each metric of the incident's anomalies and the time of its earliest one."""
        onsets: dict[str, pd.Timestamp] = {}
        for row in self.anomalies(incident_id):
            onsets.setdefault(row["metric"], pd.Timestamp(row["timestamp"]))
        return dict(sorted(onsets.items()))

    def _event(self, incident_id: int | None, at: Any, kind: str, payload: dict) -> None:
        self._events.append({"incident_id": incident_id, "at": _utc(at).isoformat(), "kind": kind,
                             "data": dict(payload)})

    def record(self, incident_id: int | None, at: Any, kind: str, payload: dict | None = None) -> None:
        with self._lock:
            self._event(incident_id, at, kind, payload or {})

    def events(self, incident_id: int) -> list[dict]:
        with self._lock:
            return [{"at": e["at"], "kind": e["kind"], "data": dict(e["data"])}
                    for e in self._events if e["incident_id"] == incident_id]

    def last_event(self, incident_id: int, kind: str) -> dict | None:
        found = [e for e in self.events(incident_id) if e["kind"] == kind]
        return found[-1] if found else None

    def events_of_kind(self, kind: str) -> list[dict]:
        with self._lock:
            return [{"incident_id": e["incident_id"], "at": e["at"], "data": dict(e["data"])}
                    for e in self._events if e["kind"] == kind]

    def refusals(self) -> Counter:
        return Counter(e["data"].get("reason", "?") for e in self.events_of_kind("guardrail_refused"))

    # ------------------------------------------------------------------ actions

    def begin_action(self, request: ActionRequest, at: Any, judge: Judge) -> tuple[int | None, dict]:
        with self._lock:
            if request.key:
                seen = self.actions_by_key(request.key)
                if seen is not None:
                    return seen.id, {"duplicate": True}
            allowed, verdict = judge(self.history(request.cluster, request.service, at, request.dry_run))
            base = {"action": request.action, "cluster": request.cluster, "service": request.service,
                    "origin": request.origin, **request.params}
            if not allowed:
                self._event(request.incident_id, at, "guardrail_refused", {**base, **verdict})
                return None, verdict
            action_id = len(self._actions) + 1
            self._actions[action_id] = ActionRecord(
                action_id, request.incident_id, request.cluster, request.service, request.action,
                request.origin, request.key, "started", _utc(at), None, request.reason,
                dict(request.params), None, None)
            kind = "action_started" if request.origin == "auto" else f"{request.origin}_action_started"
            notes = {k: v for k, v in verdict.items() if k == "notes"}
            self._event(request.incident_id, at, kind,
                        {**base, "action_id": action_id, "reason": request.reason, **notes})
            return action_id, verdict

    def finish_action(self, action_id: int, at: Any, status: str, result: dict | None = None,
                      error: str | None = None) -> None:
        with self._lock:
            record = self.action(action_id)
            self._actions[action_id] = replace(record, status=status, finished_at=_utc(at),
                                               result=result or None, error=error)
            kind, payload = finished_event(record, status, result, error)
            self._event(record.incident_id, at, kind, payload)

    def action(self, action_id: int) -> ActionRecord:
        with self._lock:
            if action_id not in self._actions:
                raise KeyError(f"no action {action_id}")
            return self._actions[action_id]

    def actions_by_key(self, key: str) -> ActionRecord | None:
        with self._lock:
            return next((a for a in self._actions.values() if a.key == key), None)

    def actions(self, incident_id: int | None = None, cluster: str | None = None,
                service: str | None = None, status: str | None = None) -> list[ActionRecord]:
        wanted = {"incident_id": incident_id, "cluster": cluster, "service": service, "status": status}
        with self._lock:
            return [a for a in self._actions.values()
                    if all(v is None or getattr(a, k) == v for k, v in wanted.items())]

    def history(self, cluster: str, service: str, at: Any, dry_run: bool = False) -> ActionHistory:
        counted = EFFECTIVE_ACTIONS + (("dry_run",) if dry_run else ())
        since = _utc(at) - pd.Timedelta(days=1)
        with self._lock:
            mine = [a for a in self._actions.values()
                    if (a.cluster, a.service) == (cluster, service) and a.status in counted]
            recent = sorted((a for a in mine if a.requested_at >= since), key=lambda a: a.requested_at)
            flying = [a for a in mine if a.status == "started" or (
                a.incident_id in self._incidents
                and self._incidents[a.incident_id].status is Status.VERIFYING)]
            return ActionHistory(recent, flying)

    def close(self) -> None:
        """Nothing to close: the log lives as long as the object."""

    # ------------------------------------------------------------------ learned outcomes

    def record_outcome(self, outcome: ActionOutcome) -> bool:
        with self._lock:
            if outcome.incident_id in self._outcomes:
                return False
            self._outcomes[outcome.incident_id] = ActionOutcome(
                outcome.incident_id, outcome.cluster, outcome.service, outcome.cause, outcome.action,
                bool(outcome.resolved), _utc(outcome.at))
            return True

    def outcomes(self, cluster: str, service: str) -> list[ActionOutcome]:
        with self._lock:
            mine = [o for o in self._outcomes.values() if (o.cluster, o.service) == (cluster, service)]
        return sorted(mine, key=lambda o: (o.at, o.incident_id))
