"""Fit the per-metric seasonal baselines and the z-score detector, and save them as a bundle.

The first, single-service path (used by the demo until it trains through
``training.pipeline.train_service``); the pipeline does the same with evaluation, stores,
tracking and promotion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from detection.frames import MetricFrameError, check_metric_frame
from detection.zscore import RobustZDetector
from models.bundle import save_bundle
from models.signing import SigningKey
from training.errors import TrainingError

__all__ = ["HistorySource", "TrainingError", "TrainingResult", "train_detector"]


class HistorySource(Protocol):
    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


@dataclass(frozen=True)
class TrainingResult:
    detector: RobustZDetector
    bundle: Path
    points: int
    metrics: list[str]
    resolution: str
    start: pd.Timestamp
    end: pd.Timestamp


def train_detector(source: HistorySource, end: pd.Timestamp, days: int, bundle_dir: Path,
                   threshold: float = 4.0, *, key: SigningKey) -> TrainingResult:
    """Read ``days`` of history ending at ``end``, fit the detector, write the bundle signed
    with ``key``."""
    start = pd.Timestamp(end) - pd.Timedelta(days=days)
    history = source.read(start, end)
    present = [c for c in history.columns if history[c].notna().any()]
    if not present:
        raise TrainingError(f"no metric history between {start:%Y-%m-%d %H:%M} and "
                            f"{pd.Timestamp(end):%Y-%m-%d %H:%M}: nothing to learn from")
    try:
        frame = check_metric_frame(history[present], min_rows=60)
    except MetricFrameError as exc:
        raise TrainingError(f"history unusable: {exc}") from None
    detector = RobustZDetector(threshold=threshold).fit(frame)
    window = (frame.index[0].isoformat(), frame.index[-1].isoformat())
    path = save_bundle(detector, {"detector": "robust_z", "threshold": threshold, "days": days},
                       bundle_dir, key=key, metrics=present, data_window=window)
    return TrainingResult(detector, path, int(frame.notna().sum().sum()), present,
                          detector.baseline_.resolution_, frame.index[0], frame.index[-1])
