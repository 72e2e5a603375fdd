"""From an incident's feature dict to the fixed, service-agnostic vector a model reads.

Only figures that mean the same on any service and with any detector go in: anomaly flags,
deviations in baseline spreads, log ratios to the baseline, slopes normalised by the baseline's
spread or level, the shape of the rise, how recent the last deployment was, whether tasks were
OOM-killed and what share of the desired tasks is running (lost tasks put more load on the
rest), the share of requests that
failed (errors as a rate, where the count per period depends on the sampling). Absolute values
(requests a minute, CPU percent, task counts) stay out, so a model trained on simulated
services does not learn one service's scale. What is unknown is NaN, which the classifier
handles natively, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

CPU, MEMORY, ERRORS, LATENCY, REQUESTS = ("cpu_utilization", "memory_utilization", "error_count",
                                          "response_time", "request_count")
MODEL_METRICS = (CPU, MEMORY, ERRORS, LATENCY, REQUESTS)
HEALTH_METRICS = (CPU, MEMORY, ERRORS, LATENCY)
# Not the detector's own score (``_z``): its scale is the detector's (a robust z from 4 up for
# ``aiops rca --window``, a calibrated tail probability below 1 from the watcher's ensemble), so a
# model that read it learnt one detector; ``dev_z`` measures the same departure in baseline spreads.
PER_METRIC = ("missing", "anomalous", "log_ratio", "dev_z", "slope_z", "slope_rel", "climb",
              "persist", "first")
DERIVED = ("cpu_vs_requests", "error_share", "anomalous_health_metrics", "log_minutes_since_deployment",
           "oom_stopped_tasks", "running_share")
FEATURE_NAMES: tuple[str, ...] = tuple(f"{m}_{p}" for m in MODEL_METRICS for p in PER_METRIC) + DERIVED
NAN = math.nan


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return NAN
    return out if math.isfinite(out) else NAN


def metric_missing(features: Mapping[str, float], metric: str) -> bool:
    """Whether the incident has no data at all for ``metric``."""
    flag = features.get(f"{metric}_missing")
    if flag is not None:
        return bool(flag)
    return not any(f"{metric}_{p}" in features for p in ("value", "anomalous", "log_ratio"))


def metric_anomalous(features: Mapping[str, float], metric: str) -> bool:
    """Whether the incident holds an anomaly of ``metric`` (a flag, or a raised score)."""
    flag = features.get(f"{metric}_anomalous")
    if flag is not None and math.isfinite(flag):
        return bool(flag)
    return _num(features.get(f"{metric}_z")) > 0


def model_inputs(features: Mapping[str, float]) -> dict[str, float]:
    """The named model inputs of one incident; NaN where a figure is not known."""
    out: dict[str, float] = {}
    for metric in MODEL_METRICS:
        missing = metric_missing(features, metric)
        out[f"{metric}_missing"] = float(missing)
        for part in PER_METRIC[1:]:
            out[f"{metric}_{part}"] = NAN if missing else _num(features.get(f"{metric}_{part}"))
        if not missing:
            out[f"{metric}_anomalous"] = float(metric_anomalous(features, metric))
            out[f"{metric}_climb"] = min(max(out[f"{metric}_climb"], 0.0), 1.0) \
                if math.isfinite(out[f"{metric}_climb"]) else NAN
            # periods, capped: past a few, a longer window says nothing more about the cause
            out[f"{metric}_persist"] = min(out[f"{metric}_persist"], 5.0) \
                if math.isfinite(out[f"{metric}_persist"]) else NAN
    out["cpu_vs_requests"] = out[f"{CPU}_log_ratio"] - out[f"{REQUESTS}_log_ratio"]
    # errors as a rate: the share of the period's requests that failed (the same at any sampling)
    errors, requests = _num(features.get(f"{ERRORS}_value")), _num(features.get(f"{REQUESTS}_value"))
    out["error_share"] = min(errors / max(requests, 1.0), 1.0) if errors >= 0 and requests >= 0 else NAN
    out["anomalous_health_metrics"] = float(sum(out[f"{m}_anomalous"] == 1.0 for m in HEALTH_METRICS))
    minutes = _num(features.get("minutes_since_deployment"))
    out["log_minutes_since_deployment"] = math.log1p(minutes) if minutes >= 0 else NAN
    out["oom_stopped_tasks"] = min(_num(features.get("oom_stopped_tasks")), 10.0)
    running, desired = _num(features.get("running_tasks")), _num(features.get("desired_tasks"))
    out["running_share"] = min(running / desired, 2.0) if desired > 0 and running >= 0 else NAN
    return out


class FeatureVectorizer(TransformerMixin, BaseEstimator):
    """Turns a list of feature dicts into a float matrix with columns :data:`FEATURE_NAMES`.

    Stateless (``fit`` learns nothing but the column names), so it can lead a scikit-learn
    pipeline and a saved model always reads its inputs the same way. It takes dicts, not
    arrays, which is why ``parametrize_with_checks`` does not apply to it.
    """

    def fit(self, X: Iterable[Mapping[str, float]], y=None) -> "FeatureVectorizer":
        self.feature_names_out_ = np.array(FEATURE_NAMES, dtype=object)
        self.n_features_in_ = len(FEATURE_NAMES)
        return self

    def transform(self, X: Iterable[Mapping[str, float]]) -> np.ndarray:
        rows = list(X)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise TypeError(f"incident {i} is a {type(row).__name__}, not a dict of features")
        matrix = np.empty((len(rows), len(FEATURE_NAMES)), dtype=float)
        for i, row in enumerate(rows):
            inputs = model_inputs(row)
            matrix[i] = [inputs[name] for name in FEATURE_NAMES]
        return matrix

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(FEATURE_NAMES, dtype=object)
