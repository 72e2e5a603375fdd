"""Training data from any metric source: CloudWatch (through an adapter), CSV or Parquet files.

Whatever the source, a service's history becomes one ``Dataset``: a metric frame on a regular
grid (a missing minute is an explicit NaN, so a gap is visible and measurable), the metrics it
lacked or had too little of (dropped, with the reason), and its coverage. ``split`` then holds
back the newest stretch for evaluation.

File format (CSV or Parquet): one row per timestamp, a ``timestamp`` column (ISO 8601, UTC
when no zone is given) and one numeric column per metric; optional ``cluster`` and ``service``
columns let one file carry many services.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from detection.frames import MetricFrameError, check_metric_frame
from training.metric_files import KEY_COLUMNS, read_metric_file


class HistorySource(Protocol):
    """Anything that returns a metric frame (metrics as columns) for a time range."""

    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


class DatasetError(ValueError):
    """History that cannot be trained on; the message says what it lacked."""


@dataclass(frozen=True)
class Dataset:
    """One service's history, checked and on a regular grid.

    ``dropped`` maps each configured metric that is not in ``frame`` to the reason;
    ``coverage`` is the observed fraction of each kept metric's grid points.
    """

    frame: pd.DataFrame
    freq: pd.Timedelta
    dropped: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def start(self) -> pd.Timestamp:
        return self.frame.index[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.frame.index[-1]

    @property
    def span(self) -> pd.Timedelta:
        return self.end - self.start + self.freq

    @property
    def points(self) -> int:
        return int(self.frame.notna().sum().sum())

    def notes(self) -> list[str]:
        """What a person should know about this history, one sentence each."""
        out = [f"{m}: {why}" for m, why in self.dropped.items()]
        gappy = {m: c for m, c in self.coverage.items() if c < 0.99}
        if gappy:
            out.append("gaps: " + ", ".join(f"{m} {100 * (1 - c):.1f}% missing"
                                             for m, c in sorted(gappy.items())))
        return out


class PerMetricSource:
    """Reads each metric from its own source, so a progress bar can advance per metric.

    ``sources`` maps a metric name to a source whose frame holds (at least) that metric.
    """

    def __init__(self, sources: Mapping[str, HistorySource]):
        self.sources = dict(sources)

    @property
    def metric_names(self) -> list[str]:
        return list(self.sources)

    def read(self, start: pd.Timestamp, end: pd.Timestamp,
             on_metric: Callable[[str], None] | None = None) -> pd.DataFrame:
        columns = {}
        for name, source in self.sources.items():
            frame = source.read(start, end)
            columns[name] = frame[name] if name in frame.columns else pd.Series(dtype=float)
            if on_metric is not None:
                on_metric(name)
        out = pd.DataFrame(columns)
        out.index.name = "timestamp"
        return out.sort_index()


class FrameSource:
    """A metric frame already in memory (e.g. from a file) as a history source."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        index = self.frame.index
        return self.frame[(index >= pd.Timestamp(start)) & (index < pd.Timestamp(end))]


