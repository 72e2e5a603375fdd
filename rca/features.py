"""The feature vector of an incident, from its anomalies and the metric window around it.

Features are a flat ``dict[str, float]`` so that rules, a trained classifier and a JSON payload
all read the same thing. A metric with no data is marked ``{metric}_missing = 1.0``.

Besides the raw figures (``_value``, ``_expected``, ``_ratio``, ``_slope``) each metric gets
figures that mean the same on any service, which is what a trained classifier reads:

- ``_anomalous``: 1 when the incident holds an anomaly of the metric;
- ``_log_ratio``: log of the latest value over the baseline centre (counts get +1 on both
  sides, so "3 errors where 0 were expected" is finite);
- ``_dev_z``: the mean of the last three points, in baseline spreads from the centre (needs
  ``spread``; NaN without it);
- ``_slope_z``: the least-squares slope over the window in baseline spreads a minute (needs
  ``spread``), and ``_slope_rel``: the same slope as a fraction of the centre a minute;
- ``_climb``: how much of the window's rise happened in its second half (a leak keeps
  climbing, a surge jumped once and stays flat), in [0, 1] when the metric rose;
- ``_persist``: in how many periods of the window the metric was anomalous (an incident needs
  a symptom that lasts; one odd period is noise), and ``_first``: 1 when the metric departed
  from its baseline first, 0.5 together with another, 0 after another or never. Both count periods
  and order, not seconds, so 1-second and 5-minute sampling mean the same; NaN when only the
  latest anomalies are known (a payload, the watcher's newest periods).

``errors_in_period`` is the most errors in one anomalous period of the window (the matrix's
"more than 10 errors in a period"), else the latest period's count.

ECS context (:class:`EcsContext`) adds the minutes since the last deployment and the tasks
stopped with OutOfMemory; what is not known is NaN, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly
from detection.metrics import spec_for

Features = dict[str, float]
RECENT_POINTS = 3
HEALTH = ("cpu_utilization", "memory_utilization", "error_count", "response_time")
NAN = math.nan


@dataclass(frozen=True)
class EcsContext:
    """What ECS says about the service at the incident; None where it is not known.

    Parameters
    ----------
    minutes_since_deployment : minutes since the service's latest deployment started.
    oom_stopped_tasks : tasks stopped with an OutOfMemory reason in the last hour.
    running_tasks : tasks running now.
    desired_tasks : the service's desired count now.
    """

    minutes_since_deployment: float | None = None
    oom_stopped_tasks: int | None = None
    running_tasks: int | None = None
    desired_tasks: int | None = None

    def __post_init__(self) -> None:
        for name in ("minutes_since_deployment", "oom_stopped_tasks", "running_tasks", "desired_tasks"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(float(value)) or float(value) < 0):
                raise ValueError(f"context.{name} must be a finite number >= 0, got {value!r}")


def context_features(context: EcsContext | None) -> Features:
    """The context as features: NaN for what is not known."""
    context = context or EcsContext()

    def num(value):
        return NAN if value is None else float(value)
    return {"minutes_since_deployment": num(context.minutes_since_deployment),
            "oom_stopped_tasks": num(context.oom_stopped_tasks),
            "running_tasks": num(context.running_tasks),
            "desired_tasks": num(context.desired_tasks)}


def log_ratio(metric: str, value: float, expected: float) -> float:
    """log(value / expected), with +1 on both sides for counts and a tiny floor otherwise."""
    if spec_for(metric).count:
        return float(np.log((max(value, 0.0) + 1.0) / (max(expected, 0.0) + 1.0)))
    floor = 1e-3
    return float(np.log(max(value, floor) / max(expected, floor)))


def incident_features(anomalies: list[Anomaly], window: pd.DataFrame, expected: pd.DataFrame,
                      metrics: list[str], error_metric: str = "error_count", *,
                      spread: pd.DataFrame | None = None,
                      context: EcsContext | None = None, timeline: bool = False) -> Features:
    """Build the features of one incident.

    Parameters
    ----------
    anomalies : the incident's anomalies so far.
    window : the recent metric points (metrics as columns, time as index).
    expected : the baseline centre at the same timestamps.
    metrics : every configured metric, so absent ones are marked missing.
    error_metric : the metric whose latest value is the errors in the scoring period.
    spread : the baseline spread at the same timestamps; without it the z-like features are NaN.
    context : what ECS says about the service (deployments, OOM kills); unknown when None.
    timeline : whether ``anomalies`` cover the whole window (``aiops rca --window``), so that
        persistence, order and the peak error count can be read from them; False when they are
        only the newest periods' (the watcher), which leaves ``_persist`` and ``_first`` NaN.
    """
    features: Features = {}
    in_window = [a for a in anomalies if len(window.index) and window.index[0] <= a.timestamp
                 <= window.index[-1]]
    first = min((a.timestamp for a in in_window if a.metric in HEALTH), default=None)
    for metric in metrics:
        values = window[metric].dropna() if metric in window.columns else pd.Series(dtype=float)
        scores = [a.score for a in anomalies if a.metric == metric]
        features[f"{metric}_missing"] = float(values.empty)
        features[f"{metric}_z"] = max(scores, default=0.0)
        if values.empty:
            continue
        features[f"{metric}_anomalous"] = float(bool(scores))
        features[f"{metric}_value"] = float(values.iloc[-1])
        centre = expected[metric].reindex(values.index).to_numpy(dtype=float) \
            if metric in expected.columns else np.full(len(values), np.nan)
        features[f"{metric}_expected"] = float(centre[-1])
        features[f"{metric}_ratio"] = float(values.iloc[-1] / max(abs(centre[-1]), 1e-9))
        features[f"{metric}_log_ratio"] = log_ratio(metric, values.iloc[-1], centre[-1])
        slope = _slope(values)
        features[f"{metric}_slope"] = slope
        level_floor = 1.0 if spec_for(metric).count else 1e-3
        features[f"{metric}_slope_rel"] = slope / max(abs(float(np.nanmean(centre))), level_floor)
        features[f"{metric}_climb"] = _climb(values)
        if timeline:
            own = sorted({a.timestamp for a in in_window if a.metric == metric})
            features[f"{metric}_persist"] = float(len(own))
            features[f"{metric}_first"] = _order(own, first, in_window, metric)
        if spread is not None and metric in spread.columns:
            sigma = spread[metric].reindex(values.index).to_numpy(dtype=float)
            recent = slice(-RECENT_POINTS, None)
            features[f"{metric}_dev_z"] = float(np.mean((values.to_numpy()[recent] - centre[recent])
                                                        / sigma[recent]))
            features[f"{metric}_slope_z"] = slope / float(np.mean(sigma))
    if features.get(f"{error_metric}_value") is not None:
        peaks = [a.value for a in in_window if a.metric == error_metric]
        features["errors_in_period"] = max(peaks) if timeline and peaks else features[f"{error_metric}_value"]
    features.update(context_features(context))
    return features


def _order(own: list, first, in_window: list[Anomaly], metric: str) -> float:
    """1 when ``metric`` departed first alone, 0.5 together with another, 0 after or never."""
    if not own or first is None or own[0] > first:
        return 0.0
    together = any(a.metric != metric and a.metric in HEALTH and a.timestamp == first for a in in_window)
    return 0.5 if together else 1.0


def _slope(values: pd.Series) -> float:
    """Least-squares slope per minute: a leak climbs steadily, a surge jumps and stays."""
    if len(values) < 3:
        return 0.0
    minutes = (values.index - values.index[0]).total_seconds().to_numpy() / 60.0
    return float(np.polyfit(minutes, values.to_numpy(dtype=float), 1)[0])


def _climb(values: pd.Series) -> float:
    """The share of the window's rise that came in its second half; NaN when too short.

    A leak rises evenly (about half its rise is in the second half); a step that happened in
    the first half leaves the second half flat (near 0); a step in the last minutes puts all
    of it there (near 1). Noise-sized rises are clipped to [0, 1] rather than trusted.
    """
    n = len(values)
    if n < 6:
        return NAN
    v = values.to_numpy(dtype=float)
    head, mid, tail = np.mean(v[:2]), np.mean(v[n // 2 - 1:n // 2 + 1]), np.mean(v[-2:])
    rise = tail - head
    if rise <= 0:
        return 0.0
    return float(np.clip((tail - mid) / rise, 0.0, 1.0))
