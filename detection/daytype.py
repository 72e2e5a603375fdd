"""Day types (weekdays and weekend days) and the factor between their levels. Pure numpy.

Most services carry less traffic at weekends, so a baseline learnt from a history that mixes
day types is too low for a weekday and too high for a weekend. With two weeks of history every
hour of the week has its own bucket and the question never arises; with less, the cold-start
baselines (``SeasonalBaseline``, ``SeasonalResidualDetector``) keep weekdays and weekend days
apart, and when the history lacks one day type at an hour they carry the other one over, scaled
by the factor :func:`day_type_factor` estimates from the hours both types share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEEKEND = (5, 6)  # Saturday and Sunday; Monday is 0, as pandas' ``day_of_week``
WEEKDAY_TYPE, WEEKEND_TYPE = 0, 1
FACTOR_BOUNDS = (0.25, 4.0)  # a weekend/weekday ratio outside this is a broken estimate
MIN_LEVEL_SPREADS = 10.0  # a ratio of centres needs both this many min_spreads away from zero


def check_weekend_days(weekend_days) -> tuple[int, ...]:
    """``weekend_days`` as a sorted tuple of distinct days of the week (Monday 0 .. Sunday 6).

    Empty (or all seven) is allowed: every day is then of one type, as for a service without a
    weekly rhythm. Raises ValueError naming the bad value.
    """
    try:
        days = tuple(weekend_days)
    except TypeError:
        raise ValueError(f"weekend_days must be a list of days 0-6 (Monday is 0), "
                         f"got {weekend_days!r}") from None
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 6
           for d in days) or len(set(days)) != len(days):
        raise ValueError(f"weekend_days must be distinct days 0-6 (Monday is 0), got {weekend_days!r}")
    return tuple(sorted(int(d) for d in days))


def day_types(day_of_week, weekend_days=WEEKEND) -> np.ndarray:
    """``WEEKEND_TYPE`` (1) where the day of the week is a weekend day, ``WEEKDAY_TYPE`` (0) else."""
    return np.isin(np.asarray(day_of_week), list(weekend_days)).astype(int)


def day_type_name(day_type: int) -> str:
    return "weekend" if day_type == WEEKEND_TYPE else "weekday"


@dataclass(frozen=True)
class DayTypeFactor:
    """The weekend level as a multiple of the weekday level, and how sure that is.

    ``factor`` is NaN when no hour has both day types far enough from zero to compare.
    ``uncertainty`` is relative (a fraction of the level the factor produces). ``hours`` is how
    many phases of the day the estimate rests on.
    """

    factor: float
    uncertainty: float
    hours: int

    @property
    def known(self) -> bool:
        return bool(np.isfinite(self.factor))

    def to(self, day_type: int) -> float:
        """What multiplies the other day type's level to give ``day_type``'s (1 when unknown)."""
        if not self.known:
            return 1.0
        return self.factor if day_type == WEEKEND_TYPE else 1.0 / self.factor


def comparable(weekday, weekend, min_level: float) -> np.ndarray:
    """Where both centres are known, positive and at least ``min_level``: a ratio means something."""
    weekday, weekend = np.asarray(weekday, dtype=float), np.asarray(weekend, dtype=float)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(weekday) & np.isfinite(weekend) & (weekday >= min_level)
                & (weekend >= min_level) & (weekday > 0) & (weekend > 0))


def day_type_factor(weekday, weekend, min_level: float, prior: float,
                    bounds: tuple[float, float] = FACTOR_BOUNDS) -> DayTypeFactor:
    """The weekend/weekday factor from centres of both day types at the same phases of the day.

    Parameters
    ----------
    weekday, weekend : robust centres (e.g. hourly medians) per phase of the day, NaN where the
        history has no such phase for that day type.
    min_level : phases where either centre is below this (or not positive) are left out: a
        ratio of near-zero centres (an error count of 0 or 1) says nothing about the day type.
    prior : the relative uncertainty of a factor nothing supports; see ``uncertainty`` below.
    bounds : the factor is clipped to this range.

    Returns
    -------
    DayTypeFactor
        ``factor`` the median of the per-phase ratios, clipped to ``bounds``. ``uncertainty``
        the scaled MAD of those ratios relative to the factor (how much the ratio depends on
        the hour), and no less than ``prior / sqrt(hours)``: a factor seen at one hour is
        barely better than none, one seen at twelve is worth a third of the prior.
    """
    weekday, weekend = np.asarray(weekday, dtype=float), np.asarray(weekend, dtype=float)
    shared = comparable(weekday, weekend, min_level)
    hours = int(shared.sum())
    if hours == 0:
        return DayTypeFactor(float("nan"), float(prior), 0)
    ratios = weekend[shared] / weekday[shared]
    middle = float(np.median(ratios))
    factor = float(np.clip(middle, *bounds))
    spread = 1.4826 * float(np.median(np.abs(ratios - middle))) / factor
    return DayTypeFactor(factor, max(spread, prior / np.sqrt(hours)), hours)
