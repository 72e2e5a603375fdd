"""An ECS action as the platform speaks of it: asked for, judged, recorded (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class ActionRecord:
    """One row of the actions table: an ECS action asked for, and what became of it."""

    id: int
    incident_id: int | None
    cluster: str
    service: str
    action: str
    origin: str            # auto | manual | api | lambda
    key: str | None        # idempotency key: the same request twice is one action
    status: str            # started | done | dry_run | failed | interrupted
    requested_at: pd.Timestamp
    finished_at: pd.Timestamp | None
    reason: str | None
    params: dict
    result: dict | None
    error: str | None

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        for key in ("requested_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


@dataclass(frozen=True)
class ActionHistory:
    """What the guardrails need to know about a service's past actions, read in one transaction.

    ``recent`` holds the actions of the last day that may have changed the service (and, for a
    dry run, earlier dry-run decisions); ``in_flight`` those started and not yet finished, or
    finished and waiting for their incident's verification.
    """

    recent: list[ActionRecord] = field(default_factory=list)
    in_flight: list[ActionRecord] = field(default_factory=list)


@dataclass(frozen=True)
class ActionRequest:
    """An action asked of the guarded executor, before the guardrails have judged it."""

    cluster: str
    service: str
    action: str                      # scale_up | scale_to | restart_tasks | rollback
    origin: str = "auto"             # auto | manual | api | lambda
    incident_id: int | None = None
    reason: str = ""
    params: dict = field(default_factory=dict)   # {"count": N} | {"to_revision": N}
    key: str | None = None
    dry_run: bool = False
    approved_by: str | None = None   # who approved it, for an action approve mode holds


FINISHED_KIND = {"done": "done", "dry_run": "done", "failed": "failed", "interrupted": "interrupted"}


@dataclass(frozen=True)
class ActionOutcome:
    """What one verification said about the incident's fix: the learned-outcomes record.

    ``action`` is the automatic action that ran for the incident (``scale_up``, ``restart_tasks``,
    ``rollback``; ``alert_only`` when it only alerted; ``none`` when nothing ran: a dry run, a
    refusal). One per incident.
    """

    incident_id: int
    cluster: str
    service: str
    cause: str
    action: str
    resolved: bool
    at: pd.Timestamp


def finished_event(record: ActionRecord, status: str, result: dict | None,
                   error: str | None) -> tuple[str, dict]:
    """The timeline event that says what a started action came to: its kind and payload."""
    prefix = "action" if record.origin == "auto" else f"{record.origin}_action"
    payload = {**(result or {}), "action": record.action, "action_id": record.id,
               "status": status, "cluster": record.cluster, "service": record.service}
    if error:
        payload["error"] = error
    if record.reason:
        payload["reason"] = record.reason
    return f"{prefix}_{FINISHED_KIND[status]}", payload
