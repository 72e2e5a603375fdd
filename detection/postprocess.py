"""Post-processing any detector's raw scores: calibration to [0, 1], a threshold, alarm grouping.

These are small objects that a configuration switches on and off, kept out of the detectors
(Merlion's ``post_rule``): a detector only produces raw scores, higher meaning more anomalous.

* ``TailCalibrator`` maps raw scores onto one comparable scale in [0, 1]: the empirical
  distribution function of the training scores (scikit-learn's ``QuantileTransformer``) up to
  the ``tail_quantile``, and above it an exponential tail fitted to the training scores that
  exceed it (peaks over threshold; the mean excess is the exponential's maximum-likelihood
  scale). A calibrated score of 0.999 then reads the same for every detector and metric: about
  one normal training point in a thousand scores higher. The tail keeps ranking points beyond
  anything seen in training (an empirical CDF alone would give them all exactly 1) and never
  reaches 1. It is monotone (non-decreasing) in the raw score and keeps NaN as NaN.
* ``AlarmGrouper`` turns per-point decisions into alarms: an alarm opens when ``min_points``
  anomalous points fall within ``window``; later anomalous points join it (no new alarm) until
  ``cooldown`` passes without one.
* ``PostProcessor`` chains them from a ``PostProcessConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils.validation import check_is_fitted, validate_data


class TailCalibrator(TransformerMixin, BaseEstimator):
    """Raw scores (one column per score) to [0, 1]: empirical CDF with an exponential tail.

    Parameters
    ----------
    n_quantiles : quantiles the empirical CDF keeps (capped at the number of training rows).
    tail_quantile : where the exponential tail takes over from the empirical CDF.
    fallback_scale : for a column whose training scores are all equal beyond rounding noise (a
        constant history: no distribution to learn), the calibrated score is
        ``1 - exp(-(x - u) / fallback_scale)`` above that value ``u`` and 0 at or below it.
        Raw scores measured in robust spreads make 1.0 a neutral choice: 0.9999 is then 9.2
        spreads above the constant.
    """

    def __init__(self, n_quantiles: int = 1000, tail_quantile: float = 0.99,
                 fallback_scale: float = 1.0):
        self.n_quantiles = n_quantiles
        self.tail_quantile = tail_quantile
        self.fallback_scale = fallback_scale

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y=None) -> "TailCalibrator":
        """Learn each column's empirical distribution and tail from training scores ``X``."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        """``fit(X).transform(X)``, the same values, looked up in sorted order (see ``_fit``)."""
        X, order, ordered = self._fit(X)
        return _unsort(self._transform(ordered), order)

    def fit_surprise(self, X) -> np.ndarray:
        """``fit(X).surprise(X)``, the same values, looked up in sorted order (see ``_fit``)."""
        X, order, ordered = self._fit(X)
        return _unsort(self._surprise(ordered), order)

    def _fit(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fit on ``X``; the checked ``X``, the order that sorts each column and the sorted columns.

        The quantiles do not depend on the order of the rows, and numpy's selection finds them
        about three times faster in columns already sorted. A column's calibrated values do not
        depend on the order either (each is its own lookup), and the lookups are several times
        faster in sorted order too (``np.interp`` starts each search where the last one ended):
        so calibrating the training scores themselves (``fit_surprise``, ``fit_transform``: the
        ensemble calibrates every training minute of every member) sorts once by index and
        looks the values up in that order, the same values bit for bit.
        """
        if not (isinstance(self.n_quantiles, (int, np.integer)) and self.n_quantiles >= 2):
            raise ValueError(f"n_quantiles must be an integer >= 2, got {self.n_quantiles!r}")
        if not 0 < self.tail_quantile < 1:
            raise ValueError(f"tail_quantile must be in (0, 1), got {self.tail_quantile}")
        if not self.fallback_scale > 0:
            raise ValueError(f"fallback_scale must be positive, got {self.fallback_scale}")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        order = np.argsort(X, axis=0, kind="stable")
        ordered = sorted_ = np.take_along_axis(X, order, axis=0)
        zeros = ordered == 0
        if zeros.any() and np.signbit(ordered[zeros]).any():
            # -0.0 and 0.0 tie: the quantiles are taken on np.sort's arrangement of them
            sorted_ = np.sort(X, axis=0)
        self.quantiles_ = QuantileTransformer(n_quantiles=min(self.n_quantiles, X.shape[0]),
                                              output_distribution="uniform",
                                              subsample=None).fit(sorted_)
        with np.errstate(all="ignore"):
            start = (np.nanquantile(sorted_, self.tail_quantile, axis=0) if X.size
                     else np.zeros(X.shape[1]))
        start = np.where(np.isnan(start), 0.0, start)
        scale = np.empty(X.shape[1])
        degenerate = np.zeros(X.shape[1], dtype=bool)
        for j in range(X.shape[1]):
            column = X[:, j]
            excess = column[column > start[j]] - start[j]
            mean_excess = float(excess.mean()) if excess.size else 0.0
            # rounding noise above a constant column (1e-15) is no tail to extrapolate from
            degenerate[j] = mean_excess <= 1e-9 * max(1.0, abs(float(start[j])))
            scale[j] = self.fallback_scale if degenerate[j] else mean_excess
        self.tail_start_ = start
        self.tail_scale_ = scale
        # the share of training scores at or below the tail's start, as a plotting position
        # (n + 1 in the denominator) so that even a constant column leaves room for a tail
        counted = (~np.isnan(X)).sum(axis=0)
        level = (X <= start[None, :]).sum(axis=0) / (counted + 1.0)
        self.tail_level_ = np.where(degenerate, 0.0, level)
        return X, order, ordered

    def transform(self, X) -> np.ndarray:
        """Calibrated scores in [0, 1), same shape as ``X``; NaN stays NaN."""
        check_is_fitted(self, "quantiles_")
        return self._transform(validate_data(self, X, reset=False, ensure_all_finite="allow-nan",
                                             dtype=np.float64))

    def _transform(self, X: np.ndarray) -> np.ndarray:
        level = self.tail_level_[None, :]
        body = np.minimum(self.quantiles_.transform(X), level)
        with np.errstate(invalid="ignore", over="ignore"):
            above = np.maximum(X - self.tail_start_[None, :], 0.0) / self.tail_scale_[None, :]
            tail = level + (1.0 - level) * (-np.expm1(-above))
            out = np.where(X > self.tail_start_[None, :], np.maximum(tail, level), body)
        return np.where(np.isnan(X), np.nan, out)

    def surprise(self, X) -> np.ndarray:
        """``-log(1 - transform(X))``: the calibrated tail probability on a log scale, >= 0.

        Unbounded and exact where ``transform`` rounds to 1; a calibrated-uniform score is
        Exp(1) here, which is what makes combined scores calibrate well again.
        """
        check_is_fitted(self, "quantiles_")
        return self._surprise(validate_data(self, X, reset=False, ensure_all_finite="allow-nan",
                                            dtype=np.float64))

    def _surprise(self, X: np.ndarray) -> np.ndarray:
        level = self.tail_level_[None, :]
        body = -np.log1p(-np.minimum(self.quantiles_.transform(X), level))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            above = np.maximum(X - self.tail_start_[None, :], 0.0) / self.tail_scale_[None, :]
            tail = -np.log1p(-level) + above
        out = np.where(X > self.tail_start_[None, :], tail, body)
        return np.where(np.isnan(X), np.nan, out)

    def inverse_transform(self, X) -> np.ndarray:
        """The raw score that calibrates to each value of ``X`` (used to draw bands)."""
        check_is_fitted(self, "quantiles_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        level = self.tail_level_[None, :]
        body = self.quantiles_.inverse_transform(np.clip(X, 0.0, 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.clip((X - level) / (1.0 - level), 0.0, 1.0)
            tail = self.tail_start_[None, :] - self.tail_scale_[None, :] * np.log1p(-frac)
        return np.where(X > level, tail, body)


def _unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values`` computed on columns sorted by ``order`` (``np.argsort(X, axis=0)``), put back
    in the rows of ``X``."""
    out = np.empty_like(values)
    np.put_along_axis(out, order, values, axis=0)
    return out


@dataclass(frozen=True)
class GroupingConfig:
    """When anomalous points make an alarm.

    Parameters
    ----------
    min_points : anomalous points needed within ``window`` to open an alarm.
    window : how close together those points must be (a duration, e.g. ``"3min"``).
    cooldown : an open alarm absorbs anomalous points until this long passes without one;
        only then can a new alarm open.
    """

    min_points: int = 2
    window: str = "3min"
    cooldown: str = "15min"

    def checked(self) -> "GroupingConfig":
        """Self, after checking every field; raises ValueError naming the bad one."""
        if not (isinstance(self.min_points, int) and self.min_points >= 1):
            raise ValueError(f"grouping min_points must be a positive integer, got {self.min_points!r}")
        for name in ("window", "cooldown"):
            try:
                value = pd.Timedelta(getattr(self, name))
            except ValueError:
                raise ValueError(f"grouping {name} must be a duration like '3min', "
                                 f"got {getattr(self, name)!r}") from None
            if value < pd.Timedelta(0) or (name == "window" and value == pd.Timedelta(0)):
                raise ValueError(f"grouping {name} must be positive, got {getattr(self, name)!r}")
        return self


@dataclass(frozen=True)
class Alarm:
    """One burst of anomalous points, opened when enough of them came close together.

    ``opened_at`` is when the alarm would have fired live (the ``min_points``-th point);
    ``start`` and ``end`` are its first and last anomalous points; ``metrics`` are the columns
    that crossed the threshold during it.
    """

    opened_at: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp
    points: int
    peak: float
    metrics: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"opened_at": self.opened_at.isoformat(), "start": self.start.isoformat(),
                "end": self.end.isoformat(), "points": self.points, "peak": self.peak,
                "metrics": list(self.metrics)}


