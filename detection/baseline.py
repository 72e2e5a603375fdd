"""Per-metric seasonal baselines: a robust centre and spread for each hour of the week.

Every hour-of-week slot (Monday 00:00 UTC is slot 0) gets its centre and spread from the most
specific level of a hierarchy the history supports, so that a baseline fitted on a few days is
still calibrated for the weekday or weekend day and the hour it scores (issue 10: a 3-day
history spanning a weekend put a weekday afternoon's expected traffic 20% low):

1. ``hour_of_week``: the slot's own points, when they come from at least two distinct weeks.
   With two weeks of history every slot is at this level, exactly as before the hierarchy.
2. ``day_type_hour``: the points of the same day type (weekday or weekend, ``weekend_days``)
   at the same hour of the day.
3. ``other_day_type``: the other day type's hour, scaled by the weekend/weekday factor measured
   on the hours the history has for both (``detection.daytype.day_type_factor``);
   ``other_day_type_unscaled`` when no hour allows that measure, with the spread widened by a
   plausible day-type difference (``day_type_prior``) instead.
4. ``global``: the metric's robust level and spread over the whole history.

A slot whose centre rests on few distinct days has its spread widened by the day-to-day
variation a within-hour MAD cannot see (see ``SeasonalBaseline``). The level of each slot is a
fitted attribute (``levels_``) and ``resolution_`` names the regime, so a user can see what a
score was measured against.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.frozen import FrozenEstimator

from detection.daytype import (
    MIN_LEVEL_SPREADS,
    WEEKEND,
    DayTypeFactor,
    check_weekend_days,
    day_type_factor,
    day_type_name,
    day_types,
)
from detection.frames import check_metric_frame
from detection.metrics import MetricSpec, spec_for

MAD_TO_SIGMA = 1.4826
WEEK = pd.Timedelta(days=7)
SLOTS = 168
DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
EPOCH_HOUR_OF_WEEK = 72  # 1970-01-01 00:00 UTC, a Thursday, is hour 72 of its week
LEVELS = ("hour_of_week", "day_type_hour", "other_day_type", "other_day_type_unscaled", "global")


@dataclass(frozen=True)
class Expected:
    """What a baseline expects at given times: centre and spread (sigma-like) per timestamp.

    ``tolerance`` (same unit) is a distance from the centre within which a deviation is no
    evidence at all, e.g. a day type's level the history could not measure; a score counts
    from its edge, in spreads. 0 for every baseline that knows its level.
    """

    centre: np.ndarray
    spread: np.ndarray
    tolerance: np.ndarray | float = 0.0


def spread_floor(centre, spread, spec: MetricSpec, relative_floor: float = 0.0):
    """``spread`` raised to the smallest spread a metric may have around ``centre``.

    The floor is the larger of ``relative_floor`` times the centre, the spec's ``min_spread``
    and, for counts, a Poisson-like ``sqrt(centre) + 1``: a flat or near-zero history must not
    make every wobble (or a single stray error) an anomaly. Works on arrays and Series alike.
    """
    floor = np.maximum(relative_floor * np.abs(centre), spec.min_spread)
    if spec.count:
        floor = np.maximum(floor, np.sqrt(np.clip(centre, 0, None)) + 1.0)
    return np.maximum(spread, floor)


def spread_floors(centre: np.ndarray, spread, min_spread, count, relative_floor=0.0) -> np.ndarray:
    """``spread_floor`` with the spec's ``min_spread`` and ``count`` (and ``relative_floor``)
    given per value, as arrays broadcast against ``centre``: many metrics' floors in one pass,
    value for value the same arithmetic."""
    floor = np.maximum(relative_floor * np.abs(centre), min_spread)
    if np.any(count):
        with np.errstate(invalid="ignore"):
            poisson = np.maximum(floor, np.sqrt(np.clip(centre, 0, None)) + 1.0)
        floor = np.where(count, poisson, floor)
    return np.maximum(spread, floor)


def hour_of_week(index: pd.DatetimeIndex) -> np.ndarray:
    """Each UTC timestamp's hour-of-week slot: Monday 00:00-00:59 is 0, Sunday 23:00 is 167.

    Integer arithmetic on the epoch nanoseconds (UTC's for a tz-aware index; a naive one is
    read as UTC): the slots of ``day_of_week * 24 + hour``, six times faster than pandas'
    calendar fields, and every member of the ensemble looks its baseline up once per metric.
    """
    return hour_of_week_ns(index.as_unit("ns").asi8)


def hour_of_week_ns(ns: np.ndarray) -> np.ndarray:
    """``hour_of_week`` of UTC epoch nanoseconds."""
    return (ns // HOUR_NS + EPOCH_HOUR_OF_WEEK) % SLOTS


def _bucket(index: pd.DatetimeIndex, resolution: str) -> np.ndarray:
    # "hour_of_day" and "global" are the buckets of baselines fitted before the hierarchy
    # (a bundle pickled then still scores as it did); every level since is per hour of week
    if resolution == "hour_of_day":
        return index.hour.to_numpy()
    if resolution == "global":
        return np.zeros(len(index), dtype=int)
    return hour_of_week(index)


def _group_stats(frame: pd.DataFrame, keys: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Median, MAD and count of every column of ``frame`` per integer key in ``range(size)``
    (arrays of ``size`` x columns; NaN and 0 where a key has no point). NaN is skipped.

    Each group's MAD with the grouped (cython) median twice, not a Python function per group,
    and every metric in one pass: 168 buckets of a 14-day metric in about 3 ms, not 30 ms.
    """
    grouped = frame.groupby(keys)
    full = pd.RangeIndex(size)
    centre = grouped.median().reindex(full).to_numpy()
    # each point's distance from its own group's median (what transform("median") would
    # broadcast, read from the medians already taken)
    distance = pd.DataFrame(np.abs(frame.to_numpy() - centre[keys]), index=frame.index,
                            columns=frame.columns)
    mad = distance.groupby(keys).median()
    count = grouped.count()
    return centre, mad.reindex(full).to_numpy(), count.reindex(full, fill_value=0).to_numpy()


