"""The seasonal residual detector (robust STL carried forward by phase) on simulated service data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.frames import MetricFrameError
from detection.seasonal import SeasonalResidualDetector
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-16", tz="UTC")  # a Monday
CPU = "cpu_utilization"

# Not checked with sklearn's parametrize_with_checks: fit and score take metric DataFrames on a
# DatetimeIndex (the phase of the day and week is the model), which sklearn's checks never pass.


def service_history(days: int = 14, seed: int = 0) -> pd.DataFrame:
    return history(END, days, ServiceShape(), np.random.default_rng(seed))


def next_day(seed: int = 1) -> pd.DataFrame:
    return history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(seed))


@pytest.fixture(scope="module")
def detector() -> SeasonalResidualDetector:
    return SeasonalResidualDetector().fit(service_history())


def test_a_normal_day_stays_quiet(detector) -> None:
    flags = detector.predict(next_day())
    assert flags.to_numpy().mean() < 0.002
    assert detector.repeat_ == pd.Timedelta(days=7)
    assert "quantile" in detector.threshold_method_


@pytest.mark.parametrize("fault", ["spike", "level_shift", "slow_drift"])
def test_injected_faults_are_found_where_they_are(detector, fault: str) -> None:
    day = next_day()
    at = slice(600, 660)  # 10:00 to 11:00
    if fault == "spike":
        day.iloc[600:603, 0] += 15.0
        at = slice(600, 603)
    elif fault == "level_shift":
        day.iloc[600:660, 0] += 8.0
    else:
        day.iloc[600:660, 0] += np.linspace(0, 12, 60)
    flags = detector.predict(day)[CPU]
    assert flags.iloc[at].mean() > (0.5 if fault != "slow_drift" else 0.3)
    assert flags.iloc[:600].sum() <= 2


def test_the_expected_value_follows_the_day_and_the_weekend(detector) -> None:
    peak = pd.DatetimeIndex(["2026-11-16 16:00", "2026-11-21 16:00", "2026-11-16 04:00"], tz="UTC")
    centre = detector.expected(CPU, peak).centre
    weekday_peak, weekend_peak, night = centre
    assert weekday_peak == pytest.approx(44, abs=1.5)
    assert weekend_peak < weekday_peak - 5 and night < weekend_peak


def test_gaps_and_uneven_sampling_are_handled() -> None:
    hist = service_history()
    rng = np.random.default_rng(3)
    thinned = hist[rng.random(len(hist)) > 0.3]                 # uneven: 30% of minutes missing
    outage = (thinned.index >= "2026-11-08 02:00") & (thinned.index < "2026-11-08 08:00")
    thinned = thinned[~outage]                                  # a six-hour outage
    model = SeasonalResidualDetector().fit(thinned)
    assert 0.9 < model.coverage_[CPU] < 1.0
    day = next_day()
    assert model.predict(day).to_numpy().mean() < 0.003
    day.iloc[600:605, 0] += 15.0
    assert model.predict(day)[CPU].iloc[600:605].all()


def test_excluded_ranges_are_gaps_not_normal() -> None:
    hist = service_history()
    deploy = ("2026-11-09 10:00Z", "2026-11-09 12:00Z")
    hist.loc[pd.Timestamp(deploy[0]):pd.Timestamp(deploy[1]), CPU] = 95.0
    clean = SeasonalResidualDetector().fit(hist, exclude=[deploy])
    assert clean.training_scores_.loc[pd.Timestamp(deploy[0]):pd.Timestamp(deploy[1]), CPU].isna().all()
    at = pd.DatetimeIndex(["2026-11-16 11:00"], tz="UTC")
    assert clean.expected(CPU, at).centre[0] < 50


def test_an_incident_left_in_the_history_does_not_become_next_weeks_normal() -> None:
    hist = service_history()
    incident = slice(pd.Timestamp("2026-11-10 08:00Z"), pd.Timestamp("2026-11-10 14:00Z"))
    dirty = hist.copy()
    dirty.loc[incident, CPU] += 40.0  # six hours nobody excluded
    same_phase = pd.date_range("2026-11-17 08:00", "2026-11-17 14:00", freq="10min", tz="UTC")
    clean = SeasonalResidualDetector().fit(hist).expected(CPU, same_phase)
    learned = SeasonalResidualDetector().fit(dirty).expected(CPU, same_phase)
    assert np.max(np.abs(learned.centre - clean.centre) / clean.spread) < 1.0
    plain = SeasonalResidualDetector(robust=False).fit(dirty).expected(CPU, same_phase)
    assert np.max(np.abs(plain.centre - clean.centre) / clean.spread) > 3.0  # what robustness buys


def test_short_history_uses_daily_phase_and_too_short_is_refused() -> None:
    assert SeasonalResidualDetector().fit(service_history(days=3)).repeat_ == pd.Timedelta(days=1)
    with pytest.raises(MetricFrameError, match="two periods"):
        SeasonalResidualDetector().fit(service_history(days=1))


def test_a_constant_series_is_scored_with_the_floor_spread() -> None:
    index = pd.date_range("2026-11-02", periods=3 * 1440, freq="1min", tz="UTC")
    model = SeasonalResidualDetector().fit(pd.DataFrame({CPU: 20.0}, index=index))
    live_index = pd.date_range("2026-11-05", periods=3, freq="1min", tz="UTC")
    scores = model.score(pd.DataFrame({CPU: [20.0, 20.2, 30.0]}, index=live_index))[CPU]
    assert scores.iloc[0] == 0 and scores.iloc[1] < 1 and scores.iloc[2] > 10


def test_scores_do_not_depend_on_later_points_or_row_order(detector) -> None:
    day = next_day()
    whole = detector.score(day)
    prefix = detector.score(day.iloc[:100])
    pd.testing.assert_frame_equal(prefix, whole.iloc[:100])
    shuffled = day.sample(frac=1.0, random_state=0)
    doubled = pd.concat([shuffled, shuffled.iloc[:10]])
    pd.testing.assert_frame_equal(detector.score(doubled), whole, check_freq=False)


def test_bad_input_and_settings_are_named(detector) -> None:
    index = pd.date_range("2026-11-16", periods=2, freq="1min", tz="UTC")
    with pytest.raises(RuntimeError, match="not fitted"):
        SeasonalResidualDetector().score(next_day())
    with pytest.raises(MetricFrameError, match="finite"):
        detector.score(pd.DataFrame({CPU: [1.0, np.inf]}, index=index))
    with pytest.raises(KeyError, match="disk_io"):
        detector.score(pd.DataFrame({"disk_io": [1.0, 2.0]}, index=index))
    gap = detector.score(pd.DataFrame({CPU: [np.nan, 30.0]}, index=index))[CPU]
    assert gap.isna().tolist() == [True, False]
    with pytest.raises(ValueError, match="period"):
        SeasonalResidualDetector(period="7min").fit(service_history(days=3))
    with pytest.raises(ValueError, match="seasonal"):
        SeasonalResidualDetector(seasonal=4).fit(service_history(days=3))
    with pytest.raises(ValueError, match="outer_iter"):
        SeasonalResidualDetector(outer_iter=-1).fit(service_history(days=3))
    sparse = service_history(days=3).iloc[::20]
    with pytest.raises(MetricFrameError, match="bins"):
        SeasonalResidualDetector(freq="5min").fit(sparse)
    fixed = SeasonalResidualDetector(threshold=6.0).fit(service_history(days=3))
    assert fixed.threshold_method_ == "fixed at 6" and (fixed.threshold_ == 6.0).all()