class AlarmGrouper:
    """Groups thresholded scores into alarms (Merlion's ``AggregateAlarms``, by time)."""

    def __init__(self, config: GroupingConfig | None = None):
        self.config = config

    def group(self, scores: pd.DataFrame | pd.Series, threshold: float) -> list[Alarm]:
        """Alarms from ``scores`` (time index; one column per metric) above ``threshold``."""
        config = (self.config or GroupingConfig()).checked()
        if isinstance(scores, pd.Series):
            scores = scores.to_frame(scores.name or "score")
        if not isinstance(scores.index, pd.DatetimeIndex):
            raise ValueError("scores need a DatetimeIndex to be grouped into alarms")
        scores = scores.sort_index()
        hot = scores.gt(threshold)
        rows = hot.any(axis=1).to_numpy()
        times, peaks = scores.index[rows], scores[rows].max(axis=1).to_numpy()
        which = hot[rows]
        window, cooldown = pd.Timedelta(config.window), pd.Timedelta(config.cooldown)
        alarms: list[Alarm] = []
        pending: list[int] = []
        current: dict | None = None
        for i, t in enumerate(times):
            if current is not None and t - current["end"] <= cooldown:
                current.update(end=t, points=current["points"] + 1,
                               peak=max(current["peak"], peaks[i]),
                               metrics=current["metrics"] | set(which.columns[which.iloc[i].to_numpy()]))
                continue
            if current is not None:
                alarms.append(_alarm(current, list(which.columns)))
                current = None
            pending = [j for j in pending if times[j] > t - window] + [i]
            if len(pending) >= config.min_points:
                hit = which.iloc[pending].any(axis=0)
                current = {"opened_at": t, "start": times[pending[0]], "end": t,
                           "points": len(pending), "peak": float(peaks[pending].max()),
                           "metrics": set(hit.index[hit.to_numpy()])}
                pending = []
        if current is not None:
            alarms.append(_alarm(current, list(which.columns)))
        return alarms


