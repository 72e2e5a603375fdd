"""The incident: its status, the moves allowed between statuses, and a person's steps (pure, no I/O).

An incident moves through these statuses::

    open -> awaiting_approval -> verifying -> resolved
         \\-> verifying ------------/      \\-> escalated -> acknowledged -> resolved

``open`` means detected and not yet decided; every status but ``resolved`` counts as open; the
automated phase is ``open`` and ``verifying`` (the watcher owns the incident), the others wait
for a person. :data:`MOVES` lists every allowed move; the repository (the SQLite log today, a
shared store next) asks :meth:`Incident.check_move` and the step methods (:meth:`approve`,
:meth:`acknowledge`, :meth:`resolve`) before it writes, and writes each move as one conditional
update, so two processes cannot both take the same step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

import pandas as pd

from detection.forecast import OomForecast
from rca.diagnosis import Diagnosis, Evidence
from rca.outcomes import TrackRecord


class Status(StrEnum):
    OPEN = "open"
    AWAITING_APPROVAL = "awaiting_approval"
    VERIFYING = "verifying"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @property
    def is_open(self) -> bool:
        return self is not Status.RESOLVED

    @property
    def automated(self) -> bool:
        """The watcher owns it (no person is needed yet)."""
        return self in (Status.OPEN, Status.VERIFYING)


OPEN_STATUSES = tuple(s.value for s in Status if s.is_open)
STATUSES = tuple(s.value for s in Status)
MOVES: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.AWAITING_APPROVAL, Status.VERIFYING, Status.ESCALATED, Status.RESOLVED}),
    Status.AWAITING_APPROVAL: frozenset({Status.VERIFYING, Status.ESCALATED, Status.RESOLVED}),
    Status.VERIFYING: frozenset({Status.RESOLVED, Status.ESCALATED}),
    # escalated again starts a new round of paging; an approved action may still run from it
    Status.ESCALATED: frozenset({Status.ESCALATED, Status.ACKNOWLEDGED, Status.VERIFYING, Status.RESOLVED}),
    Status.ACKNOWLEDGED: frozenset({Status.ESCALATED, Status.VERIFYING, Status.RESOLVED}),
    Status.RESOLVED: frozenset(),
}


class IncidentStateError(ValueError):
    """A lifecycle step that the incident's current status does not allow (ack a resolved one...)."""


def diagnosis_from_dict(data: dict[str, Any] | None) -> Diagnosis | None:
    """A stored diagnosis as the typed :class:`~rca.diagnosis.Diagnosis`: unknown keys are ignored,
    the explanation and manual action may be missing (older logs); ValueError names what else is."""
    if not data:
        return None
    known = {f.name for f in fields(Diagnosis)}
    evidence_fields = {f.name for f in fields(Evidence)}
    kept = {"explanation": "", "manual_action": "", **{k: v for k, v in data.items() if k in known}}
    optional = {"evidence", "time_to_oom", "track_record"}
    missing = [f.name for f in fields(Diagnosis) if f.name not in kept and f.name not in optional]
    if missing:
        raise ValueError(f"a diagnosis needs {', '.join(missing)}")
    kept["evidence"] = [Evidence(**{k: v for k, v in e.items() if k in evidence_fields})
                        for e in data.get("evidence") or []]
    if data.get("time_to_oom") is not None:
        kept["time_to_oom"] = OomForecast.from_dict(data["time_to_oom"])
    if data.get("track_record") is not None:
        kept["track_record"] = TrackRecord.from_dict(data["track_record"])
    return Diagnosis(**kept)


@dataclass(frozen=True)
class Incident:
    """One incident as the platform reads it: who, what it is believed to be, where it stands."""

    id: int
    cluster: str
    service: str
    status: Status
    opened_at: pd.Timestamp
    updated_at: pd.Timestamp
    diagnosis: Diagnosis | None
    verify_due_at: pd.Timestamp | None
    closed_at: pd.Timestamp | None
    escalated_at: pd.Timestamp | None = None   # when paging started (escalation or approval request)
    acked_at: pd.Timestamp | None = None
    acked_by: str | None = None
    approved_at: pd.Timestamp | None = None
    approved_by: str | None = None
    verified_at: pd.Timestamp | None = None
    related_to: int | None = None   # the open incident this one was split off from (another cause)

    # -- what the diagnosis says (None until diagnosed) ------------------------------------------

    @property
    def root_cause(self) -> str | None:
        return self.diagnosis.root_cause if self.diagnosis else None

    @property
    def severity(self) -> str | None:
        return self.diagnosis.severity if self.diagnosis else None

    @property
    def confidence(self) -> float | None:
        return self.diagnosis.confidence if self.diagnosis else None

    @property
    def auto_action(self) -> str | None:
        return self.diagnosis.auto_action if self.diagnosis else None

    # -- moves --------------------------------------------------------------------------------

    def check_move(self, to: Status | str) -> Status:
        """``to`` as a Status when the incident may move there; IncidentStateError otherwise."""
        try:
            target = Status(to)
        except ValueError:
            raise ValueError(f"unknown incident status {to!r}; known: {', '.join(STATUSES)}") from None
        if target not in MOVES[self.status]:
            raise IncidentStateError(f"incident {self.id} is {self.status}: it cannot become {target}")
        return target

    def approve(self, by: str, at: pd.Timestamp) -> Incident:
        """A person approves the action the incident waits for (approve mode)."""
        if self.status is not Status.AWAITING_APPROVAL:
            raise IncidentStateError(f"incident {self.id} is {self.status}, not awaiting approval")
        if self.approved_at is not None:
            raise IncidentStateError(f"incident {self.id} was already approved by {self.approved_by}")
        return replace(self, approved_at=at, approved_by=by, updated_at=at)

    def acknowledge(self, by: str, at: pd.Timestamp) -> Incident:
        """Someone owns it: escalation stops paging; an escalated incident becomes acknowledged."""
        if self.status is Status.RESOLVED:
            raise IncidentStateError(f"incident {self.id} is already resolved")
        if self.acked_at is not None:
            raise IncidentStateError(f"incident {self.id} was already acknowledged by {self.acked_by} "
                                     f"at {self.acked_at:%Y-%m-%d %H:%M}")
        status = Status.ACKNOWLEDGED if self.status is Status.ESCALATED else self.status
        return replace(self, acked_at=at, acked_by=by, status=status, updated_at=at)

    def resolve(self, at: pd.Timestamp) -> Incident:
        """Closed by hand (after a person fixed what automation could not)."""
        if self.status is Status.RESOLVED:
            raise IncidentStateError(f"incident {self.id} is already resolved")
        return replace(self, status=Status.RESOLVED, closed_at=at, updated_at=at)

    def to_dict(self) -> dict:
        """Plain data (ISO times, the diagnosis as a dict), with root cause, severity, confidence."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["status"] = self.status.value
        out["diagnosis"] = self.diagnosis.to_dict() if self.diagnosis else None
        out.update(root_cause=self.root_cause, severity=self.severity, confidence=self.confidence)
        for key, value in out.items():
            if isinstance(value, pd.Timestamp):
                out[key] = value.isoformat()
        return out
