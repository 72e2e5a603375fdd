"""The hard guards between a classifier's probabilities and the playbook row that acts.

A model ranks causes; where the response matrix is categorical, these rules decide, in order:

1. No anomaly that lasts (at least two periods, where the window tells; and no OOM kill):
   ``unknown``. There is nothing to explain.
   A window whose first period is already inside the incident (``onset_seen`` 0) is
   ``unknown`` too: what started it is not in the window, so which symptom led cannot be told.
2. Recent deployment: more than ``error_boundary`` errors in the period, errors above their
   baseline, and a deployment at most ``recent_deployment_minutes`` old is ``error_rate_high``
   (roll back), whatever else the metrics show.
   Memory above its baseline at 90% or more of its limit, rising before anything else (or in
   an order not known), is ``memory_leak`` (restart): an OOM kill is near.
3. The matrix's semantics (:mod:`rca.semantics`): the model names the symptom family; the
   other symptoms and the error count decide the row (CPU with errors, more than
   ``error_boundary`` errors, ...). Editing the boundary needs no retraining.
   ``error_rate_low`` only ever alerts (the playbook refuses any other action for it).
   A model that names no fault (:data:`rca.semantics.NO_FAULT`: the incident looks like the
   fault-free windows it was trained on) is ``unknown``.
4. Evidence for destructive actions: ``memory_leak`` (restart) needs memory above its baseline
   or a task stopped with OutOfMemory; ``error_rate_high`` (rollback) needs errors above their
   baseline. Without it the answer is ``unknown``.
5. Confidence: below ``min_confidence`` the answer is ``unknown``; a restart or a rollback
   needs ``min_confidence_destructive``. ``unknown`` only alerts and pages the on-call engineer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rca.features import Features
from rca.playbook import Action, Playbook
from rca.semantics import (
    NO_FAULT,
    any_persistent_symptom,
    errors_in_period,
    family_of,
    matrix_row,
    near_oom,
)
from rca.vectorize import ERRORS, MEMORY, metric_anomalous

ERROR_FAMILY = "error_rate"
DESTRUCTIVE = (Action.RESTART_TASKS, Action.ROLLBACK)


def model_class(cause: str) -> str:
    """The class a model learns for a root cause: its symptom family (:mod:`rca.semantics`)."""
    return family_of(cause)


@dataclass(frozen=True)
class Decision:
    """The cause chosen, how sure, the rule that chose it and the model's own best guess."""

    cause: str
    confidence: float
    rule: str            # "model", "recent_deployment", "error_boundary", "no_anomaly",
                         # "low_confidence", "no_evidence", "no_fault"
    guess: str           # the model's best class (after the error split), for the explanation
    guess_confidence: float


def recent_deployment(features: Features, playbook: Playbook) -> bool:
    minutes = features.get("minutes_since_deployment")
    return minutes is not None and math.isfinite(minutes) and minutes <= playbook.recent_deployment_minutes


def _has_evidence(cause: str, features: Features) -> bool:
    if cause == "memory_leak":
        oom = features.get("oom_stopped_tasks")
        return metric_anomalous(features, MEMORY) or (oom is not None and oom > 0)
    if cause == "error_rate_high":
        return metric_anomalous(features, ERRORS)
    return True


def decide(probabilities: Mapping[str, float], features: Features, playbook: Playbook) -> Decision:
    """Apply the guards to a model's class probabilities (classes as :func:`model_class` names)."""
    best = max(probabilities, key=probabilities.get)
    p = float(probabilities[best])
    guess = matrix_row(best, features, playbook.error_boundary)
    oom = features.get("oom_stopped_tasks")
    if not any_persistent_symptom(features) and not (oom is not None and oom > 0):
        return Decision("unknown", p, "no_anomaly", guess, p)
    if features.get("onset_seen") == 0.0:
        return Decision("unknown", p, "onset_not_seen", guess, p)
    errors = errors_in_period(features)
    if (metric_anomalous(features, ERRORS) and errors > playbook.error_boundary
            and recent_deployment(features, playbook)):
        return Decision("error_rate_high", 1.0, "recent_deployment", guess, p)
    if near_oom(features):
        return Decision("memory_leak", 1.0, "near_oom", guess, p)
    if best == NO_FAULT and guess == "unknown":
        return Decision("unknown", p, "no_fault", guess, p)
    if guess == "unknown":
        return Decision("unknown", p, "error_boundary", guess, p)
    if not _has_evidence(guess, features):
        return Decision("unknown", p, "no_evidence", guess, p)
    floor = playbook.min_confidence_destructive \
        if playbook.cause(guess).auto_action in DESTRUCTIVE else playbook.min_confidence
    if p < floor:
        return Decision("unknown", p, "low_confidence", guess, p)
    return Decision(guess, p, "model" if guess == best else "matrix", guess, p)
