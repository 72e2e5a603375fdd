"""Escalation: page the playbook's path, one role after another, until someone acknowledges.

An incident is paged while it is ``escalated`` (a failed action, a refused one, a failed
verification) or ``awaiting_approval`` (a CRITICAL action in approve mode). The round of paging
starts at the incident's ``escalated_at``; each step of the path (on-call at once, team lead at
15 min, engineering manager at 30 min, incident commander at 1 h) is paged once per round, when
its delay has passed. Which steps were paged is read back from the incident log, so a restarted
watcher (or another replica) pages exactly the steps still due; the log is read only when a step
is due that this escalator has not seen paged (a page, once logged, never goes away), not on
every tick of a round. A page that could not be sent is logged and tried
again on the next tick (delivery is at least once).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from rca.playbook import Playbook
from service.notify import Notifier, NotifyError
from service.store import Incident, IncidentStore

PAGED_STATUSES = ("escalated", "awaiting_approval")
PAGED_MEMORY = 1024   # incidents whose paged steps an escalator remembers (resolved ones linger)


class Escalator:
    """Pages the playbook's escalation path for one incident log through one notifier."""

    def __init__(self, store: IncidentStore, notifier: Notifier, playbook: Playbook):
        self.store = store
        self.notifier = notifier
        self._paged: dict[int, tuple[str, set[int]]] = {}   # incident -> its round, steps seen paged
        self.playbook = playbook

    @property
    def on_call(self) -> str:
        return self.playbook.escalation[0].role

    def escalate(self, incident_id: int, now: Any, reason: str) -> list[int]:
        """Escalate an incident (if it is not already) and page whoever is due; returns steps paged."""
        self.store.set_status(incident_id, now, "escalated", payload={"reason": reason},
                              expect=("open", "awaiting_approval", "verifying"))
        return self.page_due(self.store.get(incident_id), now)

    def request_approval(self, incident_id: int, now: Any, action: str) -> list[int]:
        """Park an incident until a person approves ``action``, and page the on-call engineer."""
        self.store.set_status(incident_id, now, "awaiting_approval", expect=("open",),
                              payload={"reason": f"{action} waits for approval"})
        return self.page_due(self.store.get(incident_id), now)

    def page_due(self, incident: Incident, now: Any) -> list[int]:
        """Page every step of the path that is due and not yet paged in this round."""
        if incident.status not in PAGED_STATUSES or incident.acked_at is not None \
                or incident.escalated_at is None:
            self._paged.pop(incident.id, None)
            return []
        now = pd.Timestamp(now)
        round_id = incident.escalated_at.isoformat()
        minutes = (now - incident.escalated_at).total_seconds() / 60
        due = {step for step, entry in enumerate(self.playbook.escalation) if minutes >= entry.after_minutes}
        seen_round, known = self._paged.get(incident.id, (round_id, set()))
        if seen_round != round_id:
            known = set()
        if len(self._paged) >= PAGED_MEMORY:
            self._paged.clear()   # only a memory of reads saved: the log still has every page
        self._paged[incident.id] = (round_id, known)
        if due <= known:
            return []   # every step due was paged: nothing to read
        events = self.store.events(incident.id)
        known |= {e["data"].get("step") for e in events
                  if e["kind"] == "escalation" and e["data"].get("round") == round_id}
        sent = []
        for step in sorted(due - known):
            if self._page(incident, events, now, step, round_id):
                sent.append(step)
                known.add(step)
        return sent

    def _page(self, incident: Incident, events: list[dict], now: pd.Timestamp, step: int,
              round_id: str) -> bool:
        role = self.playbook.escalation[step].role
        subject, body = self._message(incident, events, step)
        try:
            message_id = self.notifier.notify(role, subject, body)
        except NotifyError as exc:
            self.store.record(incident.id, now, "escalation_failed",
                              {"step": step, "role": role, "error": str(exc), "round": round_id})
            return False
        self.store.record(incident.id, now, "escalation",
                          {"step": step, "role": role, "round": round_id, "message_id": message_id,
                           "reason": self._reason(events, incident)})
        return True

    @staticmethod
    def _reason(events: list[dict], incident: Incident) -> str:
        moves = [e for e in events if e["kind"] == f"status:{incident.status}"]
        return (moves[-1]["data"].get("reason") if moves else None) or incident.status

    def _message(self, incident: Incident, events: list[dict], step: int) -> tuple[str, str]:
        diagnosis = incident.diagnosis
        reason = self._reason(events, incident)
        where = f"{incident.service} ({incident.cluster})"
        if incident.status == "awaiting_approval":
            subject = (f"Approval needed: {incident.auto_action or 'action'} for incident "
                       f"{incident.id} on {where}")
            ask = (f"Approve: aiops incidents approve {incident.id}\n"
                   f"Or take it over: aiops incidents ack {incident.id}")
        else:
            subject = f"Escalation: incident {incident.id} on {where}"
            ask = f"Acknowledge: aiops incidents ack {incident.id}"
        waited = "" if step == 0 else (f"No acknowledgement after "
                                       f"{self.playbook.escalation[step].after_minutes:g} minutes.\n")
        body = (f"{waited}Incident {incident.id} on {where}: {reason}\n"
                f"Root cause: {incident.root_cause or 'undiagnosed'} "
                f"(severity {incident.severity or '-'})\n"
                f"{diagnosis.explanation if diagnosis else ''}\n"
                f"Next step: {diagnosis.manual_action if diagnosis else 'investigate'}\n{ask}\n")
        return subject, body
