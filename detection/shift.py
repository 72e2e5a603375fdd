"""Level-shift detector: how far each metric's last minutes moved from the minutes before them.

The seasonal members judge a point against what the history says the level should be at that
hour; when the history cannot say (a Saturday judged by three weekdays, a service whose traffic
changed for good) they must tolerate a wide band, and a fault that lifts a metric by half hides
inside it. A sudden change needs no level: the median of the last ``recent`` minus the median of
the ``reference`` before it, in robust spreads of that same difference over the training
history, is large for a step (a load surge, a bad deploy, a slow dependency) and small for
noise. It is taken on the deviation from the seasonal baseline's centre, so a step the calendar
explains (the simulated traffic's jump at midnight from a Sunday to a Monday, a nightly job the
history knows) is no shift; the hour-to-hour steps of the baseline's own buckets are in the
training history and calibrated away. Only the part of a move beyond the centre counts: a
metric that climbs back to its centre from below (a service scaled back down after a scale-up:
its CPU per task returns to normal) shows no symptom, and one that jumps from below the centre
to above it counts from the centre. It is the "shift" evidence of the
streaming detector (``detection.streaming``), per metric and in durations, not rows, so one-minute
and five-minute data are treated alike.

Every score uses the point and its past only. A row whose frame does not reach
``recent + reference / 2`` back scores NaN (no evidence either way): the watcher hands the
detector its whole read window, so only the first rows of a fresh frame lack context. Scores
follow the project's convention: higher is more anomalous, in the metric's bad direction only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detection.baseline import MAD_TO_SIGMA, SeasonalBaseline, fitted_baseline, spread_floor
from detection.frames import MetricFrameError, check_known_metrics, check_metric_frame
from detection.metrics import MetricSpec, spec_for
from detection.rolling import rolling_median_over
from detection.seasonal import fitted_threshold, mask_ranges
from detection.zscore import by_direction


def _duration(value: str, name: str) -> pd.Timedelta:
    try:
        out = pd.Timedelta(value)
    except ValueError:
        raise ValueError(f"{name} must be a duration like '3min', got {value!r}") from None
    if out <= pd.Timedelta(0):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return out


def level_shift(values: pd.Series, recent: pd.Timedelta, reference: pd.Timedelta) -> np.ndarray:
    """Median of ``(t - recent, t]`` minus median of ``(t - recent - reference, t - recent]``.

    NaN where the series does not reach ``recent + reference / 2`` before ``t``, or where either
    window holds no value. Works on any sorted DatetimeIndex (uneven sampling included).
    """
    now, before = _medians(values, recent, reference)
    return now - before


def outward_shift(deviation: pd.Series, recent: pd.Timedelta, reference: pd.Timedelta) -> np.ndarray:
    """The part of :func:`level_shift` of a deviation from a centre (0) that moved away from it.

    Up: ``now - max(before, 0)`` when ``now`` is above 0 and beyond ``before``; down, the mirror
    image; 0 otherwise. A return towards the centre is 0, a jump across it counts from the
    centre.
    """
    return _outward(*_medians(deviation, recent, reference))


def _outward(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """:func:`outward_shift` from the two windows' medians."""
    with np.errstate(invalid="ignore"):
        up = np.where(now > 0, np.maximum(now - np.maximum(before, 0.0), 0.0), 0.0)
        down = np.where(now < 0, np.minimum(now - np.minimum(before, 0.0), 0.0), 0.0)
        return np.where(np.isnan(now) | np.isnan(before), np.nan, up + down)


