"""The remediation executor: turns a diagnosis into an ECS action, logged before and after.

The playbook says which action; the mode says whether it runs (auto), waits for a person
(approve, for CRITICAL incidents) or is only decided and logged (dry-run). Every decision, call,
result and error is in the incident log before the next step starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rca.diagnosis import Diagnosis
from service.ecs import EcsActionError, EcsActions
from service.notify import Notifier, NotifyError
from service.settings import Mode, ServiceTarget
from service.store import IncidentStore


@dataclass(frozen=True)
class Outcome:
    """What happened to one decided action."""

    action: str
    status: str          # done | dry_run | awaiting_approval | alerted | failed
    change: str
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("done", "dry_run", "alerted")


class Remediator:
    """Runs the playbook's action for a diagnosis against ECS, with the mode's guard."""

    def __init__(self, actions: EcsActions, store: IncidentStore, notifier: Notifier,
                 mode: Mode = Mode.AUTO, on_call: str = "on-call engineer"):
        self.actions = actions
        self.store = store
        self.notifier = notifier
        self.mode = mode
        self.on_call = on_call

    def remediate(self, incident_id: int, target: ServiceTarget, diagnosis: Diagnosis,
                  at: Any) -> Outcome:
        action = diagnosis.auto_action
        self.store.record(incident_id, at, "decision", {
            "action": action, "mode": self.mode.value, "root_cause": diagnosis.root_cause,
            "summary": f"{diagnosis.root_cause} -> {action} ({self.mode.value})"})
        if action == "alert_only":
            return self._alert(incident_id, diagnosis, at)
        if self.mode is Mode.APPROVE and diagnosis.severity == "CRITICAL":
            outcome = Outcome(action, "awaiting_approval", "none until approved")
            self.store.record(incident_id, at, "approval_requested", {"action": action})
            return outcome
        return self._run(incident_id, target, action, at)

    def _run(self, incident_id: int, target: ServiceTarget, action: str, at: Any) -> Outcome:
        self.store.record(incident_id, at, "action_started",
                          {"action": action, "cluster": target.cluster, "service": target.service})
        call = {"scale_up": self.actions.scale_up, "restart_tasks": self.actions.restart_tasks,
                "rollback": self.actions.rollback}[action]
        try:
            result = call(target.cluster, target.service)
        except EcsActionError as exc:
            self.store.record(incident_id, at, "action_failed", {"action": action, "error": str(exc)})
            return Outcome(action, "failed", "none", str(exc))
        status = "dry_run" if result.dry_run else "done"
        self.store.record(incident_id, at, "action_done", {**result.to_dict(), "status": status})
        return Outcome(action, status, result.change)

    def _alert(self, incident_id: int, diagnosis: Diagnosis, at: Any) -> Outcome:
        subject = f"[{diagnosis.severity}] incident {incident_id}: {diagnosis.root_cause}"
        body = f"{diagnosis.explanation}\nNext step: {diagnosis.manual_action}"
        try:
            message_id = self.notifier.notify(self.on_call, subject, body)
        except NotifyError as exc:
            self.store.record(incident_id, at, "alert_failed", {"error": str(exc)})
            return Outcome("alert_only", "failed", "none", str(exc))
        self.store.record(incident_id, at, "alert_sent", {"role": self.on_call, "message_id": message_id})
        return Outcome("alert_only", "alerted", f"alerted {self.on_call}")
