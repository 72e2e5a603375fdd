"""An incident's features from a metric window judged against a history.

This is what ``aiops rca --history H --window W`` and the benchmarks on real-system windows do:
fit the per-metric baselines on the history, find the window's anomalies, and build the
features from the window's last :data:`FEATURE_MINUTES` minutes, as the watcher does.

The window may be sampled at any period (1 s to 5 min and beyond). Persistence and order count
periods, and the error count the matrix's boundary reads is per *scoring period*
(``scoring_seconds``, the watcher's, 60 s by default): the rate a sampled count shows, scaled
to the scoring period (5 errors in a second are 300 a minute, 50 in five minutes 10 a minute).
So the same incident sampled every second or every five minutes meets the same boundary.
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
ERRORS = "error_count"
SCORING_SECONDS = 60.0   # the watcher's default scoring period (Settings.period_seconds)
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
    times = {a.timestamp for a in anomalies if a.metric in HEALTH}
    hot = pd.Series(index.isin(list(times)).astype(int), index=index)
    opened = hot.rolling(group_window, min_periods=1).sum() >= open_after
    return opened.idxmax() if opened.any() else None


def sampling_seconds(index: pd.DatetimeIndex) -> float:
    """The window's sampling period in seconds (the median step; 60 when it cannot tell)."""
    if len(index) < 2:
        return SCORING_SECONDS
    return float(pd.Series(index).diff().dt.total_seconds().median())


def errors_per_scoring_period(errors: pd.Series, scoring_seconds: float = SCORING_SECONDS,
                              period_seconds: float | None = None) -> pd.Series:
    """Each point's errors as a count per scoring period: the rate the point shows, scaled.

    Five errors in one second are 300 a minute; fifty in five minutes are 10 a minute; at the
    scoring period itself the counts are unchanged. (A sum over the last scoring period would
    count only the seconds since the onset when an incident opens a few seconds in.)
    ``period_seconds``: the sampling period, read from the index when not given.
    """
    period = sampling_seconds(errors.index) if period_seconds is None else period_seconds
    return errors * (scoring_seconds / period)


def window_features(history: pd.DataFrame, window: pd.DataFrame, threshold: float = 4.0,
                    min_window_rows: int = 3, context: EcsContext | None = None,
                    open_after: int = 2, scoring_seconds: float = SCORING_SECONDS,
                    detector: RobustZDetector | None = None) -> WindowFeatures:
    """Fit the baselines on ``history``, find the anomalies of ``window`` and build its features.

    The features are those of the moment the watcher would have opened the incident (the
    first ``open_after`` anomalous periods within ``min_window_rows``, the grouping window): a
    window often runs on after the fault ended, when the latest values say nothing, and the
    symptoms that follow (memory that jumps after the CPU did) are not what started it. This is
    also the moment the training incidents are taken at. Without such a moment the whole window
    is read (and an incident that never opened is ``unknown``). ``errors_in_period`` is per
    scoring period of ``scoring_seconds`` (:func:`errors_per_scoring_period`);
    ``errors_per_sample`` keeps the count of one sampled period. ``detector``: one already fitted
    on ``history`` with ``threshold`` (the training data reuses it), else one is fitted here.

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
    detector = detector or RobustZDetector(threshold=threshold).fit(history)
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
    if ERRORS in window.columns and "errors_in_period" in features:
        counts = window[ERRORS].loc[recent.index].dropna()
        per = errors_per_scoring_period(counts, scoring_seconds, sampling_seconds(window.index))
        peaks = [float(per[a.timestamp]) for a in seen if a.metric == ERRORS and a.timestamp in per.index]
        features["errors_per_sample"] = features["errors_in_period"]
        if len(per):
            features["errors_in_period"] = max(peaks) if peaks else float(per.iloc[-1])
    if opened is not None:
        features["onset_seen"] = float(not any(a.timestamp == window.index[0] and a.metric in HEALTH
                                               for a in anomalies))
    band = detector.threshold * spread
    return WindowFeatures(features, anomalies, centre, centre - band, centre + band)
