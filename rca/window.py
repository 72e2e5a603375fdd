"""An incident's features from a metric window judged against a history.

This is what ``aiops rca --history H --window W`` and the benchmarks on real-system windows do:
fit the per-metric baselines on the history, find the window's anomalies, and build the
features from the window's last :data:`FEATURE_MINUTES` minutes, as the watcher does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from detection.anomaly import Anomaly
from detection.metrics import DEFAULT_SPECS
from detection.zscore import RobustZDetector
from rca.features import EcsContext, Features, incident_features
from rca.payload import PayloadError

HEALTH = ("cpu_utilization", "memory_utilization", "error_count", "response_time")
FEATURE_MINUTES = 15     # the window the watcher hands to the features (plus the current minute)
MIN_HISTORY_ROWS = 60


@dataclass(frozen=True)
class WindowFeatures:
    """The features of a window and what its report draws (anomalies, baseline centre and band)."""

    features: Features
    anomalies: list[Anomaly]
    centre: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame


def opening(anomalies: list[Anomaly], index: pd.DatetimeIndex, open_after: int = 2,
            group_window: int = 3) -> pd.Timestamp | None:
    """The period at which the watcher would open an incident on these anomalies, or None.

    An incident opens on ``open_after`` periods with an anomalous health metric within
    ``group_window`` periods, counted in periods (not minutes), whatever the sampling.
    """
    hot = pd.Series(0, index=index)
    for anomaly in anomalies:
        if anomaly.metric in HEALTH and anomaly.timestamp in hot.index:
            hot[anomaly.timestamp] = 1
    opened = hot.rolling(group_window, min_periods=1).sum() >= open_after
    return opened.idxmax() if opened.any() else None


def window_features(history: pd.DataFrame, window: pd.DataFrame, threshold: float = 4.0,
                    min_window_rows: int = 3, context: EcsContext | None = None,
                    open_after: int = 2) -> WindowFeatures:
    """Fit the baselines on ``history``, find the anomalies of ``window`` and build its features.

    The features are those of the moment the watcher would have opened the incident (the
    first ``open_after`` anomalous periods within ``min_window_rows``, the grouping window): a
    window often runs on after the fault ended, when the latest values say nothing, and the
    symptoms that follow (memory that jumps after the CPU did) are not what started it. This is
    also the moment the training incidents are taken at. Without such a moment the whole window
    is read (and an incident that never opened is ``unknown``).

    Raises PayloadError (naming ``history``, ``window`` or its column) when the history is too
    short to learn a baseline, the window is shorter than ``min_window_rows`` (the grouping
    window), or the window has a metric the history lacks.
    """
    if len(history.dropna(how="all")) < MIN_HISTORY_ROWS:
        raise PayloadError("history", f"{len(history)} rows; at least {MIN_HISTORY_ROWS} needed to "
                                      "learn a baseline")
    if len(window.dropna(how="all")) < min_window_rows:
        raise PayloadError("window", f"{len(window)} row(s), shorter than the grouping window of "
                                    f"{min_window_rows} periods")
    missing = [c for c in window.columns if c not in history.columns]
    if missing:
        raise PayloadError(f"window.{missing[0]}", "metric not in the history, so it has no baseline")
    detector = RobustZDetector(threshold=threshold).fit(history)
    anomalies = detector.detect(window)
    opened = opening(anomalies, window.index, open_after, min_window_rows)
    end = window.index[-1] if opened is None else opened
    recent = window[(window.index >= end - pd.Timedelta(minutes=FEATURE_MINUTES)) & (window.index <= end)]
    seen = [a for a in anomalies if a.timestamp <= end]
    columns = list(window.columns)
    centre = detector.expected_frame(window.index, columns)
    spread = pd.DataFrame({m: detector.baseline_.expected(m, window.index).spread for m in columns},
                          index=window.index)
    features = incident_features(seen, recent, centre.loc[recent.index], list(DEFAULT_SPECS),
                                 spread=spread.loc[recent.index], context=context, timeline=True)
    if opened is not None:
        features["onset_seen"] = float(not any(a.timestamp == window.index[0] and a.metric in HEALTH
                                               for a in anomalies))
    band = detector.threshold * spread
    return WindowFeatures(features, anomalies, centre, centre - band, centre + band)
