"""Rolling medians: the same figures as pandas' rolling median, bit for bit, on gappy series."""

import numpy as np
import pandas as pd
import pytest

from detection.rolling import rolling_count, rolling_max, rolling_median, rolling_median_over, rolling_min


def _gappy(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=n).round(1)  # ties: an even window takes the mean of the middle two
    x[rng.random(n) < 0.2] = np.nan
    x[: n // 5] = np.nan  # a missing start, as a warm-up leaves it
    return x


@pytest.mark.parametrize("window,min_periods,center", [
    (1, 1, False), (5, 1, True), (4, 1, True), (25, 1, False), (48, 48, False), (288, 28, False),
    (2000, 3, False),  # longer than the series
])
def test_rolling_median_is_pandas_rolling_median(window, min_periods, center):
    x = _gappy(np.random.default_rng(window), 700)
    expected = pd.Series(x).rolling(window, min_periods=min_periods, center=center).median().to_numpy()
    np.testing.assert_array_equal(rolling_median(x, window, min_periods, center=center), expected)


def test_rolling_median_of_nothing_and_too_few():
    assert rolling_median(np.empty(0), 5, 1).shape == (0,)
    assert np.isnan(rolling_median(np.arange(3.0), 10, 5)).all()  # never 5 values in a window


@pytest.mark.parametrize("freq,span", [("1min", "3min"), ("1min", "15min"), ("2min", "3min"), ("5min", "1h")])
def test_time_window_median_on_a_grid_and_off_it(freq, span):
    rng = np.random.default_rng(3)
    index = pd.date_range("2026-03-01", periods=600, freq=freq, tz="UTC")
    values = pd.Series(_gappy(rng, len(index)), index=index)
    uneven = values.drop(index[[7, 8, 100, 333]])  # missing timestamps: not a grid any more
    for series in (values, uneven, values.set_axis(index.as_unit("s"))):
        expected = series.rolling(pd.Timedelta(span), min_periods=1).median().to_numpy()
        np.testing.assert_array_equal(rolling_median_over(series, pd.Timedelta(span)), expected)


def test_a_time_window_needs_timestamps():
    with pytest.raises(ValueError):
        rolling_median_over(pd.Series([1.0, 2.0, 3.0]), pd.Timedelta("3min"))


@pytest.mark.parametrize("window,min_periods", [
    (1, 1), (3, 1), (144, 1), (48, 48), (288, 28), (50, 0),
    (2000, 150), (1999, 76),  # longer than the series, as the 30-day history is on 14 days
])
def test_rolling_max_min_and_count_are_pandas_bit_for_bit(window, min_periods):
    for n in (0, 1, 5, 700):
        x = _gappy(np.random.default_rng(window + n), n)
        x[3::17] = -0.0  # signed zeros tie with 0.0: the same one is kept
        x[5::19] = 0.0
        rolling = pd.Series(x, dtype=float).rolling(window, min_periods=min_periods)
        for ours, theirs in ((rolling_max, rolling.max), (rolling_min, rolling.min),
                             (rolling_count, rolling.count)):
            got, expected = ours(x, window, min_periods), theirs().to_numpy()
            assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), (ours.__name__, n)