def read_history_file(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet history file as float metric columns indexed by UTC timestamp, with its
    ``cluster``/``service`` columns kept (see :func:`select_service`).

    Read by the one metric-file reader; raises its MetricFileError naming the file and the line.
    """
    return read_metric_file(path).frame()


def select_service(frame: pd.DataFrame, cluster: str, service: str, path: str = "the file") -> pd.DataFrame:
    """The rows of one service from a file frame; a file without key columns is one service."""
    keys = [c for c in KEY_COLUMNS if c in frame.columns]
    if not keys:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    if "cluster" in keys:
        mask &= (frame["cluster"] == cluster).to_numpy()
    if "service" in keys:
        mask &= (frame["service"] == service).to_numpy()
    if not mask.any():
        known = sorted(frame["service"].astype(str).unique()) if "service" in keys else []
        raise DatasetError(f"{path} has no rows for {cluster}/{service}"
                           + (f"; services in it: {', '.join(known[:10])}" if known else ""))
    return frame.loc[mask].drop(columns=keys)


def infer_freq(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The typical spacing of ``index`` (the median step), at least one second."""
    if len(index) < 2:
        raise DatasetError("history has fewer than two timestamps; cannot tell its period")
    step = pd.Series(index).diff().dropna().median()
    return max(pd.Timedelta(step).round("s"), pd.Timedelta(seconds=1))


def build_dataset(history: pd.DataFrame, metrics: list[str] | None = None, *,
                  freq: pd.Timedelta | None = None, min_coverage: float = 0.5,
                  min_rows: int = 60) -> Dataset:
    """Check ``history`` and put it on a regular grid from its first to its last point.

    Parameters
    ----------
    history : metric frame (metrics as columns), any order, gaps allowed.
    metrics : the metrics wanted; each one absent, empty or below ``min_coverage`` is dropped
        with the reason. All columns when None.
    freq : the grid step; the median spacing of ``history`` when None.
    min_coverage : the observed fraction of grid points a metric needs to be kept.
    min_rows : the fewest observed rows worth training on.
    """
    wanted = list(metrics) if metrics is not None else list(history.columns)
    dropped = {m: "no history (not in the source)" for m in wanted if m not in history.columns}
    present = [m for m in wanted if m in history.columns]
    empty = [m for m in present if history[m].notna().sum() == 0]
    dropped.update({m: "no history (every point missing)" for m in empty})
    present = [m for m in present if m not in empty]
    if not present:
        raise DatasetError("no metric history: nothing to learn from"
                           + (f" ({'; '.join(f'{m}: {w}' for m, w in dropped.items())})" if dropped else ""))
    try:
        frame = check_metric_frame(history[present], min_rows=min_rows)
    except MetricFrameError as exc:
        raise DatasetError(f"history unusable: {exc}") from None
    frame = frame.dropna(how="all")
    step = pd.Timedelta(freq) if freq is not None else infer_freq(frame.index)
    start, end = frame.index[0].floor(step), frame.index[-1].floor(step)
    grid = pd.date_range(start, end, freq=step, tz="UTC", name="timestamp")
    if not frame.index.equals(grid):
        # Points off the grid (late or jittered timestamps) join the step they fall in.
        frame = frame.groupby(frame.index.floor(step)).mean().reindex(grid)
    coverage = {m: float(frame[m].notna().mean()) for m in present}
    thin = {m: c for m, c in coverage.items() if c < min_coverage}
    for m, c in thin.items():
        dropped[m] = f"only {100 * c:.0f}% of the window observed (needs {100 * min_coverage:.0f}%)"
    kept = [m for m in present if m not in thin]
    if not kept:
        raise DatasetError("every metric has too little history: "
                           + "; ".join(f"{m}: {why}" for m, why in dropped.items()))
    frame = frame[kept]
    frame.index.name = "timestamp"
    return Dataset(frame, step, dropped, {m: coverage[m] for m in kept})


@dataclass(frozen=True)
class Split:
    """A history split in time: ``train`` before ``tail_start``, the held-back ``tail`` after."""

    train: pd.DataFrame
    tail: pd.DataFrame | None
    note: str = ""


def split_tail(dataset: Dataset, holdout: pd.Timedelta, min_train: pd.Timedelta) -> Split:
    """Hold back the newest ``holdout`` of the history for evaluation.

    When holding it back would leave less than ``min_train`` to fit on (a cold start), nothing
    is held back and the note says the evaluation is skipped.
    """
    frame = dataset.frame
    if holdout <= pd.Timedelta(0):
        return Split(frame, None, "no tail held back (--holdout 0): evaluation skipped")
    tail_start = dataset.end + dataset.freq - holdout
    train, tail = frame[frame.index < tail_start], frame[frame.index >= tail_start]
    train_span = (train.index[-1] - train.index[0] + dataset.freq) if len(train) else pd.Timedelta(0)
    if train_span < min_train or tail.dropna(how="all").empty:
        return Split(frame, None, f"only {_days(dataset.span)} of history: too little to hold back "
                                  f"{_days(holdout)} and still fit on {_days(min_train)}; "
                                  "evaluation skipped")
    return Split(train, tail)


def _days(delta: pd.Timedelta) -> str:
    days = delta / pd.Timedelta(days=1)
    return f"{days:.1f} days" if days >= 1 else f"{delta / pd.Timedelta(hours=1):.1f} hours"
