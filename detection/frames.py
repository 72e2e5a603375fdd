"""Validation of metric frames: the one place that says what a usable time series is."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MetricFrameError(ValueError):
    """A metric frame that cannot be used, with the reason a person can act on."""


def check_metric_frame(frame: pd.DataFrame, *, min_rows: int = 1) -> pd.DataFrame:
    """Return ``frame`` as float columns on a sorted, unique, UTC DatetimeIndex.

    Raises MetricFrameError naming what is wrong: not a DatetimeIndex, no columns, too few rows,
    non-numeric values, infinities. NaN is kept (a missing point), duplicates are averaged.
    """
    if not isinstance(frame, pd.DataFrame):
        raise MetricFrameError(f"expected a DataFrame of metrics, got {type(frame).__name__}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise MetricFrameError("metric frame needs a DatetimeIndex of timestamps")
    if frame.shape[1] == 0:
        raise MetricFrameError("metric frame has no metric columns")
    try:
        values = frame.astype(float)
    except (TypeError, ValueError) as exc:
        raise MetricFrameError(f"metric values must be numeric: {exc}") from None
    if np.isinf(values.to_numpy()).any():
        bad = [c for c in values.columns if np.isinf(values[c].to_numpy()).any()]
        raise MetricFrameError(f"metric values must be finite; infinity in {', '.join(bad)}")
    index = values.index
    values.index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if values.index.has_duplicates:
        values = values.groupby(level=0).mean()
    values = values.sort_index()
    usable = int(values.notna().to_numpy().any(axis=1).sum())
    if usable < min_rows:
        raise MetricFrameError(f"metric frame has {usable} usable rows; at least {min_rows} needed")
    return values


def check_known_metrics(frame: pd.DataFrame, fitted: list[str], what: str = "baseline") -> pd.DataFrame:
    """``check_metric_frame(frame)``, refusing any metric the estimator was not fitted on."""
    frame = check_metric_frame(frame)
    unknown = [c for c in frame.columns if c not in fitted]
    if unknown:
        raise KeyError(f"no {what} for metric(s) {', '.join(unknown)}; fitted: {', '.join(fitted)}")
    return frame