def _days_per_key(frame: pd.DataFrame, keys: np.ndarray, days: np.ndarray,
                  size: int) -> np.ndarray:
    """How many distinct days hold points of each column per key in ``range(size)``."""
    width = int(days.max() + 1)
    pairs = frame.notna().groupby(keys.astype(np.int64) * width + days).any()
    per_key = pairs.groupby(pairs.index.to_numpy() // width).sum()
    return per_key.reindex(pd.RangeIndex(size), fill_value=0).to_numpy()


class SeasonalBaseline:
    """Robust centre (median) and spread (scaled MAD) per metric and hour-of-week slot.

    Each slot takes the most specific level the history supports (module docstring):
    hour-of-week, else same day type x hour of day, else the other day type's hour scaled by a
    weekend/weekday factor, else the metric's global figures. ``expected`` stays a pure
    function of each timestamp's weekday and hour, so it can be read once into a 168-slot table.

    Why the spread widens on a thin history: a centre measured on ``n`` distinct days is off
    by about the day-to-day variation ``s_d / sqrt(n)``, and a single day's MAD sees only the
    minute-to-minute noise, not how one day differs from the next. A slot at level 2 or 3 adds
    ``2 s_d^2 / n`` to its variance (one ``s_d^2 / n`` for the centre's error, one for the part
    of the day-to-day variation that a pooled MAD over ``n`` days misses; at ``n = 1`` that is
    the whole of it). ``s_d`` is measured, relative to the level, as the median standard
    deviation of the daily medians over the cells that have at least two days
    (``day_to_day_``); with no such cell it is the prior ``day_to_day``. A slot carried over
    from the other day type adds the factor's relative uncertainty times the centre (the
    spread of the per-hour ratios, and at least ``day_type_prior / sqrt(hours)``; the prior
    itself when no hour allows a ratio), so a quieter weekend judged by weekdays widens the
    band instead of alarming. Such a slot also gets a ``tolerance_`` of two of those
    uncertainties, for detectors that calibrate z on training z's (see ``tolerance_``).

    What it knows after 1, 3 and 7 days of history (the simulated service, whose weekend
    carries 0.75 of weekday traffic; the 24 hours after the history scored, centres against
    the noise-free truth averaged over each hour; ``RobustZDetector`` at threshold 4):

    * 1 day: each hour of the day once. Where the scored day has the history's day type (a
      Tuesday after a Monday), requests and CPU are expected within 1.5% of normal; nothing
      measures the day-to-day variation yet, so each spread carries the 5% prior (7.5% of the
      level in all): no quiet minute of the next day scores over 4, and every minute of a 50%
      load surge does. An hour only the other day type has (a Monday after a Sunday) is
      carried over unscaled, 25% off here, with a spread of a quarter of the level: a busier
      or quieter day type raises no alarm, but a 50% surge on it scores over 4 on only 20-60%
      of its minutes.
    * 3 days: every hour of each day type the days cover, one to three days behind each. If
      they span a weekend, each slot is judged by its own day type (``day_type_hour``):
      within 1.5% of normal on a weekday afternoon, a Monday morning or a Sunday night (before:
      20-30% low on the weekday after a weekend, with 45-96% of its quiet minutes over 4),
      the day-to-day variation measured (0.3% here), no quiet minute over 4 and every surge
      minute over it. A weekday hour the history lacks is the weekend's times the measured
      factor (0.75). Three weekdays and no weekend score a Saturday by the weekday level with
      the widened band: no alarm, and a 50% surge on a weekend (1.125 of a weekday) unseen.
    * 7 days: every hour of both day types, weekday hours from five days and weekend hours
      from two, within about 1% of normal; no quiet minute over 4, every surge minute over it.
      A slot is at ``hour_of_week`` once two weeks cover it (from the eighth day), so until
      then the weekdays share one profile and a pattern of one weekday (Monday's backlog) is
      not known. With 14 days every slot is at ``hour_of_week``: exactly the baseline from
      before day types.

    Parameters
    ----------
    min_history : the span from which ``resolution_`` reads ``hour_of_week`` (then every slot
        has two weeks of data unless the history has gaps); shorter is a cold start,
        ``day_type_hour``. ``levels_`` tells the level per slot either way.
    min_bucket_points : a slot or a cell with fewer points is not used at its level.
    relative_floor : the spread is at least this fraction of the centre, so a flat history
        does not make every wobble an anomaly.
    specs : metric specs: each one's ``min_spread``, and counts get a Poisson floor too.
    weekend_days : the days of the week (Monday 0) of the weekend day type; empty for a
        service without a weekly rhythm (every day one type).
    day_to_day : the day-to-day variation of a level at the same hour, relative to it, assumed
        when no hour of the history has two days of the same type to measure it (5%: a steady
        service's traffic at the same hour of two weekdays).
    day_type_prior : the relative uncertainty of a day-type level nothing in the history
        measures, as one spread (25%: at a threshold of 4 the band of a weekday judged by a
        weekend, or the reverse, spans twice the level, and a weekend at 0.75 of weekday
        traffic is one spread away).

    Attributes
    ----------
    resolution_ : ``hour_of_week`` (at least ``min_history``) or ``day_type_hour`` (cold start).
    levels_ : per metric, the level each hour-of-week slot (0 = Monday 00:00 UTC) uses, one of
        ``LEVELS``; ``describe(metric)`` shows it beside day, hour, centre and spread.
    centre_, spread_, tolerance_ : per metric, each slot's centre, spread (floored) and
        tolerance (0 unless carried over from the other day type).
    days_ : per metric, how many distinct days stand behind each slot's centre.
    day_type_factor_ : per metric, the weekend/weekday ``DayTypeFactor`` (NaN when unknown).
    day_to_day_ : per metric, the relative day-to-day variation used (measured or the prior).
    global_ : per metric, the global (centre, spread).
    """

    def __init__(self, min_history: pd.Timedelta = 2 * WEEK, min_bucket_points: int = 10,
                 relative_floor: float = 0.05, specs: dict[str, MetricSpec] | None = None,
                 weekend_days: tuple[int, ...] = WEEKEND, day_to_day: float = 0.05,
                 day_type_prior: float = 0.25):
        self.min_history = min_history
        self.min_bucket_points = min_bucket_points
        self.relative_floor = relative_floor
        self.specs = specs
        self.weekend_days = weekend_days
        self.day_to_day = day_to_day
        self.day_type_prior = day_type_prior

    def _check_params(self) -> tuple[int, ...]:
        if isinstance(self.min_bucket_points, bool) or not isinstance(self.min_bucket_points, int) \
                or self.min_bucket_points < 1:
            raise ValueError(f"min_bucket_points must be a positive integer, got {self.min_bucket_points!r}")
        for name in ("relative_floor", "day_to_day", "day_type_prior"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return check_weekend_days(self.weekend_days)

    def fit(self, history: pd.DataFrame, exclude: list[tuple] | None = None) -> "SeasonalBaseline":
        """Learn centre, spread and level per hour-of-week slot from ``history`` (metrics as
        columns).

        ``exclude`` lists (start, end) time ranges left out of fitting, e.g. deployments.
        """
        weekend = self._check_params()
        frame = check_metric_frame(history, min_rows=2)
        for start, end in exclude or []:
            frame = frame[(frame.index < pd.Timestamp(start)) | (frame.index > pd.Timestamp(end))]
        span = frame.index[-1] - frame.index[0]
        long_enough = span >= self.min_history - pd.Timedelta(minutes=1)
        self.resolution_ = "hour_of_week" if long_enough else "day_type_hour"
        self.weekend_days_ = weekend
        self.metrics_ = list(frame.columns)
        self.history_start_, self.history_end_ = frame.index[0], frame.index[-1]
        index = frame.index
        days = index.as_unit("ns").asi8 // DAY_NS
        days = days - days.min()
        slots = hour_of_week(index)
        cells = day_types(index.day_of_week, weekend) * 24 + index.hour.to_numpy()
        tables = {"slot": _group_stats(frame, slots, SLOTS) + (_days_per_key(frame, slots, days, SLOTS),),
                  "cell": _group_stats(frame, cells, 48) + self._daily_spread(frame, cells, days)}
        all_days = frame.notna().groupby(days).any().sum().to_numpy()
        self.centre_: dict[str, pd.Series] = {}
        self.spread_: dict[str, pd.Series] = {}
        self.levels_: dict[str, pd.Series] = {}
        self.tolerance_: dict[str, pd.Series] = {}
        self.days_: dict[str, pd.Series] = {}
        self.global_: dict[str, tuple[float, float]] = {}
        self.day_type_factor_: dict[str, DayTypeFactor] = {}
        self.day_to_day_: dict[str, float] = {}
        for j, metric in enumerate(self.metrics_):
            values = frame[metric].to_numpy()
            values = values[~np.isnan(values)]
            if not len(values):
                raise ValueError(f"metric {metric!r} has no values in the history")
            column = {name: [part[:, j] for part in parts] for name, parts in tables.items()}
            self._fit_metric(metric, values, column["slot"], column["cell"], int(all_days[j]))
        return self

    def _fit_metric(self, metric: str, values: np.ndarray, slot: list[np.ndarray],
                    cell: list[np.ndarray], all_days: int) -> None:
        """Centre, spread, level, tolerance and days per slot of one metric, from its grouped
        figures: ``slot`` (median, MAD, count, days) per hour-of-week slot and ``cell`` (median,
        MAD, count, days, spread of the daily medians) per day type x hour."""
        spec = spec_for(metric, self.specs)
        least = self.min_bucket_points
        glob_centre = float(np.median(values))
        glob_spread = float(self._floor(glob_centre, MAD_TO_SIGMA * float(
            np.median(np.abs(values - glob_centre))), spec))
        self.global_[metric] = (glob_centre, glob_spread)

        # (1) the slot's own points, from two weeks or more
        slot_centre, slot_mad, slot_n, slot_days = slot
        weekly = (slot_n >= least) & (slot_days >= 2)

        # (2) day type x hour of day: cell = type * 24 + hour
        cell_centre, cell_mad, cell_n, cell_days, day_spread = cell
        cell_ok = cell_n >= least
        cell_days = np.where(cell_ok, np.maximum(cell_days, 1), 0)
        min_level = MIN_LEVEL_SPREADS * spec.min_spread
        sure = ((cell_days >= 2) & cell_ok & np.isfinite(day_spread)
                & (np.abs(np.nan_to_num(cell_centre)) >= min_level))
        day_to_day = (float(np.median(day_spread[sure] / np.abs(cell_centre[sure]))) if sure.any()
                      else float(self.day_to_day))
        known = np.where(cell_ok, cell_centre, np.nan)
        factor = day_type_factor(known[:24], known[24:], min_level, self.day_type_prior)
        self.day_type_factor_[metric] = factor
        self.day_to_day_[metric] = day_to_day

        # per slot: its day type's cell and the other type's cell at the same hour
        slot_ids = np.arange(SLOTS)
        types = day_types(slot_ids // 24, self.weekend_days_)
        own, other = types * 24 + slot_ids % 24, (1 - types) * 24 + slot_ids % 24
        scale = np.array([factor.to(t) for t in (0, 1)])[types]
        carried = cell_centre[other] * scale
        cell_sigma = MAD_TO_SIGMA * cell_mad

        def thin(centre, n):  # the day-to-day variance a few days cannot pin down
            return 2.0 * (day_to_day * centre) ** 2 / np.maximum(n, 1)

        levels = np.select([weekly, cell_ok[own], cell_ok[other] & factor.known, cell_ok[other]],
                           [0, 1, 2, 3], 4)
        centre = np.choose(levels, [slot_centre, cell_centre[own], carried, carried,
                                    np.full(SLOTS, glob_centre)])
        own_spread = np.sqrt(cell_sigma[own] ** 2 + thin(cell_centre[own], cell_days[own]))
        other_spread = np.sqrt((cell_sigma[other] * scale) ** 2 + thin(carried, cell_days[other])
                               + (factor.uncertainty * carried) ** 2)
        spread = np.choose(levels, [MAD_TO_SIGMA * slot_mad, own_spread, other_spread,
                                    other_spread, np.full(SLOTS, glob_spread)])
        # the ensemble's calibrated z never saw a carried-over slot in training: it measures
        # deviations there from the edge of two day-type uncertainties (see ``tolerance_``)
        carried_over = (levels == 2) | (levels == 3)
        tolerance = np.where(carried_over, 2.0 * min(factor.uncertainty, self.day_type_prior)
                             * np.abs(np.nan_to_num(carried)), 0.0)
        behind = np.choose(levels, [slot_days, cell_days[own], cell_days[other], cell_days[other],
                                    np.full(SLOTS, all_days)])
        name = pd.Index(slot_ids, name="hour_of_week")
        self.centre_[metric] = pd.Series(centre, index=name)
        self.spread_[metric] = pd.Series(self._floor(centre, spread, spec), index=name)
        self.levels_[metric] = pd.Series(np.asarray(LEVELS)[levels], index=name)
        self.tolerance_[metric] = pd.Series(tolerance, index=name)
        self.days_[metric] = pd.Series(behind, index=name)

    def _daily_spread(self, frame: pd.DataFrame, cells: np.ndarray,
                      days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per cell and column: how many days have at least ``min_bucket_points`` points in it,
        and the standard deviation of those days' medians (NaN with fewer than two days)."""
        width = int(days.max() + 1)
        grouped = frame.groupby(cells.astype(np.int64) * width + days)
        daily = grouped.median().where(grouped.count() >= self.min_bucket_points)
        by_cell = daily.groupby(daily.index.to_numpy() // width)
        full = pd.RangeIndex(48)
        return (by_cell.count().reindex(full, fill_value=0).to_numpy(),
                by_cell.std().reindex(full).to_numpy())

    def _floor(self, centre, spread, spec: MetricSpec):
        return spread_floor(centre, spread, spec, self.relative_floor)

    def describe(self, metric: str) -> pd.DataFrame:
        """One row per hour-of-week slot of ``metric``: day, hour, day type, the level used, the
        distinct days behind it, centre and spread; what a score at that slot is measured by."""
        self._check_fitted(metric)
        slots = self.centre_[metric].index.to_numpy()
        weekend = getattr(self, "weekend_days_", WEEKEND)
        return pd.DataFrame({
            "day": np.array(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])[slots // 24],
            "hour": slots % 24,
            "day_type": [day_type_name(t) for t in day_types(slots // 24, weekend)],
            "level": self.levels_[metric].to_numpy(),
            "days": self.days_[metric].to_numpy(),
            "centre": self.centre_[metric].to_numpy(),
            "spread": self.spread_[metric].to_numpy(),
            "tolerance": self.tolerance_[metric].to_numpy(),
        }, index=self.centre_[metric].index)

    def _check_fitted(self, metric: str) -> None:
        if not hasattr(self, "centre_"):
            raise RuntimeError("SeasonalBaseline is not fitted; call fit(history) first")
        if metric not in self.centre_:
            raise KeyError(f"no baseline for metric {metric!r}; fitted: {', '.join(self.metrics_)}")

    def expected(self, metric: str, timestamps: pd.DatetimeIndex) -> Expected:
        """Centre, spread and tolerance of ``metric`` at ``timestamps``.

        A pure function of each timestamp's UTC weekday and hour (a 168-slot look-up), so a
        scorer can read it once for a reference week.
        """
        self._check_fitted(metric)
        index = pd.DatetimeIndex(timestamps)
        index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
        buckets = _bucket(index, self.resolution_)
        tolerance = getattr(self, "tolerance_", {}).get(metric)  # none in bundles made before it
        if tolerance is not None:  # a full table of 168 slots: a plain look-up
            return Expected(self.centre_[metric].to_numpy()[buckets],
                            self.spread_[metric].to_numpy()[buckets], tolerance.to_numpy()[buckets])
        g_centre, g_spread = self.global_[metric]
        centre = self.centre_[metric].reindex(buckets).fillna(g_centre).to_numpy()
        spread = self.spread_[metric].reindex(buckets).fillna(g_spread).to_numpy()
        return Expected(centre, spread)


def fitted_baseline(baseline: "SeasonalBaseline | FrozenEstimator | None", frame: pd.DataFrame,
                    exclude: list[tuple] | None,
                    specs: dict[str, MetricSpec] | None) -> SeasonalBaseline:
    """The baseline a member measures deviations against: ``baseline`` fitted on ``frame``.

    None fits a default one; an unfitted one is copied and fitted; a fitted one wrapped in
    scikit-learn's ``FrozenEstimator`` is used as it is (the ensemble fits its baseline once and
    shares it), after checking it knows every metric of ``frame``.
    """
    if isinstance(baseline, FrozenEstimator):
        base = baseline.estimator
        if not hasattr(base, "metrics_"):
            raise ValueError("the frozen baseline is not fitted; fit it first or pass it unfitted")
        missing = [m for m in frame.columns if m not in base.metrics_]
        if missing:
            raise ValueError(f"the frozen baseline has no metric(s) {', '.join(missing)}; "
                             f"fitted: {', '.join(base.metrics_)}")
        return base
    base = SeasonalBaseline(specs=specs) if baseline is None else copy.deepcopy(baseline)
    return base.fit(frame, exclude=exclude)
