"""StreamingUnivariateDetector: what a user replaying a metric would notice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.streaming import StreamingUnivariateDetector
from detection.streaming_baseline import StreamingDetector
from training.nab import load_corpus, read_series
from training.nab_benchmark import default_nab_root


def five_minutes(n: int, start: str = "2024-03-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="5min")


def noisy(n: int = 3000, seed: int = 0, level: float = 50.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, 1, n)


def daily(n: int = 3000, seed: int = 1) -> np.ndarray:
    """A square daily cycle (high from 08:00 to 18:00) with noise, on 5-minute rows."""
    hours = (np.arange(n) * 5 / 60) % 24
    return np.where((hours >= 8) & (hours < 18), 80.0, 20.0) + np.random.default_rng(seed).normal(0, 1, n)


def scores_of(values: np.ndarray, **params) -> np.ndarray:
    return StreamingUnivariateDetector(**params).fit_predict_stream(values, five_minutes(len(values)))


def test_it_follows_the_streaming_protocol_and_scores_in_the_unit_interval() -> None:
    detector = StreamingUnivariateDetector()
    assert isinstance(detector, StreamingDetector)
    values = noisy()
    values[2000] += 30
    scores = detector.fit_predict_stream(values, five_minutes(len(values)))
    assert scores.shape == values.shape
    assert np.all((scores >= 0) & (scores < 1))
    assert set(detector.evidence_.columns) == {"range", "shift", "sustained", "surprise", "z", "residual"}


@pytest.mark.parametrize("cut", [400, 1501, 2222])
def test_scores_of_a_prefix_do_not_change_when_rows_are_appended(cut: int) -> None:
    values = daily()
    values[1500:1560] += 25  # a level shift across the cut at 1501
    values[2300] = 300  # a spike after every cut
    values[[100, 900, 2100]] = np.nan
    stamps = five_minutes(len(values)).to_series()
    stamps.iloc[700] = stamps.iloc[699]  # a duplicate timestamp
    stamps = pd.DatetimeIndex(stamps.drop(stamps.index[1200:1230]).tolist()
                              + list(stamps.iloc[-30:] + pd.Timedelta("3h")))  # a gap
    full = StreamingUnivariateDetector().fit_predict_stream(values, stamps)
    prefix = StreamingUnivariateDetector().fit_predict_stream(values[:cut], stamps[:cut])
    np.testing.assert_array_equal(prefix, full[:cut])


def test_an_obvious_spike_gets_the_top_score_on_its_own_row() -> None:
    values = noisy()
    values[2000] = 80.0
    scores = scores_of(values)
    assert int(np.argmax(scores)) == 2000
    assert scores[2000] >= StreamingUnivariateDetector().threshold


def test_a_level_shift_is_flagged_within_the_hour_and_reported_once() -> None:
    values = noisy()
    values[2000:] += 6.0
    detector = StreamingUnivariateDetector()
    scores = detector.fit_predict_stream(values, five_minutes(len(values)))
    alarms = np.flatnonzero(detector.predict(scores))
    assert alarms.size and 2000 <= alarms[0] <= 2012
    assert int(np.argmax(scores)) == alarms[0]
    assert np.sum(alarms >= 2000) <= 2  # one event, not one alarm per shifted row


def test_a_daily_cycle_is_learned_and_a_missing_day_is_flagged() -> None:
    values = daily()
    quiet = StreamingUnivariateDetector()
    quiet_scores = quiet.fit_predict_stream(values, five_minutes(len(values)))
    assert not quiet.predict(quiet_scores)[900:].any()  # regular 08:00 / 18:00 jumps are not alarms
    day = 288
    missing = values.copy()
    start = 7 * day + 96  # 08:00 on day 8: the high phase never comes
    missing[start:start + 120] = 20.0 + np.random.default_rng(2).normal(0, 1, 120)
    detector = StreamingUnivariateDetector()
    scores = detector.fit_predict_stream(missing, five_minutes(len(missing)))
    alarms = np.flatnonzero(detector.predict(scores))
    assert alarms.size and start <= alarms[0] <= start + 60


def test_rows_of_the_warm_up_score_zero_even_when_extreme() -> None:
    values = noisy()
    values[60] = 500.0
    scores = scores_of(values)
    assert not scores[:150].any()


def test_nan_rows_score_zero_and_do_not_disturb_the_others() -> None:
    values = noisy()
    values[2000] = 80.0
    holey = values.copy()
    holey[[500, 1500, 2500]] = np.nan
    scores = scores_of(holey)
    assert scores[[500, 1500, 2500]].tolist() == [0.0, 0.0, 0.0]
    assert int(np.argmax(scores)) == 2000


def test_a_constant_series_scores_zero_and_its_first_change_is_flagged() -> None:
    flat = np.full(2000, 45.0)
    assert not scores_of(flat).any()
    flat[1500:] = 46.0
    scores = scores_of(flat)
    assert int(np.argmax(scores)) == 1500 and scores[1500] >= 0.5


def test_unsorted_duplicate_or_missing_timestamps_are_accepted() -> None:
    values = daily(1500)
    stamps = list(five_minutes(1500))
    stamps[800], stamps[801] = stamps[801], stamps[800]
    stamps[900] = stamps[899]
    scores = StreamingUnivariateDetector().fit_predict_stream(values, pd.DatetimeIndex(stamps))
    assert scores.shape == (1500,)
    assert StreamingUnivariateDetector().fit_predict_stream(values, None).shape == (1500,)


def test_short_and_empty_series_are_scored_without_error() -> None:
    assert scores_of(np.array([])).shape == (0,)
    assert scores_of(np.array([1.0])).tolist() == [0.0]
    assert not scores_of(np.array([1.0, 2.0, 3.0])).any()


@pytest.mark.parametrize("values, stamps, message", [
    (np.array([1.0, np.inf, 2.0]), 3, "infinity at row 1"),
    (np.ones((3, 2)), 3, "one-dimensional"),
    (np.ones(3), 2, "3 values but 2 timestamps"),
])
def test_unusable_input_is_refused_with_the_reason(values, stamps, message) -> None:
    with pytest.raises(ValueError, match=message):
        StreamingUnivariateDetector().fit_predict_stream(values, five_minutes(stamps))


@pytest.mark.parametrize("params, message", [
    ({"window": 288}, "window must be a positive duration such as '4h'"),
    ({"history": "a month"}, "history must be a positive duration"),
    ({"shift_windows": ["1h", "-2h"]}, "shift_windows must be a positive duration"),
    ({"seasonal_cycles": 0}, "seasonal_cycles must be an integer >= 1"),
    ({"threshold": 1.5}, r"threshold must be in \(0, 1\)"),
    ({"shift_windows": []}, "shift_windows must be a non-empty list of durations"),
    ({"seasonal_periods": "1D"}, "seasonal_periods must be a list"),
    ({"seasonal_periods": ["fortnightly"]}, "is not a pandas offset"),
    ({"min_gain": -1}, "min_gain must be a number >= 0"),
    ({"min_z": float("inf")}, "min_z must be a number >= 0"),
])
def test_bad_settings_are_named_when_scoring(params, message) -> None:
    detector = StreamingUnivariateDetector(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=message):
        detector.fit_predict_stream(np.ones(10), five_minutes(10))


def test_decisions_need_scores_first_and_follow_the_threshold() -> None:
    detector = StreamingUnivariateDetector(threshold=0.6)
    with pytest.raises(RuntimeError, match="fit_predict_stream first"):
        detector.predict(np.array([0.7]))
    detector.fit_predict_stream(noisy(300), five_minutes(300))
    assert detector.threshold_ == 0.6
    assert detector.predict(np.array([0.59, 0.6, 0.9])).tolist() == [0, 1, 1]
    assert detector.get_params()["threshold"] == 0.6
    assert detector.set_params(threshold=0.7).threshold == 0.7


def alarm_times(series: pd.Series) -> pd.DatetimeIndex:
    detector = StreamingUnivariateDetector()
    scores = detector.fit_predict_stream(series.to_numpy(), pd.DatetimeIndex(series.index))
    return series.index[detector.predict(scores) == 1]


def test_windows_are_durations_so_one_minute_rows_use_five_times_the_rows() -> None:
    detector = StreamingUnivariateDetector()
    detector.fit_predict_stream(noisy(3000), pd.date_range("2024-03-01", periods=3000, freq="1min"))
    assert detector.sampling_period_ == pd.Timedelta("1min")
    assert (detector.rows_.window, detector.rows_.sustained_window, detector.rows_.refractory) == (1440, 240, 720)
    detector.fit_predict_stream(noisy(3000), five_minutes(3000))
    assert (detector.rows_.window, detector.rows_.sustained_window, detector.rows_.refractory) == (288, 48, 144)


def test_a_level_shift_in_one_minute_data_is_flagged_within_the_hour() -> None:
    values = noisy(15000)
    values[12000:] += 6.0
    detector = StreamingUnivariateDetector()
    scores = detector.fit_predict_stream(values, pd.date_range("2024-03-01", periods=15000, freq="1min"))
    alarms = np.flatnonzero(detector.predict(scores))
    assert alarms.size and 12000 <= alarms[0] <= 12060
    assert np.sum(alarms >= 12000) <= 2


@pytest.mark.parametrize("name", ["realAWSCloudwatch/ec2_network_in_5abac7.csv",
                                  "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv"])
def test_a_dev_series_resampled_to_one_minute_alarms_at_the_same_times(name: str) -> None:
    root = default_nab_root()
    if not (root / "data" / name).is_file():
        pytest.skip(f"the NAB development subset is not at {root}")
    frame = read_series(load_corpus(root), name).drop_duplicates("timestamp")
    five = frame.set_index("timestamp")["value"]
    one = five.resample("1min").asfreq().interpolate("time")  # the same curve, five times the rows
    coarse, fine = alarm_times(five), alarm_times(one)
    assert len(coarse) >= 3
    for these, those in ((coarse, fine), (fine, coarse)):
        for at in these:  # every alarm has a twin within 10 minutes at the other sampling
            assert np.min(np.abs((those - at).total_seconds())) <= 600, (name, at, coarse, fine)
