"""Robust z-score detector: how many spreads a point lies from its hour-of-week centre."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly
from detection.baseline import Expected, SeasonalBaseline
from detection.frames import check_known_metrics, check_metric_frame
from detection.metrics import MetricSpec, spec_for


def by_direction(z: np.ndarray, direction: str) -> np.ndarray:
    """A signed deviation turned into a score that is high only in the metric's bad direction.

    ``up``: a rise scores its z and a drop scores 0; ``down`` the reverse; ``both``: ``|z|``.
    NaN (a missing point) stays NaN.
    """
    z = np.asarray(z, dtype=float)
    if direction == "up":
        return np.where(np.isnan(z), np.nan, np.maximum(z, 0.0))
    if direction == "down":
        return np.where(np.isnan(z), np.nan, np.maximum(-z, 0.0))
    return np.abs(z)


DIRECTION_CODES = {"both": 0, "up": 1, "down": 2}


def by_directions(z: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``by_direction`` for many metrics at once: ``codes`` (``DIRECTION_CODES``, broadcast
    against ``z``) says each value's direction. Element for element the same numbers."""
    with np.errstate(invalid="ignore"):
        up = np.where(np.isnan(z), np.nan, np.maximum(z, 0.0))
        down = np.where(np.isnan(z), np.nan, np.maximum(-z, 0.0))
    return np.where(codes == 1, up, np.where(codes == 2, down, np.abs(z)))


def deviation_z(values: np.ndarray, exp: Expected, tolerant: bool = False) -> np.ndarray:
    """How many spreads ``values`` lie from the expected centre, signed.

    ``tolerant``: measured from the edge of ``exp.tolerance`` instead (0 within it), for a
    score calibrated on training z's, which never include a slot whose level the history could
    only carry over from the other day type (``SeasonalBaseline.tolerance_``).
    """
    resid = np.asarray(values, dtype=float) - exp.centre
    if tolerant:
        resid = np.sign(resid) * np.maximum(np.abs(resid) - exp.tolerance, 0.0)
    return resid / exp.spread


class RobustZDetector:
    """Flags points more than ``threshold`` robust spreads from their seasonal centre.

    Scores follow one convention: higher is more anomalous, signed by each metric's bad
    direction (a CPU drop scores 0, a CPU rise scores its z).

    Parameters
    ----------
    threshold : the score above which a point is an anomaly.
    baseline : an unfitted SeasonalBaseline to fit (a default one when None).
    specs : metric specs (labels, units, directions).
    """

    def __init__(self, threshold: float = 4.0, baseline: SeasonalBaseline | None = None,
                 specs: dict[str, MetricSpec] | None = None):
        self.threshold = threshold
        self.baseline = baseline
        self.specs = specs

    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "RobustZDetector":
        """Fit the seasonal baseline of every metric in ``history``."""
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        base = self.baseline if self.baseline is not None else SeasonalBaseline(specs=self.specs)
        self.baseline_ = base.fit(history, exclude=exclude)
        self.metrics_ = list(self.baseline_.metrics_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "baseline_"):
            raise RuntimeError("RobustZDetector is not fitted; call fit(history) first")

    def score(self, frame: pd.DataFrame, tolerant: bool = False) -> pd.DataFrame:
        """Scores for every known metric in ``frame`` (NaN where the point is missing).

        ``tolerant`` measures deviations from the edge of the baseline's tolerance
        (``deviation_z``). Off by default: the fixed threshold of 4 widened spreads already
        covers a carried-over day type, and ``detect`` must match the 168-slot table scorer,
        which reads centre and spread only. The ensemble, which calibrates its z's on training
        z's, turns it on.
        """
        self._check_fitted()
        frame = check_known_metrics(frame, self.metrics_, "baseline")
        return pd.DataFrame({m: self._score_metric(m, frame[m], tolerant) for m in frame.columns},
                            index=frame.index)

    def _score_metric(self, metric: str, values: pd.Series, tolerant: bool = False) -> np.ndarray:
        exp = self.baseline_.expected(metric, values.index)
        z = deviation_z(values.to_numpy(), exp, tolerant)
        return by_direction(z, spec_for(metric, self.specs).direction)

    def detect(self, frame: pd.DataFrame) -> list[Anomaly]:
        """Every point of ``frame`` scoring above the threshold, as an explained Anomaly."""
        scores = self.score(frame)
        frame = check_metric_frame(frame)
        found: list[Anomaly] = []
        for metric in scores.columns:
            hits = scores.index[scores[metric].to_numpy() > self.threshold]
            if len(hits) == 0:
                continue
            exp = self.baseline_.expected(metric, hits)
            for i, ts in enumerate(hits):
                centre, spread = exp.centre[i], exp.spread[i]
                found.append(Anomaly.build(
                    metric, ts, frame.at[ts, metric], centre,
                    centre - self.threshold * spread, centre + self.threshold * spread,
                    scores.at[ts, metric], self.specs))
        return sorted(found, key=lambda a: (a.timestamp, a.metric))

    def expected_frame(self, index: pd.DatetimeIndex, metrics: list[str]) -> pd.DataFrame:
        """The baseline centre of each fitted metric in ``metrics`` at ``index``."""
        self._check_fitted()
        return pd.DataFrame({m: self.baseline_.expected(m, index).centre
                             for m in metrics if m in self.metrics_}, index=index)

    def within_baseline(self, frame: pd.DataFrame, metrics: list[str]) -> dict[str, bool]:
        """Per metric, whether the median score of ``frame`` is under the threshold.

        Verification uses this: a single noisy minute should neither pass nor fail a fix.
        """
        scores = self.score(frame[[m for m in metrics if m in frame.columns]])
        return {m: bool(np.nanmedian(scores[m].to_numpy()) <= self.threshold)
                for m in scores.columns if scores[m].notna().any()}
