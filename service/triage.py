"""Which open incident a service's new anomalies belong to, when it already has one or more.

The policy (the watcher applies it every tick; see :mod:`service.watcher`):

1. **Automated phase: join.** If an open incident of the service is ``open`` or ``verifying``,
   the anomalies join it. A fault's symptoms change after an action (after a scale-up the
   errors fade and the CPU stays high: ``high_cpu_with_errors`` "becomes" ``high_cpu``) and its
   verification judges whether the fix held; a second incident there would act twice on one
   fault. The guardrails' one-action-in-flight rule says the same for actions.
2. **Too few to open an incident: join.** Anomalies that could not open an incident on their
   own (fewer than ``open_after`` anomalous periods of a health metric) join the newest open
   incident; no signature is computed for them.
3. Otherwise every open incident awaits approval, is ``escalated`` or ``acknowledged``:
   automation is done with it or waits for a person. Then

   a. **Lingering symptoms: join.** When every health metric among the anomalies is a symptom an
      open incident still shows, nothing new is seen: they join the newest such incident. An
      incident's symptoms are the health metrics of the anomalies it was diagnosed on (minus
      those it left to another incident when it was split off); after a failed verification,
      only those the verification found still outside their baseline. So the fault an
      escalated incident already has, lingering or reclassified, stays one incident.
   b. **Same root cause: join.** The anomalies' signature is the root cause the service's
      classifier gives for the current window, on the same features a diagnosis uses. An open
      incident with that root cause is the same fault: they join it.
   c. **Another root cause: a new incident**, split off from the newest open incident. The
      signature is its diagnosis; it gets its own action within the guardrails (one action in
      flight per service, cooldowns, daily cap, desired-count cap), its own verification,
      escalation and report. Symptom metrics an open incident already shows are *set aside*:
      they are the other fault's, not this one's.

The log shows which: joins under 3a/3b leave a ``joined`` event when what joins changes (not
one per tick); a split writes ``related_to`` and an ``opened`` event with the reason and the
set-aside metrics on the new incident, and a ``split`` event on the other.

**Verification with several open incidents.** An incident's verification judges every health
metric except one that is not among its own symptoms and that another open incident still shows
(:func:`left_to_others`): a memory leak fixed by a restart is verified on memory, errors and
latency, not on the CPU an older escalated incident is about. The older incident is never
re-verified: it stays with the person it was escalated to until they resolve it.

Limits: a new fault whose every symptom an open, escalated incident already shows cannot be told
from that incident's own fault; it joins (3a), and the person who owns that incident sees its
anomalies. A fault that starts while another incident is ``verifying`` joins it (1); if that
verification fails, the next tick splits it off.

Every fact used here is read from the incident log (statuses, root causes, anomalies and their
timestamps, the ``diagnosed``, ``verification`` and ``opened`` events), so a restarted watcher
files anomalies as the one before it would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from rca.diagnosis import Diagnosis
from rca.features import Features
from service.store import Incident, IncidentStore

AUTOMATED_STATUSES = ("open", "verifying")
IsHealth = Callable[[str], bool]
Classify = Callable[[], tuple[Features, Diagnosis]]


@dataclass(frozen=True)
class Filing:
    """Where one tick's anomalies go.

    ``incident`` is the open incident they join, or None for a new incident. ``reason`` is one
    of ``automated``, ``below_threshold``, ``lingering``, ``same_root_cause`` (a join) or
    ``another_root_cause`` (a split). ``signature`` (with the ``features`` it came from) is the
    root cause the classifier gave, when it was asked. For a split, ``related`` is the open
    incident it is linked to and ``set_aside`` maps symptom metrics to the open incident that
    still shows them.
    """

    incident: Incident | None
    reason: str
    signature: Diagnosis | None = None
    features: Features | None = None
    related: Incident | None = None
    set_aside: dict[str, int] = field(default_factory=dict)

    @property
    def splits(self) -> bool:
        return self.incident is None


def decide(store: IncidentStore, incidents: list[Incident], metrics: set[str], can_open: bool,
           is_health: IsHealth, classify: Classify) -> Filing:
    """File anomalies on a service with open ``incidents`` (oldest first), by the module's policy.

    Parameters
    ----------
    metrics : the health metrics among the anomalies.
    can_open : whether the anomalies would open an incident on a quiet service.
    classify : gives the features and diagnosis of the current window; called only when the
        root cause decides (it may read ECS).
    """
    automated = in_automated_phase(incidents)
    if automated is not None:
        return Filing(automated, "automated")
    if not can_open:
        return Filing(incidents[-1], "below_threshold")
    shown = shown_by(store, incidents, is_health)
    known = by_symptoms(incidents, metrics, shown)
    if known is not None:
        return Filing(known, "lingering")
    features, signature = classify()
    same = by_root_cause(incidents, signature.root_cause)
    if same is not None:
        return Filing(same, "same_root_cause", signature, features)
    return Filing(None, "another_root_cause", signature, features, related=incidents[-1],
                  set_aside={m: shown[m] for m in sorted(metrics) if m in shown})


def in_automated_phase(incidents: list[Incident]) -> Incident | None:
    """The newest open incident automation still works on (diagnose, act, verify), if any."""
    return next((i for i in reversed(incidents) if i.status in AUTOMATED_STATUSES), None)


def symptoms(store: IncidentStore, incident: Incident, is_health: IsHealth) -> set[str]:
    """The health metrics the incident was diagnosed on, minus those it left to another incident.

    Anomalies timestamped after its diagnosis joined it later and are not its symptoms (they
    may be another fault's); an undiagnosed incident's symptoms are all its anomalies' metrics.
    """
    diagnosed = store.last_event(incident.id, "diagnosed")
    until = pd.Timestamp(diagnosed["at"]) if diagnosed else None
    metrics = {metric for metric, onset in store.anomaly_onsets(incident.id).items()
               if is_health(metric) and (until is None or onset <= until)}
    opened = store.last_event(incident.id, "opened")
    left = set((opened or {}).get("data", {}).get("set_aside") or {})
    return metrics - left


def lingering(store: IncidentStore, incident: Incident, is_health: IsHealth) -> set[str]:
    """The incident's symptoms it may still show: after a failed verification, those it found
    still outside their baseline; before any verification, all of them."""
    own = symptoms(store, incident, is_health)
    verification = store.last_event(incident.id, "verification")
    verdict = (verification or {}).get("data", {}).get("metrics") or {}
    if not verdict or (verification or {}).get("data", {}).get("passed"):
        return own
    return own & {m for m, inside in verdict.items() if not inside}


def shown_by(store: IncidentStore, incidents: Iterable[Incident],
             is_health: IsHealth) -> dict[str, int]:
    """Each lingering symptom metric and the newest of ``incidents`` that still shows it."""
    out: dict[str, int] = {}
    for incident in sorted(incidents, key=lambda i: i.id):
        out.update(dict.fromkeys(lingering(store, incident, is_health), incident.id))
    return out


def by_symptoms(incidents: list[Incident], metrics: set[str],
                shown: dict[str, int]) -> Incident | None:
    """The incident to join when open incidents already show every one of ``metrics``: the one
    that shows most of them, the newest on a tie."""
    if not metrics or not metrics <= set(shown):
        return None
    owners = [shown[m] for m in metrics]
    chosen = max(owners, key=lambda i: (owners.count(i), i))
    return next(i for i in incidents if i.id == chosen)


def by_root_cause(incidents: list[Incident], root_cause: str) -> Incident | None:
    """The newest open incident diagnosed with ``root_cause``, if any."""
    return next((i for i in reversed(incidents) if i.root_cause == root_cause), None)


def left_to_others(store: IncidentStore, incident: Incident, others: Iterable[Incident],
                   is_health: IsHealth) -> dict[str, int]:
    """Health metrics the incident's verification leaves to other open incidents.

    A metric is left to another open incident when that incident still shows it and it is not
    among this incident's own symptoms; this incident's verification does not judge it.
    """
    others = [o for o in others if o.id != incident.id]
    if not others:
        return {}
    own = symptoms(store, incident, is_health)
    return {m: owner for m, owner in shown_by(store, others, is_health).items() if m not in own}
