"""The streaming-detector protocol, and a plain rolling robust z-score that follows it.

The protocol is how a single-metric detector is replayed as a stream (``aiops benchmark nab``,
``aiops detect``): one call over a whole series, whose answer at row ``i`` may use rows
``0..i`` only, so that the batch call gives exactly what a live detector fed one row at a
time would have said. Vectorised implementations are welcome as long as they never look
ahead; the benchmark checks this on prefixes.

``RollingRobustZ`` is the honest baseline the real detectors are measured against: each row
is compared with the median and inter-quartile spread of the rows before it, nothing more
(no seasonality, no alarm grouping).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

IQR_TO_SIGMA = 1.349  # the inter-quartile range of a normal distribution, in standard deviations


@runtime_checkable
class StreamingDetector(Protocol):
    """A single-metric detector replayed as a stream.

    ``fit_predict_stream(values, timestamps)`` returns one anomaly score per row, in [0, 1],
    higher meaning more anomalous. Element ``i`` depends only on ``values[:i + 1]`` and
    ``timestamps[:i + 1]``: appending rows never changes the scores of earlier rows. Each call
    starts from scratch (no state carried over from an earlier call). ``values`` is a float
    array that may hold NaN for a missing value; ``timestamps`` is in file order and may hold
    duplicates, gaps and uneven spacing.
    """

    def fit_predict_stream(self, values: np.ndarray, timestamps: pd.DatetimeIndex) -> np.ndarray: ...


class RollingRobustZ:
    """How unusual each row is against the median and spread of the ``window`` rows before it.

    The raw score is the robust z ``|x_i - median| / (IQR / 1.349)`` over rows
    ``max(0, i - window) .. i - 1``; it is calibrated to [0, 1] as ``z / (z + z_half)``, so
    that a row ``z_half`` spreads away scores 0.5 (the detector's default ``threshold``).

    Defined behaviour on awkward input: rows before ``min_periods`` earlier values exist score 0
    (warm-up); a NaN value scores 0 and is left out of the statistics; on a constant stretch
    (zero spread) a row equal to it scores 0 and any other value scores 1; an empty series
    gives an empty array. Infinite values are refused with a ValueError.

    Parameters
    ----------
    window : how many earlier rows make the reference (at least 2).
    min_periods : earlier non-missing rows needed before scoring (at least 2, at most window).
    z_half : the robust z that maps to score 0.5 (positive).
    threshold : the score at or above which a row is an anomaly, in (0, 1).
    """

    def __init__(self, window: int = 288, min_periods: int = 30, z_half: float = 4.0,
                 threshold: float = 0.5):
        self.window = window
        self.min_periods = min_periods
        self.z_half = z_half
        self.threshold = threshold

    def get_params(self) -> dict:
        return {"window": self.window, "min_periods": self.min_periods, "z_half": self.z_half,
                "threshold": self.threshold}

    def _validate(self) -> None:
        if not (isinstance(self.window, int) and self.window >= 2):
            raise ValueError(f"window must be an integer >= 2, got {self.window!r}")
        if not (isinstance(self.min_periods, int) and 2 <= self.min_periods <= self.window):
            raise ValueError(f"min_periods must be an integer in [2, window={self.window}], "
                             f"got {self.min_periods!r}")
        if not self.z_half > 0:
            raise ValueError(f"z_half must be positive, got {self.z_half!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")

    def fit_predict_stream(self, values: np.ndarray, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """Scores in [0, 1], row ``i`` from rows ``0..i`` only (see the class docstring)."""
        self._validate()
        x = np.asarray(values, dtype=float)
        if x.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {x.shape}")
        if len(timestamps) != len(x):
            raise ValueError(f"{len(x)} values but {len(timestamps)} timestamps")
        if np.isinf(x).any():
            raise ValueError(f"values hold infinity at row {int(np.flatnonzero(np.isinf(x))[0])}")
        if len(x) == 0:
            return np.zeros(0)
        past = pd.Series(x).shift(1).rolling(self.window, min_periods=self.min_periods)
        centre = past.median().to_numpy()
        spread = (past.quantile(0.75) - past.quantile(0.25)).to_numpy() / IQR_TO_SIGMA
        # Quantised or mostly-flat series have a zero IQR while still varying: fall back to the
        # standard deviation there, so one rare value is not infinitely surprising.
        spread = np.where(spread > 0, spread, past.std(ddof=0).to_numpy())
        deviation = np.abs(x - centre)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(spread > 0, deviation / spread, np.where(deviation > 0, np.inf, 0.0))
            score = np.where(np.isinf(z), 1.0, z / (z + self.z_half))
        return np.nan_to_num(score, nan=0.0)
