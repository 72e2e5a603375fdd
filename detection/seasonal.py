"""Seasonal residual detector: a robust STL fit of the history, carried forward by phase.

Each metric's history is averaged onto a regular ``freq`` grid (5 minutes by default), its
gaps are filled deliberately (see below), and statsmodels' robust STL splits it into trend,
daily seasonal and remainder. The fitted curve ``trend + seasonal`` is the model of normal; a
point is scored by its residual against that curve at the same phase, in robust spreads.

Why these choices (measured on this project's 2-core machine, 14 days of one-minute data of
the simulated service, ``python scripts/bench_detectors.py`` and STACK-NOTES.md):

* Resolution. Robust STL with period=1440 on 20,160 one-minute points takes over 2 minutes
  (20 s non-robust). Averaging to 5 minutes (4,032 points, period 288) keeps the daily shape
  and makes robust STL 4-12 s; with ``seasonal_jump=5`` and ``trend_jump = low_pass_jump = 50``
  (LOESS evaluated every few points and interpolated, ``jump`` below) it is 0.10-0.29 s per
  metric with statsmodels' 15 robustness passes (ranges: the shared machine's load;
  ``python scripts/bench_detectors.py --stl``), and ten times less with the passes chosen
  below. The jumps change no finding in the tests and move the fitted one-minute spreads by
  at most 6%. Residuals of one-minute points are taken against the 5-minute curve
  interpolated in time, so the spread (and the score) is that of one-minute data, as the
  watcher sees it.
* Robustness iterations. statsmodels' robust STL runs 15 robustness passes of 2 inner loops
  (32 loops); this detector runs 2 passes of 1 inner loop (``inner_iter=1, outer_iter=2``:
  3 loops; Cleveland et al.'s one inner loop when robust), about 10 times faster (0.01-0.02 s
  per metric). Measured on 12 histories (3 noise levels x an incident of 2-6 hours on each
  of the four metrics, not excluded), the incident leaks into the expected value at the same
  phase a week later by a median 0.84 spreads (max 2.2), against 1.23 (max 4.5) with 15
  passes and 5.5 (max 6.0) without robustness; spreads of clean histories are the same
  (ratio 0.999), and the ensemble's faults table and training evaluation do not change.
* Daily period only. The weekly cycle cannot be its own component with two weeks of history:
  MSTL(288, 2016) silently drops the weekly period (it needs more than two cycles) and STL
  with period 2016 on exactly two cycles leaves two points per phase. The daily STL's trend
  (about 1.5 days long) carries the weekday/weekend level instead.
* Carrying the fit forward by phase. For a timestamp ``t`` the expected value is the mean of
  the fitted curve at ``t - k * repeat`` over the ``max_cycles`` cycles of the history nearest
  to ``t`` (``k != 0``). ``repeat`` is a week when the history spans ``min_history`` (two
  weeks), so Monday 10:00 is judged by the fitted Mondays 10:00, trend and daily shape
  together; with a shorter history (cold start) it is the STL period, a day. For new points
  the nearest cycles are the most recent ones; for points of the history itself they are the
  other weeks (or days), so the training scores are out-of-sample-like and the fitted
  threshold is not set by residuals the fit has already absorbed. Trend growth between the
  history and the scored point is not extrapolated: nightly retraining keeps it current.
* Cold start by day type. With the daily repeat, the nearest days alone judged a Tuesday
  afternoon by Monday, Sunday and Saturday together, and the STL trend (about two days long)
  smeared every weekday/weekend step over a day: on a service whose weekend carries three
  quarters of weekday traffic the expected value was 10-20% off for a day after each step.
  So under cold start (the repeat is not whole weeks):

  - each (day type, hour) gets a level (``day_type_level_``: weekdays 1, a weekend hour its
    ratio of hourly medians to the weekday's where the history has both, else the median of
    those ratios, ``day_type_factor_``; ``weekend_days`` and the ratio rule are shared with
    ``SeasonalBaseline`` through ``detection.daytype``). STL fits the history divided by its
    level, and the curve is multiplied back, so the trend sees no step. Per hour, because the
    ratio need not be one number: latency, convex in load, is 0.92 of the weekday's at night
    and 0.82 at the peak on a weekend with 0.75 of the traffic.
  - a point is judged by the nearest ``max_cycles`` days of its own day type when the history
    has any at that phase, read on the level-free curve times the point's own level, so a
    cycle straddling midnight into the other day type is not blended across the step.
  - when the history has no day of the point's type at that phase (a Monday after a
    weekend-only history), the nearest days of the other type stand in, at the point's level;
    the deviation is then measured from the edge of a tolerance of two factor uncertainties
    (``day_type_prior`` for each when no hour allows a ratio; at most two priors), not from
    the centre (``Expected.tolerance``): a quieter or busier day type raises no alarm, and a
    50% surge still does. A tolerance rather than a wider spread because the threshold is a
    quantile of training scores, often under two spreads where the spread is a metric's
    floor: a wider spread would still let a 10% day-type error cross it. Such points of the
    history are left out of the training scores (they score 0 inside the tolerance, which
    says nothing about normal scores).
  - the spread is per day type and hour (noise grows with load: the weekend's quieter minutes
    would make a weekday's spread too narrow).

  With two weeks of history (the weekly repeat) nothing of this applies and the figures are
  exactly those from before day types: the same phase of the week has the same day type.
* Gaps and uneven sampling. Points are averaged into ``freq`` bins whatever their spacing;
  runs of empty bins up to ``max_gap`` are interpolated linearly in time, longer runs (and the
  ends) take the median of the observed bins at the same phase of the day, so an outage does
  not draw a straight line through a day. A metric with fewer than ``min_coverage`` of its bins
  observed is refused. Empty bins and excluded ranges never enter the spread.
* Spread. The robust spread (scaled MAD) of the one-minute residuals, per hour of the day
  (noise grows with load; per day type and hour under cold start), raised to the metric's
  floor (``spread_floor``: the spec's ``min_spread`` and, for counts, a Poisson floor around
  the expected value).

What it knows after 1, 3 and 7 days of history (the simulated service, the next day scored,
expected value against the noise-free truth minute by minute):

* 1 day: nothing; the model needs two days (two STL periods) and is refused. In the ensemble
  (``ServiceDetector``) it is left out, and the z-score and the forest carry the day.
* 3 days: the daily shape, the weekend/weekday level per hour where both day types are in
  the history, and each point judged by the nearest days of its own type: within 2.5% of
  normal for requests and 5.5% for CPU at every minute, 0.5% on hourly means (before: 11-20%
  off after a weekend). A day type the history lacks at that phase is the other one at the
  measured level, with a tolerance; with nothing to measure the level by (weekdays only,
  scoring a Saturday), unscaled, with a tolerance of 50%.
* 7 days: every phase of both day types, weekdays averaged over the five weekdays, weekend
  days over two: within 2.5% (requests) and 5% (CPU) at every minute. The weekly repeat
  (Monday judged by Mondays) takes over at two weeks.

Scores follow the project's convention: higher is more anomalous, signed by each metric's bad
direction. A constant series gives a flat fit and the floor spread: it is scored, not refused.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from statsmodels.tsa.seasonal import STL

from detection.baseline import MAD_TO_SIGMA, Expected, spread_floor
from detection.daytype import (
    FACTOR_BOUNDS,
    MIN_LEVEL_SPREADS,
    WEEKEND,
    DayTypeFactor,
    check_weekend_days,
    comparable,
    day_type_factor,
    day_types,
)
from detection.frames import MetricFrameError, check_known_metrics, check_metric_frame
from detection.metrics import MetricSpec, spec_for
from detection.zscore import by_direction

WEEK = pd.Timedelta(days=7)
DAY_SECONDS = 86_400.0
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday is 0)
ROBUST_ITER = (1, 2)  # STL's inner loops and robustness passes when robust (module docstring)


class _Cycles(NamedTuple):
    """The cycles that judge each timestamp (``SeasonalResidualDetector._cycles``): epoch
    seconds ``t``; per row and candidate cycle whether it is ``use``d and the time ``at`` it
    reads the curve; under cold start each row's day type ``own`` and whether only the other
    day type could judge it (``stand_in``), else None."""

    t: np.ndarray
    use: np.ndarray
    at: np.ndarray
    own: np.ndarray | None
    stand_in: np.ndarray | None


def mask_ranges(frame: pd.DataFrame, exclude: list[tuple] | None) -> pd.DataFrame:
    """``frame`` with the points inside each (start, end) range set to NaN (a gap)."""
    if not exclude:
        return frame
    out = frame.copy()
    for start, end in exclude:
        start, end = _utc(start), _utc(end)
        if end < start:
            raise ValueError(f"excluded range ends ({end}) before it starts ({start})")
        out.loc[(out.index >= start) & (out.index <= end)] = np.nan
    return out


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def fitted_threshold(scores: pd.DataFrame, threshold: float | None,
                     contamination: float) -> tuple[pd.Series, str]:
    """Per-column threshold of a detector from its training scores, and how it was derived.

    A fixed ``threshold`` wins; otherwise the ``1 - contamination`` quantile of each column's
    training scores (pyod's rule), so about ``contamination`` of normal points exceed it.
    """
    if threshold is not None:
        return pd.Series(float(threshold), index=scores.columns), f"fixed at {threshold:g}"
    q = 1.0 - contamination
    return scores.quantile(q).fillna(np.inf), f"training-score quantile {q:g}"


class SeasonalResidualDetector:
    """Scores each metric's residual against its robust STL fit, carried forward by phase.

    Parameters
    ----------
    freq : the grid the history is averaged onto before STL.
    period : the STL seasonal period (a day); a whole number of ``freq`` steps.
    robust : robust STL (outliers in the history are down-weighted, not learned).
    seasonal : STL's seasonal smoother length, in cycles (odd, >= 3).
    jump : STL's ``seasonal_jump``; ``trend_jump`` and ``low_pass_jump`` are ten times it.
        1 is exact STL; 5 is 40 times faster on 5-minute data with the same findings.
    inner_iter, outer_iter : STL's inner loops and robustness passes (``STL.fit``). None: 1 and
        2 when robust (see above), statsmodels' 5 and 0 when not; ``outer_iter`` applies to a
        robust fit only.
    min_history : the span from which new points are judged by the same phase of the week
        rather than of the day.
    max_cycles : how many of the nearest cycles the expected value averages (under cold start,
        of the scored point's day type when the history has any).
    max_gap : empty runs up to this long are interpolated; longer ones take the phase median.
    min_coverage : the least fraction of ``freq`` bins that must hold data.
    relative_floor : the spread is at least this fraction of the expected value.
    contamination : the share of training points above the fitted threshold when
        ``threshold`` is None.
    threshold : a fixed raw-score threshold (robust spreads) instead of the quantile.
    specs : metric specs (directions, floors).
    weekend_days : the days of the week (Monday 0) of the weekend day type.
    day_type_prior : the relative uncertainty of a day-type level nothing in the history
        measures (as ``SeasonalBaseline.day_type_prior``); a point only the other day type can
        predict tolerates two of it (module docstring).
    """

    def __init__(self, freq: str = "5min", period: str = "1D", robust: bool = True,
                 seasonal: int = 7, jump: int = 5, inner_iter: int | None = None,
                 outer_iter: int | None = None, min_history: pd.Timedelta = 2 * WEEK,
                 max_cycles: int = 7, max_gap: str = "1h", min_coverage: float = 0.5,
                 relative_floor: float = 0.0, contamination: float = 0.001,
                 threshold: float | None = None, specs: dict[str, MetricSpec] | None = None,
                 weekend_days: tuple[int, ...] = WEEKEND, day_type_prior: float = 0.25):
        self.freq = freq
        self.period = period
        self.robust = robust
        self.seasonal = seasonal
        self.jump = jump
        self.inner_iter = inner_iter
        self.outer_iter = outer_iter
        self.min_history = min_history
        self.max_cycles = max_cycles
        self.max_gap = max_gap
        self.min_coverage = min_coverage
        self.relative_floor = relative_floor
        self.contamination = contamination
        self.threshold = threshold
        self.specs = specs
        self.weekend_days = weekend_days
        self.day_type_prior = day_type_prior

    # ----------------------------------------------------------------------------- fitting
    def _check_params(self) -> tuple[pd.Timedelta, pd.Timedelta, pd.Timedelta]:
        try:
            step, period, gap = (pd.Timedelta(self.freq), pd.Timedelta(self.period),
                                 pd.Timedelta(self.max_gap))
        except ValueError as exc:
            raise ValueError(f"freq, period and max_gap must be durations like '5min': {exc}") from None
        if step <= pd.Timedelta(0) or period % step != pd.Timedelta(0) or period // step < 2:
            raise ValueError(f"period ({self.period}) must be at least two whole steps of freq "
                             f"({self.freq})")
        if not (isinstance(self.seasonal, int) and self.seasonal >= 3 and self.seasonal % 2 == 1):
            raise ValueError(f"seasonal must be an odd integer >= 3, got {self.seasonal!r}")
        if not (isinstance(self.jump, int) and self.jump >= 1):
            raise ValueError(f"jump must be a positive integer, got {self.jump!r}")
        for name, least in (("inner_iter", 1), ("outer_iter", 0)):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= least):
                raise ValueError(f"{name} must be an integer >= {least} or None, got {value!r}")
        if not (isinstance(self.max_cycles, int) and self.max_cycles >= 1):
            raise ValueError(f"max_cycles must be a positive integer, got {self.max_cycles!r}")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold must be positive or None, got {self.threshold}")
        prior = self.day_type_prior
        if not (isinstance(prior, (int, float)) and np.isfinite(prior) and prior >= 0):
            raise ValueError(f"day_type_prior must be a finite number >= 0, got {prior!r}")
        check_weekend_days(self.weekend_days)
        return step, period, gap

    def fit(self, history: pd.DataFrame,
            exclude: list[tuple] | None = None) -> "SeasonalResidualDetector":
        """Fit STL to every metric of ``history``; ``exclude`` ranges are treated as gaps."""
        step, period, gap = self._check_params()
        frame = mask_ranges(check_metric_frame(history, min_rows=2), exclude)
        observed = frame.dropna(how="all")
        if len(observed) < 2:
            raise MetricFrameError("history has no usable points outside the excluded ranges")
        span = observed.index[-1] - observed.index[0]
        if span < 2 * period - step:
            raise MetricFrameError(f"the seasonal model needs at least two periods ({2 * period}) "
                                   f"of history; got {span}")
        self.step_, self.period_ = step, period
        self.repeat_ = WEEK if span >= pd.Timedelta(self.min_history) - pd.Timedelta(minutes=1) else period
        self.weekend_days_ = check_weekend_days(self.weekend_days)
        self.metrics_ = list(frame.columns)
        grid = pd.date_range(observed.index[0].floor(step), observed.index[-1].floor(step), freq=step)
        self.centres_ = _seconds(grid + step / 2)
        self.grid_cells_ = day_types(grid.day_of_week, self.weekend_days_) * 24 + grid.hour.to_numpy()
        self.fitted_: dict[str, np.ndarray] = {}
        self.spread_: dict[str, np.ndarray] = {}
        self.coverage_: dict[str, float] = {}
        self.day_type_factor_: dict[str, DayTypeFactor] = {}
        self.day_type_level_: dict[str, np.ndarray] = {}
        for metric in self.metrics_:
            self.fitted_[metric] = self._fit_curve(metric, frame[metric], grid, gap)
        observed_values, centred, residuals = {}, {}, {}
        every_row = self._cycles(frame.index)  # shared by the metrics with a point in every row
        for metric in self.metrics_:
            values = observed_values[metric] = frame[metric].dropna()
            centred[metric] = self._centre(metric, values.index,
                                           every_row if len(values) == len(frame) else None)
            residuals[metric] = pd.Series(values.to_numpy() - centred[metric][0], index=values.index)
        # by day type too under cold start: noise grows with load, and the weekend's quieter
        # minutes would make a weekday's spread too narrow
        types = day_types(frame.index.day_of_week, self.weekend_days_) if self._by_day_type() else None
        self.spread_ = _hourly_spreads(pd.DataFrame(residuals, index=frame.index),
                                       frame.index.hour.to_numpy(), types=types)
        scores = {}
        for metric in self.metrics_:
            values, (centre, tolerance) = observed_values[metric], centred[metric]
            # a point only the other day type could predict scores 0 inside its tolerance: not
            # the score of a normal point, so it is left out of the threshold and calibration
            trained = self._score_metric(metric, values, (centre, tolerance))
            scores[metric] = pd.Series(np.where(tolerance > 0, np.nan, trained),
                                       index=values.index)
        self._process_training_scores(pd.DataFrame(scores, index=frame.index))
        return self

    def _fit_curve(self, metric: str, values: pd.Series, grid: pd.DatetimeIndex,
                   gap: pd.Timedelta) -> np.ndarray:
        """``trend + seasonal`` of robust STL on the gap-filled ``freq`` grid."""
        binned = values.resample(self.step_, origin=grid[0]).mean().reindex(grid)
        coverage = float(binned.notna().mean())
        self.coverage_[metric] = coverage
        if coverage < self.min_coverage:
            raise MetricFrameError(f"metric {metric!r} has data in {coverage:.0%} of its "
                                   f"{self.freq} bins; at least {self.min_coverage:.0%} needed")
        self._fit_day_types(metric, binned)
        # under cold start STL sees the history with the weekend level divided out: its trend
        # (about two days long) would otherwise smear each weekday/weekend step over a day
        level = (self.day_type_level_[metric][self.grid_cells_] if self._by_day_type()
                 else np.ones(len(grid)))
        filled = _fill_gaps(binned / level, int(gap // self.step_), int(self.period_ // self.step_))
        n_period = int(self.period_ // self.step_)
        if self.robust:
            inner = ROBUST_ITER[0] if self.inner_iter is None else self.inner_iter
            outer = ROBUST_ITER[1] if self.outer_iter is None else self.outer_iter
        else:  # statsmodels would reweight on any robustness pass, robust or not
            inner, outer = self.inner_iter, 0
        stl = STL(filled.to_numpy(), period=n_period, seasonal=self.seasonal, robust=self.robust,
                  seasonal_jump=self.jump, trend_jump=10 * self.jump,
                  low_pass_jump=10 * self.jump).fit(inner_iter=inner, outer_iter=outer)
        return np.asarray(stl.trend + stl.seasonal, dtype=float) * level

    def _by_day_type(self) -> bool:
        """Whether cycles are told apart by day type: a repeat that is not whole weeks (cold
        start), and a model fitted since day types exist (bundles pickled before score as then)."""
        return (self.repeat_.total_seconds() % (7 * DAY_SECONDS) != 0
                and hasattr(self, "day_type_factor_"))

    def _fit_day_types(self, metric: str, binned: pd.Series) -> None:
        """The weekend/weekday factor of the binned history and each (day type, hour)'s level.

        The factor compares the hourly medians of both day types over the hours both cover
        (``detection.daytype.day_type_factor``). The level of a weekend hour is its own ratio
        where both day types have that hour, else the factor; weekday hours are 1. Per hour,
        because the ratio need not be one number: latency grows faster than linearly with
        load, so a weekend at 0.75 of the traffic has 0.92 of the latency at night and 0.82 at
        the peak, and one factor would bend the shape STL shares between day types by 5-10%.
        """
        medians = binned.groupby(self.grid_cells_).median().reindex(range(48)).to_numpy()
        weekday, weekend = medians[:24], medians[24:]
        min_level = MIN_LEVEL_SPREADS * spec_for(metric, self.specs).min_spread
        factor = day_type_factor(weekday, weekend, min_level, self.day_type_prior)
        shared = comparable(weekday, weekend, min_level)
        hourly = np.clip(np.divide(weekend, weekday, out=np.ones(24), where=shared), *FACTOR_BOUNDS)
        fallback = factor.factor if factor.known else 1.0
        self.day_type_factor_[metric] = factor
        self.day_type_level_[metric] = np.concatenate([np.ones(24), np.where(shared, hourly, fallback)])

    def _process_training_scores(self, scores: pd.DataFrame) -> None:
        """The training scores, the threshold and how it was derived, as fitted attributes."""
        self.training_scores_ = scores
        self.threshold_, self.threshold_method_ = fitted_threshold(scores, self.threshold,
                                                                   self.contamination)

    # ----------------------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "fitted_"):
            raise RuntimeError("SeasonalResidualDetector is not fitted; call fit(history) first")

    def _centre(self, metric: str, index: pd.DatetimeIndex,
                cycles: "_Cycles | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """The fitted curve at the same phase in the nearest ``max_cycles`` cycles, and the
        tolerance (relative to it) of a day type carried over from the other one (else 0).

        With the daily repeat (cold start) only cycles of the point's own day type are used
        when the history has any, otherwise the nearest of the other type. Either way they are
        read on the curve with the day-type factor divided out and multiplied by the point's
        own day-type level, so a cycle that straddles midnight into another day type is not
        blended across the step (module docstring). ``cycles``: ``_cycles(index)`` when already
        computed (it depends on the timestamps only, so metrics observed at the same ones share it).
        """
        cycles = self._cycles(index) if cycles is None else cycles
        t = cycles.t
        if len(t) == 0:
            return np.empty(0), np.empty(0)
        centres, curve = self.centres_, self.fitted_[metric]
        scale, tolerance = np.ones(len(t)), np.zeros(len(t))
        if cycles.own is not None:  # by day type
            factor = self.day_type_factor_[metric]
            level = self.day_type_level_[metric]
            curve = curve / level[self.grid_cells_]
            scale = level[cycles.own * 24 + ((t % DAY_SECONDS) // 3600).astype(int)]
            tolerance = np.where(cycles.stand_in, self._stand_in_tolerance(factor), 0.0)
        use, at = cycles.use, cycles.at
        # looked up cycle by cycle, each in time order: interp starts each search next to where
        # the previous one ended (0.58 -> 0.34 ms a metric of 14 days), value for value the same
        values = np.ascontiguousarray(np.interp(at.T, centres, curve).T)
        total = (values * use).sum(axis=1)
        count = use.sum(axis=1)
        own_value = np.interp(t, centres, self.fitted_[metric])  # only when no other cycle exists
        return np.where(count > 0, scale * total / np.maximum(count, 1), own_value), tolerance

    def _cycles(self, index: pd.DatetimeIndex) -> "_Cycles":
        """Which cycles of the history judge each timestamp of ``index``, and where they read
        the curve (``_centre``); the same for every metric."""
        t = _seconds(_utc_index(index))
        if len(t) == 0:
            return _Cycles(t, np.empty((0, 0), bool), np.empty((0, 0)), None, None)
        centres = self.centres_
        slack = self.step_.total_seconds()
        repeat = self.repeat_.total_seconds()
        by_type = self._by_day_type()
        lo = np.ceil((t - centres[-1] - slack) / repeat)
        hi = np.floor((t - centres[0] + slack) / repeat)
        base = np.where(lo >= 1, lo - 1, np.where(hi <= -1, hi + 1, 0))
        # offsets beyond the history for every row can never be used: leave them out (two
        # weeks at a weekly repeat have 2 usable cycles, not 2 * max_cycles candidates); by day
        # type, every cycle of the (short) history is a candidate, the nearest of the type win
        reach = max(0.0, np.max(np.maximum(hi - base, base - lo)))
        reach = int(reach if by_type else min(self.max_cycles, reach))
        order = np.array([k for r in range(1, reach + 1) for k in (r, -r)], dtype=float)
        k = base[:, None] + order[None, :]
        valid = (k >= lo[:, None]) & (k <= hi[:, None]) & (k != 0)
        at = t[:, None] - k * repeat
        own = stand_in = None
        if by_type:
            own = day_types(_weekday(t), self.weekend_days_)
            # a candidate up to a step beyond either end of the history reads the curve's end:
            # its day type is that of the end, not of a day the history does not hold
            seen = np.clip(at, centres[0], centres[-1])
            same = valid & (day_types(_weekday(seen), self.weekend_days_) == own[:, None])
            has_same = same.any(axis=1)
            valid = np.where(has_same[:, None], same, valid)
            stand_in = ~has_same & valid.any(axis=1)
        use = valid & (np.cumsum(valid, axis=1) <= self.max_cycles)
        return _Cycles(t, use, at, own, stand_in)

    def _stand_in_tolerance(self, factor: DayTypeFactor) -> float:
        """The relative tolerance of a level carried over from the other day type: two of the
        factor's uncertainties (``day_type_prior`` is that uncertainty when the factor is
        unknown), and never more than two priors.

        A tolerance rather than a wider spread: this detector's threshold is a quantile of its
        training scores, often under two spreads where the spread is a metric's floor, so a
        wider spread would still let a 10% day-type error cross it; within the tolerance the
        deviation scores 0, beyond it the usual spread applies and a surge is still seen.
        """
        uncertainty = factor.uncertainty if factor.known else self.day_type_prior
        return float(2.0 * min(uncertainty, self.day_type_prior))

    def expected(self, metric: str, timestamps: pd.DatetimeIndex) -> Expected:
        """Expected value (the phase-matched fit), spread and tolerance of ``metric`` at
        ``timestamps``."""
        self._check_fitted()
        if metric not in self.fitted_:
            raise KeyError(f"no seasonal model for metric {metric!r}; fitted: {', '.join(self.metrics_)}")
        return self._expected(metric, _utc_index(timestamps))

    def _expected(self, metric: str, index: pd.DatetimeIndex,
                  centred: tuple[np.ndarray, np.ndarray] | None = None) -> Expected:
        centre, tolerance = self._centre(metric, index) if centred is None else centred
        table, key = self.spread_[metric], index.hour.to_numpy()
        if len(table) == 48:  # per day type and hour (cold start)
            key = key + 24 * day_types(index.day_of_week, self.weekend_days_)
        spread = table[key] if len(index) else np.empty(0)
        spec = spec_for(metric, self.specs)
        return Expected(centre, spread_floor(centre, spread, spec, self.relative_floor),
                        tolerance * np.abs(centre))

    def _score_metric(self, metric: str, values: pd.Series,
                      centred: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Scores of ``values``; ``centred`` is ``_centre``'s answer when already computed."""
        exp = self._expected(metric, _utc_index(values.index), centred)
        resid = values.to_numpy() - exp.centre
        # STL's arithmetic leaves ~1e-14 on a constant series: that is a perfect fit, not a tail
        resid = np.where(np.abs(resid) <= 1e-9 * np.maximum(1.0, np.abs(exp.centre)), 0.0, resid)
        resid = np.sign(resid) * np.maximum(np.abs(resid) - exp.tolerance, 0.0)
        return by_direction(resid / exp.spread, spec_for(metric, self.specs).direction)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw scores (robust spreads in the bad direction) per metric; NaN where missing."""
        self._check_fitted()
        frame = check_known_metrics(frame, self.metrics_, "seasonal model")
        return pd.DataFrame({m: self._score_metric(m, frame[m]) for m in frame.columns},
                            index=frame.index)

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Whether each point's score is above its metric's fitted threshold."""
        scores = self.score(frame)
        return scores.gt(self.threshold_.reindex(scores.columns), axis=1)


def _utc_index(index) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(index)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def _weekday(seconds: np.ndarray) -> np.ndarray:
    """The UTC day of the week (Monday 0) of epoch seconds."""
    return (np.floor(seconds / DAY_SECONDS).astype(np.int64) + EPOCH_WEEKDAY) % 7


def _seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Seconds since the epoch as floats, whatever the index's resolution (pandas 3 uses us)."""
    return index.as_unit("ns").asi8 / 1e9


def _fill_gaps(binned: pd.Series, max_gap_bins: int, n_period: int) -> pd.Series:
    """Short gaps linear in time; long gaps and the ends the median of the same phase."""
    missing = binned.isna()
    if not missing.any():
        return binned
    run = (missing != missing.shift()).cumsum()
    run_length = missing.groupby(run).transform("size")
    short = missing & (run_length <= max_gap_bins)
    linear = binned.interpolate(method="time", limit_area="inside")
    filled = binned.where(~short, linear)
    phase = np.arange(len(binned)) % n_period
    phase_median = binned.groupby(phase).median()
    by_phase = pd.Series(phase_median.reindex(phase).to_numpy(), index=binned.index)
    return filled.fillna(by_phase).fillna(float(binned.median()))


def _hourly_spreads(resid: pd.DataFrame, hours: np.ndarray, min_points: int = 30,
                    types: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per column of ``resid`` (NaN: no point), the scaled MAD of its residuals per hour of the
    day (24 values), or, given each row's day type, per day type and hour (48 values,
    ``type * 24 + hour``); a group with fewer than ``min_points`` residuals takes its hour's
    figure, a thin hour the column's global one.

    Every column in one grouped pass (the groups' medians skip NaN, so a column's figures are
    those of its own points alone): a third of the cost of one pass per metric.
    """
    glob = np.zeros(resid.shape[1])
    for j in range(resid.shape[1]):
        values = resid.iloc[:, j].to_numpy()
        values = values[~np.isnan(values)]
        if len(values):
            glob[j] = MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))
    out = _group_spreads(resid, hours, np.repeat(glob[:, None], 24, axis=1), min_points)
    if types is not None:
        out = _group_spreads(resid, types * 24 + hours, np.tile(out, 2), min_points)
    return {metric: out[j] for j, metric in enumerate(resid.columns)}


def _group_spreads(resid: pd.DataFrame, keys: np.ndarray, fallback: np.ndarray,
                   min_points: int) -> np.ndarray:
    """Scaled MAD of each column of ``resid`` per integer key (columns x keys), ``fallback``
    where a key has fewer than ``min_points`` values of that column."""
    out = fallback.copy()
    # per group with grouped (cython) medians, as SeasonalBaseline does per bucket
    grouped = resid.groupby(keys)
    mad = (resid - grouped.transform("median")).abs().groupby(keys).median()
    count = grouped.count().reindex(mad.index).to_numpy()
    at = mad.index.to_numpy()
    for j in range(resid.shape[1]):
        enough = count[:, j] >= min_points
        out[j, at[enough]] = MAD_TO_SIGMA * mad.iloc[:, j].to_numpy()[enough]
    return out