def _medians(values: pd.Series, recent: pd.Timedelta,
             reference: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the median of the last ``recent`` and of the ``reference`` before it (NaN where
    the series does not reach ``recent + reference / 2`` back)."""
    if values.empty:
        return np.empty(0), np.empty(0)
    now = rolling_median_over(values, recent)
    # the reference window ending t - recent, ...
    before = pd.Series(rolling_median_over(values, reference), index=values.index + recent)
    before = before[~before.index.duplicated(keep="last")]
    at = before.reindex(values.index, method="ffill")  # ... read at t (the last one not after t)
    covered = (values.index - values.index[0]) >= recent + reference / 2
    return np.where(covered, now, np.nan), np.where(covered, at.to_numpy(), np.nan)


class LevelShiftDetector:
    """Scores each metric's recent level against the minutes just before it.

    Parameters
    ----------
    recent : the span whose median is the metric's current level (a few points, so one noisy
        minute is not a shift).
    reference : the span before it whose median is the level it moved from.
    baseline : an unfitted SeasonalBaseline whose centre the deviations are taken from (a copy
        is fitted; a default one when None), or a fitted one wrapped in scikit-learn's
        ``FrozenEstimator``, used as it is (the ensemble shares its own).
    contamination : the share of training points above the fitted threshold when
        ``threshold`` is None.
    threshold : a fixed raw-score threshold (robust spreads) instead of the quantile.
    specs : metric specs (directions, floors).
    """

    def __init__(self, recent: str = "3min", reference: str = "15min",
                 baseline: SeasonalBaseline | None = None, contamination: float = 0.001,
                 threshold: float | None = None, specs: dict[str, MetricSpec] | None = None):
        self.recent = recent
        self.reference = reference
        self.baseline = baseline
        self.contamination = contamination
        self.threshold = threshold
        self.specs = specs

    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "LevelShiftDetector":
        """Learn each metric's robust spread of the shift statistic on ``history``."""
        self.recent_ = _duration(self.recent, "recent")
        self.reference_ = _duration(self.reference, "reference")
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        frame = mask_ranges(check_metric_frame(history, min_rows=2), exclude)
        if frame.index[-1] - frame.index[0] < 4 * (self.recent_ + self.reference_):
            raise MetricFrameError(f"the level-shift model needs at least "
                                   f"{4 * (self.recent_ + self.reference_)} of history")
        self.baseline_ = fitted_baseline(self.baseline, frame, exclude, self.specs)
        self.metrics_ = list(frame.columns)
        self.scale_ = {}
        outward = {}
        for metric in self.metrics_:
            # the spread of the plain (two-sided) shift: the outward part is 0 half the time,
            # and the MAD of that would call ordinary noise a shift; both from one pair of
            # rolling medians (the training scores' outward shift is of the same deviation)
            values = frame[metric]
            centre = self.baseline_.expected(metric, values.index).centre
            now, before = _medians(values - centre, self.recent_, self.reference_)
            shift = now - before
            outward[metric] = _outward(now, before)
            level = float(np.nanmedian(values.to_numpy()))
            known = shift[np.isfinite(shift)]
            mad = float(np.median(np.abs(known - np.median(known)))) if known.size else 0.0
            floor = spread_floor(np.array([level]), np.array([MAD_TO_SIGMA * mad]),
                                 spec_for(metric, self.specs))
            self.scale_[metric] = float(floor[0])
        scores = pd.DataFrame({m: self._scores(m, outward[m]) for m in self.metrics_},
                              index=frame.index)
        scores[frame.isna()] = np.nan
        self.training_scores_ = scores
        self.threshold_, self.threshold_method_ = fitted_threshold(scores, self.threshold,
                                                                   self.contamination)
        return self

    def _shift(self, metric: str, values: pd.Series) -> np.ndarray:
        """The outward level shift of ``values``' deviation from the baseline's centre."""
        centre = self.baseline_.expected(metric, values.index).centre
        return outward_shift(values - centre, self.recent_, self.reference_)

    def _scores(self, metric: str, shift: np.ndarray) -> np.ndarray:
        return by_direction(shift / self.scale_[metric], spec_for(metric, self.specs).direction)

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise RuntimeError("LevelShiftDetector is not fitted; call fit(history) first")

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw scores (robust spreads of shift in the bad direction) per metric; NaN where a
        point is missing or the frame does not reach far enough back."""
        self._check_fitted()
        frame = check_known_metrics(frame, self.metrics_, "level-shift model")
        out = pd.DataFrame({m: self._scores(m, self._shift(m, frame[m])) for m in frame.columns},
                           index=frame.index)
        return out.mask(frame.isna())
