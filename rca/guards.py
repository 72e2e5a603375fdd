"""The hard guards between a classifier's probabilities and the playbook row that acts.

A model ranks causes; where the response matrix is categorical, these rules decide, in order:

1. No anomaly at all (and no OOM kill): ``unknown``. There is nothing to explain.
2. Recent deployment: more than ``error_boundary`` errors in the period, errors above their
   baseline, and a deployment at most ``recent_deployment_minutes`` old is ``error_rate_high``
   (roll back), whatever else the metrics show.
3. The error boundary: the model names the error-rate family; the count decides the row:
   strictly more than ``error_boundary`` errors is ``error_rate_high``, else ``error_rate_low``.
   Because the split is here and not in the model, editing the boundary needs no retraining.
   ``error_rate_low`` only ever alerts (the playbook refuses any other action for it).
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
from rca.vectorize import ERRORS, HEALTH_METRICS, MEMORY, metric_anomalous

ERROR_FAMILY = "error_rate"
DESTRUCTIVE = (Action.RESTART_TASKS, Action.ROLLBACK)


def model_class(cause: str) -> str:
    """The class a model learns for a root cause: both error-rate rows are one family."""
    return ERROR_FAMILY if cause in ("error_rate_low", "error_rate_high") else cause


@dataclass(frozen=True)
class Decision:
    """The cause chosen, how sure, the rule that chose it and the model's own best guess."""

    cause: str
    confidence: float
    rule: str            # "model", "recent_deployment", "error_boundary", "no_anomaly",
                         # "low_confidence", "no_evidence"
    guess: str           # the model's best class (after the error split), for the explanation
    guess_confidence: float


def errors_in_period(features: Features) -> float:
    value = features.get("errors_in_period")
    return float(value) if value is not None and math.isfinite(float(value)) else math.nan


def recent_deployment(features: Features, playbook: Playbook) -> bool:
    minutes = features.get("minutes_since_deployment")
    return minutes is not None and math.isfinite(minutes) and minutes <= playbook.recent_deployment_minutes


def split_errors(features: Features, playbook: Playbook) -> str | None:
    """``error_rate_high`` or ``error_rate_low`` by the count; None when the count is unknown."""
    errors = errors_in_period(features)
    if math.isnan(errors):
        return None
    return "error_rate_high" if errors > playbook.error_boundary else "error_rate_low"


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
    guess = best
    if best == ERROR_FAMILY:
        guess = split_errors(features, playbook) or "unknown"
    anomalous = any(metric_anomalous(features, m) for m in HEALTH_METRICS)
    oom = features.get("oom_stopped_tasks")
    if not anomalous and not (oom is not None and oom > 0):
        return Decision("unknown", p, "no_anomaly", guess, p)
    errors = errors_in_period(features)
    if (metric_anomalous(features, ERRORS) and errors > playbook.error_boundary
            and recent_deployment(features, playbook)):
        return Decision("error_rate_high", 1.0, "recent_deployment", guess, p)
    if guess == "unknown":
        return Decision("unknown", p, "error_boundary", guess, p)
    if not _has_evidence(guess, features):
        return Decision("unknown", p, "no_evidence", guess, p)
    floor = playbook.min_confidence_destructive \
        if playbook.cause(guess).auto_action in DESTRUCTIVE else playbook.min_confidence
    if p < floor:
        return Decision("unknown", p, "low_confidence", guess, p)
    return Decision(guess, p, "error_boundary" if best == ERROR_FAMILY else "model", guess, p)
