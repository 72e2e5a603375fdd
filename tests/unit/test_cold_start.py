"""Cold start (issue 10): with less than two weeks of history the detectors are calibrated for
the day type (weekday or weekend) and hour they score, on the simulated service.

The simulator's weekend carries 0.75 of weekday traffic; before day types, a 3-day history
spanning a weekend expected about 4,340 requests a minute on a weekday afternoon where normal is
about 5,500, and flagged most quiet minutes of the next day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.baseline import SeasonalBaseline
from detection.daytype import check_weekend_days, day_type_factor
from detection.ensemble import ServiceDetector
from detection.seasonal import SeasonalResidualDetector
from detection.zscore import RobustZDetector
from simulation.faults import get_fault
from simulation.physics import Conditions, ServiceShape, history, normal_load, service_metrics

SHAPE = ServiceShape()
CPU, REQUESTS, LATENCY = "cpu_utilization", "request_count", "response_time"
HOUR = pd.Timedelta(hours=1)

# (days of history, its end, the first scored hour, how many hours are scored)
CASES = {
    "1 day, weekday afternoon": (1, "2026-12-01 13:00", "2026-12-01 13:00", 6),
    "3 days spanning a weekend, weekday afternoon": (3, "2026-12-01 13:00", "2026-12-01 13:00", 5),
    "3 days spanning a weekend, Monday morning": (3, "2026-11-30 06:00", "2026-11-30 06:00", 6),
    "3 days, Sunday night": (3, "2026-11-29 20:00", "2026-11-29 20:00", 4),
    "7 days, the next day": (7, "2026-12-01 13:00", "2026-12-01 13:00", 24),
    # the calendar sweep's cell whose Monday morning was judged by the weekend (see below)
    "7 days ending a Monday afternoon": (7, "2026-11-30 13:00", "2026-11-30 13:00", 6),
    "8 days ending a Monday afternoon (streaming member on)": (8, "2026-11-30 13:00", "2026-11-30 13:00", 6),
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def past(days: int, end: str, seed: int = 0) -> pd.DataFrame:
    return history(utc(end), days, SHAPE, np.random.default_rng(seed))


def next_day(end: str, load_factor: float = 1.0, seed: int = 1) -> pd.DataFrame:
    """The 24 hours after ``end``: normal, or with the load multiplied (a surge)."""
    index = pd.date_range(utc(end), periods=1440, freq="1min")
    cond = Conditions(load=normal_load(index, SHAPE) * load_factor,
                      tasks=np.full(len(index), SHAPE.nominal_tasks))
    return service_metrics(index, cond, SHAPE, np.random.default_rng(seed))


def truth(index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """The noise-free requests and CPU of the simulated service (simulation.physics)."""
    load = normal_load(index, SHAPE)
    return {REQUESTS: load, CPU: SHAPE.cpu_idle + SHAPE.cpu_at_peak * load / SHAPE.peak_rpm}


def hourly_truth(hours: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """The truth averaged over each scored hour: a baseline has one centre per hour."""
    minutes = pd.date_range(hours[0], hours[-1] + HOUR, freq="1min", inclusive="left")
    return {m: pd.Series(v, index=minutes).groupby(minutes.floor("h")).mean().to_numpy()
            for m, v in truth(minutes).items()}


def scored_hours(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(utc(start), periods=n, freq="1h")


# ------------------------------------------------------------------ the baseline's expected values
@pytest.mark.parametrize("case", list(CASES))
def test_the_baseline_expects_the_normal_of_the_day_type_and_hour(case: str) -> None:
    days, end, start, n = CASES[case]
    baseline = SeasonalBaseline().fit(past(days, end))
    hours = scored_hours(start, n)
    normal = hourly_truth(hours)
    for metric in (REQUESTS, CPU):
        centre = baseline.expected(metric, hours).centre
        assert np.abs(centre / normal[metric] - 1).max() < 0.03, (metric, centre, normal[metric])
    assert baseline.resolution_ == "day_type_hour"
    assert set(baseline.levels_[REQUESTS].iloc[hours.day_of_week * 24 + hours.hour]) == {"day_type_hour"}


def test_a_weekday_afternoon_after_a_weekend_is_no_longer_judged_by_the_weekend() -> None:
    baseline = SeasonalBaseline().fit(past(3, "2026-12-01 13:00"))  # Saturday 13:00 to Tuesday 13:00
    at = pd.DatetimeIndex([utc("2026-12-01 14:00")])
    assert baseline.expected(REQUESTS, at).centre[0] == pytest.approx(5_900, rel=0.02)
    assert baseline.expected(CPU, at).centre[0] == pytest.approx(43.3, rel=0.02)
    saturday = pd.DatetimeIndex([utc("2026-12-05 14:00")])
    assert baseline.expected(REQUESTS, saturday).centre[0] == pytest.approx(0.75 * 5_900, rel=0.02)
    assert baseline.day_type_factor_[REQUESTS].factor == pytest.approx(0.75, abs=0.01)


def test_two_weeks_keep_one_bucket_per_hour_of_the_week() -> None:
    baseline = SeasonalBaseline().fit(past(14, "2026-12-01 13:00"))
    assert baseline.resolution_ == "hour_of_week"
    assert (baseline.levels_[CPU] == "hour_of_week").all() and (baseline.days_[CPU] == 2).all()
    assert (baseline.tolerance_[CPU] == 0).all()


# ------------------------------------------------------------------ RobustZDetector on the next day
@pytest.mark.parametrize("case", list(CASES))
def test_a_quiet_next_day_stays_under_the_z_threshold_and_a_surge_does_not(case: str) -> None:
    days, end, start, n = CASES[case]
    detector = RobustZDetector(threshold=4.0).fit(past(days, end))
    quiet = next_day(end)
    assert int((detector.score(quiet) > detector.threshold).to_numpy().sum()) == 0
    assert detector.detect(quiet) == []
    surge = next_day(end, load_factor=get_fault("load_surge").load_factor)
    window = surge.loc[utc(start):utc(start) + n * HOUR - pd.Timedelta(minutes=1)]
    flagged = detector.score(window)[[REQUESTS, CPU]].gt(detector.threshold).any(axis=1)
    assert flagged.mean() > 0.95


# ------------------------------------------------------------------ the ensemble on the next day
@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("1 day")])
def test_the_ensemble_is_quiet_on_a_normal_next_day_and_catches_a_surge(case: str) -> None:
    days, end, start, n = CASES[case]
    detector = ServiceDetector().fit(past(days, end))
    assert "seasonal" in detector.members_
    quiet = next_day(end)
    assert detector.alarms(quiet) == []
    # isolated minutes in the calibrated 1e-4 tail, never a run: at most 10 of 5 x 1440 scores
    assert int((detector.score(quiet) > detector.threshold).to_numpy().sum()) <= 10
    surge = next_day(end, load_factor=get_fault("load_surge").load_factor)
    window = surge.loc[utc(start):utc(start) + n * HOUR - pd.Timedelta(minutes=1)]
    assert detector.score(window)[[REQUESTS, CPU]].gt(detector.threshold).any(axis=1).mean() > 0.95
    assert detector.alarms(window) != []


# ------------------------------------------------------------------ a day type the history lacks
def test_a_weekday_only_history_widens_the_weekend_band_instead_of_alarming() -> None:
    end = "2026-11-28 00:00"  # Monday to Friday
    hist = past(5, end)
    detector = RobustZDetector().fit(hist)
    baseline = detector.baseline_
    table = baseline.describe(REQUESTS)
    saturday, friday = table.loc[5 * 24 + 14], table.loc[4 * 24 + 14]
    assert saturday["level"] == "other_day_type_unscaled" and saturday["day_type"] == "weekend"
    assert friday["level"] == "day_type_hour" and friday["days"] == 5
    assert not baseline.day_type_factor_[REQUESTS].known
    # the weekday level, with a band four times wider: room for an unmeasured weekend factor
    assert saturday["centre"] == pytest.approx(friday["centre"], rel=0.01)
    assert saturday["spread"] > 4 * friday["spread"] and saturday["tolerance"] > 0
    weekend = next_day(end)  # Saturday, at 0.75 of weekday traffic
    assert detector.detect(weekend) == []
    assert ServiceDetector().fit(hist).alarms(weekend, metrics=[REQUESTS, CPU, LATENCY]) == []


def test_a_weekend_only_history_tolerates_a_busier_monday_and_still_sees_a_surge() -> None:
    end = "2026-11-30 00:00"  # Saturday and Sunday
    detector = ServiceDetector().fit(past(2, end))
    monday = next_day(end)
    assert detector.alarms(monday, metrics=[REQUESTS, CPU, LATENCY]) == []
    seasonal = detector.members_["seasonal"]
    assert seasonal.expected(REQUESTS, monday.index[600:601]).tolerance[0] > 0
    surge = next_day(end, load_factor=get_fault("load_surge").load_factor)
    assert detector.score(surge)[REQUESTS].gt(detector.threshold).mean() > 0.9


# ------------------------------------------------------------------ the seasonal member
@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("1 day")])
def test_the_seasonal_model_judges_a_point_by_days_of_its_type(case: str) -> None:
    days, end, start, n = CASES[case]
    model = SeasonalResidualDetector().fit(past(days, end))
    minutes = pd.date_range(utc(start), periods=n * 60, freq="1min")
    normal = truth(minutes)
    for metric in (REQUESTS, CPU):
        centre = model.expected(metric, minutes).centre
        assert np.abs(centre / normal[metric] - 1).max() < 0.06, metric
        assert np.abs(centre / normal[metric] - 1).mean() < 0.02, metric
    assert model.day_type_factor_[REQUESTS].factor == pytest.approx(0.75, abs=0.01)


def test_the_seasonal_model_keeps_weekly_repeat_at_two_weeks() -> None:
    model = SeasonalResidualDetector().fit(past(14, "2026-12-01 13:00"))
    assert model.repeat_ == pd.Timedelta(days=7) and len(model.spread_[CPU]) == 24


# ------------------------------------------------------------------ the day-type helper
def test_weekend_days_are_configurable_and_checked() -> None:
    assert check_weekend_days([6, 5]) == (5, 6) and check_weekend_days(()) == ()
    for bad in ([7], [5, 5], "sat", [True]):
        with pytest.raises(ValueError, match="weekend_days"):
            check_weekend_days(bad)
    with pytest.raises(ValueError, match="weekend_days"):
        SeasonalBaseline(weekend_days=[8]).fit(past(3, "2026-12-01 13:00"))
    # one day type: weekdays and the weekend pooled, as a service without a weekly rhythm wants
    pooled = SeasonalBaseline(weekend_days=()).fit(past(3, "2026-12-01 13:00"))
    at = pd.DatetimeIndex([utc("2026-12-01 14:00")])
    assert pooled.expected(REQUESTS, at).centre[0] < 0.9 * 5_900


def test_a_day_type_factor_needs_levels_well_above_zero() -> None:
    weekday, weekend = np.array([0.0, 1.0, 100.0, np.nan]), np.array([0.0, 3.0, 80.0, 50.0])
    factor = day_type_factor(weekday, weekend, min_level=10.0, prior=0.25)
    assert factor.factor == pytest.approx(0.8) and factor.hours == 1
    assert factor.uncertainty == pytest.approx(0.25) and factor.to(0) == pytest.approx(1.25)
    errors = day_type_factor(np.zeros(24), np.ones(24), min_level=10.0, prior=0.25)
    assert not errors.known and errors.hours == 0 and errors.to(1) == 1.0


def test_the_streaming_member_waits_for_a_week_before_the_day_it_judges() -> None:
    """With exactly 7 days ending Monday 13:00, the member's weekly predictor had no Monday
    morning to repeat and its daily one followed the weekend: a normal Monday afternoon scored
    as a record rise of response time and memory for hours (the calendar sweep's Mon 13:00 cell:
    6 false alarms). It joins the ensemble from 8 days, when every phase of the week has a
    week-old cycle and a day of the weekly predictor's own errors."""
    assert "streaming" not in ServiceDetector().fit(past(7, "2026-11-30 13:00")).members_
    assert "streaming" in ServiceDetector().fit(past(8, "2026-11-30 13:00")).members_
