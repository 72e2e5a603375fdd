"""The remediation executor: an action asked for, judged by the guardrails, run on ECS, logged.

The playbook says which action; the mode says whether it runs (auto), waits for a person
(approve, for CRITICAL incidents) or is only decided and logged (dry-run). Automatic, manual and
Lambda-triggered actions all pass through :meth:`Remediator.run`:

1. a request already seen (same idempotency key) returns its first outcome and calls nothing;
2. a service outside the allow-list is refused before any API call;
3. the service's state, its Application Auto Scaling target and (for a rollback) its
   ACTIVE revisions are read;
4. the guardrails judge the request against that and the service's action history, in the
   same SQLite transaction that records the action as ``started`` (or the refusal);
5. the ECS call runs, and its result or error is recorded.

A crash between 4 and 5 leaves an action ``started``; :meth:`Remediator.recover` marks it
``interrupted`` and it is never repeated blindly: the incident goes on to its verification,
which escalates if the fix is not in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from rca.diagnosis import Diagnosis
from service.ecs import ActionResult, EcsActionError, EcsActions
from service.guardrails import Facts, Guardrails, Verdict, qualified
from service.notify import Notifier, NotifyError
from service.settings import Mode, ServiceTarget
from service.store import ActionRecord, ActionRequest, IncidentStore

STALE_MANUAL_ACTION = pd.Timedelta(minutes=15)  # a manual action 'started' this long ago died


@dataclass(frozen=True)
class Outcome:
    """What happened to one decided action."""

    action: str
    status: str   # done | dry_run | awaiting_approval | alerted | failed | refused | interrupted
    #               | skipped (learned outcomes: it never works there; the watcher decides that)
    change: str
    error: str | None = None
    reason: str | None = None      # the guardrail's reason code when refused
    action_id: int | None = None
    started_at: pd.Timestamp | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("done", "dry_run", "alerted")

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if self.started_at is not None:
            out["started_at"] = self.started_at.isoformat()
        return out


def incident_key(incident_id: int) -> str:
    """The idempotency key of an incident's automatic action: one action per incident."""
    return f"incident-{incident_id}"