def _alarm(state: dict, order: list[str]) -> Alarm:
    metrics = tuple(m for m in order if m in state["metrics"])
    return Alarm(state["opened_at"], state["start"], state["end"], state["points"],
                 float(state["peak"]), metrics)


@dataclass(frozen=True)
class PostProcessConfig:
    """Which post-processing steps run, and their settings.

    Parameters
    ----------
    calibrate : map raw scores to [0, 1] with a TailCalibrator fitted on training scores;
        when False the threshold applies to the raw scores.
    n_quantiles, tail_quantile, fallback_scale : the TailCalibrator's settings.
    threshold : the (calibrated) score above which a point is anomalous.
    grouping : how anomalous points make alarms; None makes every anomalous point its own
        alarm.
    """

    calibrate: bool = True
    n_quantiles: int = 1000
    tail_quantile: float = 0.99
    fallback_scale: float = 1.0
    threshold: float = 0.999
    grouping: GroupingConfig | None = field(default_factory=GroupingConfig)

    def calibrator(self) -> TailCalibrator:
        return TailCalibrator(self.n_quantiles, self.tail_quantile, self.fallback_scale)


class PostProcessor:
    """Calibrate, threshold and group one detector's raw scores, as its config says."""

    def __init__(self, config: PostProcessConfig | None = None):
        self.config = config

    def fit(self, training_scores: pd.DataFrame) -> "PostProcessor":
        """Fit the calibrator (when on) to the detector's training scores, one column each."""
        config = self.config or PostProcessConfig()
        if config.calibrate and not 0 < config.threshold < 1:
            raise ValueError(f"a calibrated threshold must be in (0, 1), got {config.threshold}")
        if config.grouping is not None:
            config.grouping.checked()
        self.columns_ = list(training_scores.columns)
        self.calibrator_ = (config.calibrator().fit(training_scores.to_numpy())
                            if config.calibrate else None)
        self.threshold_ = float(config.threshold)
        return self

    def transform(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Calibrated scores (or the raw ones when calibration is off), same shape."""
        if not hasattr(self, "columns_"):
            raise RuntimeError("PostProcessor is not fitted; call fit(training_scores) first")
        if self.calibrator_ is None:
            return scores
        values = self.calibrator_.transform(scores[self.columns_].to_numpy())
        return pd.DataFrame(values, index=scores.index, columns=self.columns_)

    def flags(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Whether each (post-processed) point is above the threshold."""
        return self.transform(scores).gt(self.threshold_)

    def alarms(self, scores: pd.DataFrame) -> list[Alarm]:
        """Alarms from raw ``scores``: grouped as configured, or one per anomalous point."""
        calibrated = self.transform(scores)
        grouping = (self.config or PostProcessConfig()).grouping
        if grouping is None:
            grouping = GroupingConfig(min_points=1, window="1ns", cooldown="0s")
        return AlarmGrouper(grouping).group(calibrated, self.threshold_)
