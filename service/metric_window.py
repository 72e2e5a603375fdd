"""An incident's metric window, kept in its log so its plots outlive CloudWatch and the demo.

CloudWatch keeps one-minute points for 15 days and the demo's local endpoint is gone when the
demo ends, yet a person opens an incident's page weeks later. So the watcher records a
``metrics_window`` event when it opens an incident and another when it verifies it: for each
metric, the observations and the baseline's centre and band at every scoring period, as plain
JSON lists on a regular grid (``start``, ``step_seconds``; a missing point is ``null``). Two
windows of five metrics are a few kilobytes.

:func:`capture_window` builds the payload from the watcher's window and detector;
:func:`incident_series` merges an incident's recorded windows back into one frame per metric
(the dashboard and the notebooks plot them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

EVENT = "metrics_window"
SERIES = ("observed", "expected", "lower", "upper")
SIGNIFICANT_DIGITS = 6


def _compact(values: np.ndarray) -> list[float | None]:
    """Floats rounded to a few significant digits, NaN and infinities as None (JSON null)."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=float):
        out.append(float(f"{v:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(v) else None)
    return out


def baseline_band(detector: Any, index: pd.DatetimeIndex,
                  metrics: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per metric, the baseline's centre, lower and upper edge at ``index``.

    The band is the one the detector's anomalies carry: ``width`` spreads either side of the
    centre, where ``width`` is the ensemble's ``band_z_`` for that metric or the z-score
    detector's ``threshold``. A detector without a seasonal baseline gives its centre only
    (the edges are NaN).
    """
    centre = detector.expected_frame(index, metrics)
    baseline = getattr(detector, "baseline_", None)
    widths = getattr(detector, "band_z_", None)
    out = {}
    for metric in centre.columns:
        mid = centre[metric].to_numpy(dtype=float)
        if baseline is None:
            nan = np.full(len(index), np.nan)
            out[metric] = (mid, nan, nan)
            continue
        spread = np.asarray(baseline.expected(metric, index).spread, dtype=float)
        width = float(widths[metric]) if widths is not None and metric in widths else \
            float(detector.threshold)
        out[metric] = (mid, mid - width * spread, mid + width * spread)
    return out


def capture_window(detector: Any, window: pd.DataFrame, period: pd.Timedelta, phase: str) -> dict:
    """The ``metrics_window`` payload of ``window`` (metrics as columns, UTC index).

    Parameters
    ----------
    detector : the watcher's detector (``expected_frame``; ``baseline_`` and ``band_z_`` or
        ``threshold`` for the band).
    window : the observations the watcher read.
    period : the scoring period: the grid the lists follow.
    phase : why it was recorded (``opened``, ``verification``).
    """
    observed = window.dropna(how="all")
    if observed.empty:
        return {"phase": phase, "start": None, "step_seconds": int(period.total_seconds()), "metrics": {}}
    start, end = observed.index.min(), observed.index.max()
    grid = pd.date_range(start, end, freq=period)
    frame = window.reindex(grid)
    bands = baseline_band(detector, grid, list(frame.columns))
    metrics = {}
    for metric in frame.columns:
        centre, lower, upper = bands.get(metric, (np.full(len(grid), np.nan),) * 3)
        metrics[metric] = {"observed": _compact(frame[metric].to_numpy(dtype=float)),
                           "expected": _compact(centre), "lower": _compact(lower),
                           "upper": _compact(upper)}
    return {"phase": phase, "start": start.isoformat(), "step_seconds": int(period.total_seconds()),
            "metrics": metrics}


def window_frames(payload: dict) -> dict[str, pd.DataFrame]:
    """One recorded window as a frame per metric (columns: observed, expected, lower, upper).

    Raises ValueError naming what is wrong when the payload is not a recorded window.
    """
    try:
        start = pd.Timestamp(payload["start"])
        step = pd.Timedelta(seconds=int(payload["step_seconds"]))
        metrics = payload["metrics"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a {EVENT} payload: {exc}") from None
    out = {}
    for metric, series in metrics.items():
        length = max((len(series.get(s) or []) for s in SERIES), default=0)
        index = pd.date_range(start, periods=length, freq=step)
        columns = {s: pd.to_numeric(pd.Series((series.get(s) or [None] * length)[:length],
                                              dtype=object), errors="coerce").to_numpy(dtype=float)
                   for s in SERIES}
        out[metric] = pd.DataFrame(columns, index=index)
    return out


def incident_series(events: list[dict]) -> dict[str, pd.DataFrame]:
    """Every ``metrics_window`` event of an incident's timeline merged, per metric.

    Later windows win where two overlap; the frames are sorted by time. Returns an empty dict
    when the incident has no recorded window (an incident older than this record, say).
    """
    merged: dict[str, pd.DataFrame] = {}
    for event in events:
        if event.get("kind") != EVENT or not (event.get("data") or {}).get("start"):
            continue
        for metric, frame in window_frames(event["data"]).items():
            before = merged.get(metric)
            merged[metric] = frame if before is None else frame.combine_first(before)
    return {m: f.sort_index() for m, f in merged.items()}