class Remediator:
    """Runs actions against ECS behind the guardrails and the mode, logging every step.

    Parameters
    ----------
    actions : the ECS adapter (dry-run is enforced there).
    store : the incident log.
    notifier : used for ``alert_only``.
    mode : auto, approve or dry-run.
    on_call : the role an ``alert_only`` incident is sent to.
    guardrails : the rules every action must pass; default guardrails when None.
    """

    def __init__(self, actions: EcsActions, store: IncidentStore, notifier: Notifier,
                 mode: Mode = Mode.AUTO, on_call: str = "on-call engineer",
                 guardrails: Guardrails | None = None):
        self.actions = actions
        self.store = store
        self.notifier = notifier
        self.mode = mode
        self.on_call = on_call
        self.guardrails = guardrails or Guardrails()

    def watch(self, target: ServiceTarget) -> None:
        """Count ``target`` among the watched services (the default allow-list)."""
        name = qualified(target.cluster, target.service)
        if name not in self.guardrails.watched:
            self.guardrails.watched.append(name)

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.actions, "dry_run", False)) or self.mode is Mode.DRY_RUN

    # ------------------------------------------------------------------ automatic

    def remediate(self, incident_id: int, target: ServiceTarget, diagnosis: Diagnosis,
                  at: Any) -> Outcome:
        """Decide and act for an incident. Idempotent: called again, it returns what happened."""
        done = self._previous_outcome(incident_id, at)
        if done is not None:
            return done
        action = diagnosis.auto_action
        self.store.record(incident_id, at, "decision", {
            "action": action, "mode": self.mode.value, "root_cause": diagnosis.root_cause,
            "summary": f"{diagnosis.root_cause} -> {action} ({self.mode.value})"})
        if action == "alert_only":
            return self._alert(incident_id, diagnosis, at)
        if self.mode is Mode.APPROVE and diagnosis.severity == "CRITICAL":
            self.store.record(incident_id, at, "approval_requested", {
                "action": action, "summary": f"{action} waits for `aiops incidents approve "
                                             f"{incident_id}`"})
            return Outcome(action, "awaiting_approval", "none until approved")
        return self.run(self._request(incident_id, target, action), at)

    def execute_approved(self, incident_id: int, target: ServiceTarget, diagnosis: Diagnosis,
                         at: Any, approved_by: str) -> Outcome:
        """Run the action a person approved; the guardrails still judge it now."""
        return self.run(self._request(incident_id, target, diagnosis.auto_action, approved_by), at)

    def _request(self, incident_id: int, target: ServiceTarget, action: str,
                 approved_by: str | None = None) -> ActionRequest:
        return ActionRequest(target.cluster, target.service, action, origin="auto",
                             incident_id=incident_id, key=incident_key(incident_id),
                             dry_run=self.dry_run, approved_by=approved_by)

    def _previous_outcome(self, incident_id: int, at: Any) -> Outcome | None:
        """What an earlier run already did for this incident (after a restart), if anything."""
        previous = self.store.actions(incident_id=incident_id)
        if previous:
            return self._outcome_of(previous[-1], at)
        events = self.store.events(incident_id)
        alerted = next((e for e in events if e["kind"] == "alert_sent"), None)
        if alerted is not None:
            return Outcome("alert_only", "alerted", f"alerted {alerted['data'].get('role')}",
                           started_at=pd.Timestamp(alerted["at"]))
        return None

    def _alert(self, incident_id: int, diagnosis: Diagnosis, at: Any) -> Outcome:
        return self.alert(incident_id, diagnosis, at)

    def alert(self, incident_id: int, diagnosis: Diagnosis, at: Any, by: str | None = None,
              note: str = "") -> Outcome:
        """Page the on-call role with the incident's diagnosis: the playbook's ``alert_only``,
        or a person's request (``by``). Nothing on ECS changes, so every mode sends it."""
        subject = f"[{diagnosis.severity}] incident {incident_id}: {diagnosis.root_cause}"
        body = f"{diagnosis.explanation}\nNext step: {diagnosis.manual_action}"
        if by:
            body += f"\nPaged by {by}" + (f": {note}" if note else "")
        try:
            message_id = self.notifier.notify(self.on_call, subject, body)
        except NotifyError as exc:
            self.store.record(incident_id, at, "alert_failed", {"error": str(exc), "by": by})
            return Outcome("alert_only", "failed", "none", str(exc))
        self.store.record(incident_id, at, "alert_sent", {"role": self.on_call, "message_id": message_id}
                          | ({"by": by, "note": note} if by else {}))
        return Outcome("alert_only", "alerted", f"alerted {self.on_call}", started_at=pd.Timestamp(at))

    # ------------------------------------------------------------------ every origin

    def run(self, request: ActionRequest, at: Any) -> Outcome:
        """Judge ``request`` with the guardrails and, when allowed, run it on ECS."""
        at = pd.Timestamp(at)
        if request.key:
            seen = self.store.actions_by_key(request.key)
            if seen is not None:
                return self._outcome_of(seen, at)
        facts = None
        if self.guardrails.allowed_service(request.cluster, request.service):
            try:
                facts = self._facts(request)
            except EcsActionError as exc:
                self.store.record(request.incident_id, at, "action_failed",
                                  {"action": request.action, "error": str(exc),
                                   "cluster": request.cluster, "service": request.service,
                                   "stage": "reading the service before acting"})
                return Outcome(request.action, "failed", "none", str(exc))
        verdicts: list[Verdict] = []

        def judge(history) -> tuple[bool, dict]:
            verdict = self.guardrails.check(request, facts, history, at)
            verdicts.append(verdict)
            return verdict.allowed, verdict.to_dict()

        action_id, verdict = self.store.begin_action(request, at, judge)
        if verdict.get("duplicate"):
            return self._outcome_of(self.store.action(action_id), at)
        if action_id is None:
            return Outcome(request.action, "refused", "none", verdict["message"],
                           reason=verdict.get("reason"))
        try:
            result = self._execute(request, verdicts[-1])
        except EcsActionError as exc:
            self.store.finish_action(action_id, at, "failed", error=str(exc))
            return Outcome(request.action, "failed", "none", str(exc), action_id=action_id,
                           started_at=at)
        status = "dry_run" if result.dry_run else "done"
        self.store.finish_action(action_id, at, status, result=result.to_dict() | {"change": result.change})
        return Outcome(request.action, status, result.change, action_id=action_id, started_at=at)

    def _facts(self, request: ActionRequest) -> Facts:
        state = self.actions.describe(request.cluster, request.service)
        scaling = None
        if request.action in ("scale_up", "scale_to") and self.guardrails.config.respect_autoscaling:
            scaling = self.actions.scaling_target(request.cluster, request.service)
        revisions: tuple[int, ...] = ()
        if request.action == "rollback" and state.family:
            revisions = tuple(self.actions.active_revisions(request.cluster, request.service,
                                                            state.family))
        return Facts(state, scaling, revisions)

    def _execute(self, request: ActionRequest, verdict: Verdict) -> ActionResult:
        cluster, service, params = request.cluster, request.service, request.params
        if request.action == "scale_up":
            return self.actions.scale_up(cluster, service, by=int(params.get("by", 1)),
                                         max_count=verdict.max_count)
        if request.action == "scale_to":
            return self.actions.scale_to(cluster, service, int(params["count"]))
        if request.action == "restart_tasks":
            return self.actions.restart_tasks(cluster, service)
        if request.action == "rollback":
            return self.actions.rollback(cluster, service, to_revision=params.get("to_revision"),
                                         while_rolling_out=False)
        raise EcsActionError(f"unknown action {request.action!r}")

    def _outcome_of(self, record: ActionRecord, at: Any) -> Outcome:
        """The outcome of an action already in the log; a ``started`` one was interrupted."""
        if record.status == "started":
            self.store.finish_action(record.id, at, "interrupted",
                                     error="interrupted before its result was recorded; not repeated")
            record = self.store.action(record.id)
        change = (record.result or {}).get("change", "none")
        if record.status == "interrupted":
            change = "unknown: the action was interrupted; verification decides"
        return Outcome(record.action, record.status, change, record.error, action_id=record.id,
                       started_at=record.requested_at)

    # ------------------------------------------------------------------ restart

    def recover(self, cluster: str, service: str, at: Any) -> list[int]:
        """Mark actions a crash left ``started`` as interrupted; returns their ids.

        The watcher's own (automatic) actions are interrupted as soon as it restarts; a manual
        or Lambda action only once it is older than a quarter of an hour (it may still be running
        in another process).
        """
        at = pd.Timestamp(at)
        interrupted = []
        for record in self.store.actions(cluster=cluster, service=service, status="started"):
            if record.origin == "auto" or at - record.requested_at > STALE_MANUAL_ACTION:
                self.store.finish_action(record.id, at, "interrupted",
                                         error="interrupted by a restart; not repeated")
                interrupted.append(record.id)
        return interrupted
