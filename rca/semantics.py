"""The response matrix's semantics: from the symptom that leads an incident to the playbook row.

A classifier answers one question, which symptom *family* started the incident: the CPU
(``high_cpu``), memory (``memory_leak``), errors (``error_rate``) or latency
(``slow_response``). Which row of the matrix that is, is not learnt but read here, the same
way for every classifier, so that the seed's definitions hold whatever a model learnt:

- CPU with errors above their baseline is ``high_cpu_with_errors`` ("High CPU (with
  errors)"), without them ``high_cpu``;
- errors above their baseline are a high error rate: strictly more than ``error_boundary`` in
  one period is ``error_rate_high``, else ``error_rate_low``. Latency with errors reads the same
  way: where rows overlap, the more severe row speaks ("High error rate" is HIGH or CRITICAL,
  "Slow response" MEDIUM);
- memory is ``memory_leak`` whatever else moved (a leak drags CPU and latency with it), and
  memory above its baseline at 90% or more of its limit is one whatever the model says, unless
  it is known not to have risen before every other symptom (memory that follows a CPU fault);
- CPU and errors both above their baselines is "High CPU (with errors)" whichever family the
  model named, unless the errors are known to have come first (a bad change whose CPU followed).

A model may also name no family at all (:data:`NO_FAULT`, learnt from fault-free windows whose
noise, blips or deployment warm-up still opened an incident): that is ``unknown``, alert only.

Whether a rollback that ``error_rate_high`` calls for is *safe* (a recent deployment, a
previous revision) is not decided here: that is the remediator's call.
"""

from __future__ import annotations

import math

from rca.features import Features
from rca.vectorize import CPU, ERRORS, HEALTH_METRICS, LATENCY, MEMORY, metric_anomalous

FAMILIES = ("high_cpu", "memory_leak", "error_rate", "slow_response")
NO_FAULT = "none"    # the class of fault-free windows (hard negatives): the row is ``unknown``
MODEL_CLASSES = FAMILIES + (NO_FAULT,)
FAMILY_METRIC = {"high_cpu": CPU, "memory_leak": MEMORY, "error_rate": ERRORS, "slow_response": LATENCY}
OOM_LEVEL = 90.0    # memory (% of the task's limit) at which a rise is heading for an OOM kill
MIN_PERSIST = 2     # the watcher's default open_after: a symptom seen in one period only is noise


def family_of(cause: str) -> str:
    """The symptom family of a root cause (the class a model learns)."""
    if cause in ("high_cpu", "high_cpu_with_errors"):
        return "high_cpu"
    if cause in ("error_rate_low", "error_rate_high", "error_rate"):
        return "error_rate"
    if cause in ("unknown", NO_FAULT):
        return NO_FAULT
    return cause


def errors_in_period(features: Features) -> float:
    value = features.get("errors_in_period")
    return float(value) if value is not None and math.isfinite(float(value)) else math.nan


def split_errors(features: Features, boundary: float) -> str | None:
    """``error_rate_high`` or ``error_rate_low`` by the count; None when the count is unknown."""
    errors = errors_in_period(features)
    if math.isnan(errors):
        return None
    return "error_rate_high" if errors > boundary else "error_rate_low"


def _led(features: Features, metric: str, alone: bool = False) -> bool:
    """Whether ``metric`` departed first (``alone``: before any other); True when the order is unknown."""
    first = features.get(f"{metric}_first")
    return first is None or not math.isfinite(first) or first >= (1.0 if alone else 0.5)


def near_oom(features: Features) -> bool:
    """Memory above its baseline at :data:`OOM_LEVEL` % or more, and not after another symptom."""
    value = features.get(f"{MEMORY}_value")
    return (metric_anomalous(features, MEMORY) and value is not None and math.isfinite(value)
            and value >= OOM_LEVEL and _led(features, MEMORY, alone=True))


def matrix_row(family: str, features: Features, boundary: float) -> str:
    """The playbook row a symptom family is, given the other symptoms; ``unknown`` if undecidable."""
    family = family_of(family)
    if near_oom(features):
        return "memory_leak"
    errors, cpu = metric_anomalous(features, ERRORS), metric_anomalous(features, CPU)
    if family in ("high_cpu", "error_rate") and cpu and errors and _led(features, CPU):
        return "high_cpu_with_errors"
    if family == "high_cpu":
        return "high_cpu_with_errors" if errors else "high_cpu"
    if family == "error_rate" or (family == "slow_response" and errors):
        return split_errors(features, boundary) or "unknown"
    return family if family in FAMILIES else "unknown"


def persistent(features: Features, metric: str) -> bool:
    """Whether ``metric`` is anomalous for long enough to be an incident (unknown duration: yes)."""
    if not metric_anomalous(features, metric):
        return False
    seen = features.get(f"{metric}_persist")
    return seen is None or not math.isfinite(seen) or seen >= MIN_PERSIST


def any_persistent_symptom(features: Features) -> bool:
    """Whether any health metric is anomalous for long enough to be an incident."""
    return any(persistent(features, m) for m in HEALTH_METRICS)
