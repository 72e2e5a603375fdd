"""The feature vector of an incident, from its anomalies and the metric window around it.

Features are a flat ``dict[str, float]`` so that rules, a trained classifier and a JSON payload
all read the same thing. A metric with no data is marked ``{metric}_missing = 1.0``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly

Features = dict[str, float]


def incident_features(anomalies: list[Anomaly], window: pd.DataFrame, expected: pd.DataFrame,
                      metrics: list[str], error_metric: str = "error_count") -> Features:
    """Build the features of one incident.

    Parameters
    ----------
    anomalies : the incident's anomalies so far.
    window : the recent metric points (metrics as columns, time as index).
    expected : the baseline centre at the same timestamps.
    metrics : every configured metric, so absent ones are marked missing.
    error_metric : the metric whose latest value is the errors in the scoring period.
    """
    features: Features = {}
    for metric in metrics:
        values = window[metric].dropna() if metric in window.columns else pd.Series(dtype=float)
        scores = [a.score for a in anomalies if a.metric == metric]
        features[f"{metric}_missing"] = float(values.empty)
        features[f"{metric}_z"] = max(scores, default=0.0)
        if values.empty:
            continue
        features[f"{metric}_value"] = float(values.iloc[-1])
        centre = expected[metric].reindex(values.index).to_numpy(dtype=float)
        features[f"{metric}_expected"] = float(centre[-1])
        features[f"{metric}_ratio"] = float(values.iloc[-1] / max(abs(centre[-1]), 1e-9))
        features[f"{metric}_slope"] = _slope(values)
    if features.get(f"{error_metric}_value") is not None:
        features["errors_in_period"] = features[f"{error_metric}_value"]
    return features


def _slope(values: pd.Series) -> float:
    """Least-squares slope per minute: a leak climbs steadily, a surge jumps and stays."""
    if len(values) < 3:
        return 0.0
    minutes = (values.index - values.index[0]).total_seconds().to_numpy() / 60.0
    return float(np.polyfit(minutes, values.to_numpy(dtype=float), 1)[0])
