"""The streaming protocol and its baseline: causal scores in [0, 1], defined behaviour on odd input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.streaming_baseline import RollingRobustZ, StreamingDetector


def series(n: int = 600, seed: int = 0) -> tuple[np.ndarray, pd.DatetimeIndex]:
    rng = np.random.default_rng(seed)
    return 50 + rng.normal(0, 2, n), pd.date_range("2024-01-01", periods=n, freq="5min")


def test_baseline_follows_the_streaming_protocol() -> None:
    assert isinstance(RollingRobustZ(), StreamingDetector)


def test_scores_of_a_prefix_do_not_change_when_rows_are_appended() -> None:
    values, index = series()
    full = RollingRobustZ().fit_predict_stream(values, index)
    for cut in (1, 29, 30, 31, 250, 599):
        prefix = RollingRobustZ().fit_predict_stream(values[:cut], index[:cut])
        np.testing.assert_allclose(prefix, full[:cut], rtol=0, atol=1e-12)


def test_a_spike_scores_high_and_ordinary_rows_low() -> None:
    values, index = series()
    values[400] += 40
    scores = RollingRobustZ().fit_predict_stream(values, index)
    assert scores.min() >= 0 and scores.max() <= 1
    assert scores[400] > 0.8 and np.median(scores[30:]) < 0.2
    assert scores[400] >= RollingRobustZ().threshold > scores[401]


def test_warm_up_rows_score_zero() -> None:
    values, index = series()
    assert not RollingRobustZ(min_periods=30).fit_predict_stream(values, index)[:30].any()


@pytest.mark.parametrize("values, expected", [
    (np.full(100, 3.0), np.zeros(100)),             # constant: nothing is unusual
    (np.zeros(0), np.zeros(0)),                      # empty: empty
    (np.array([7.0]), np.zeros(1)),                  # one row: warm-up
])
def test_degenerate_series_have_defined_scores(values, expected) -> None:
    index = pd.date_range("2024-01-01", periods=len(values), freq="5min")
    np.testing.assert_array_equal(RollingRobustZ().fit_predict_stream(values, index), expected)


def test_a_step_off_a_flat_line_scores_one_and_missing_values_score_zero() -> None:
    values = np.full(100, 3.0)
    values[60], values[70] = 4.0, np.nan
    scores = RollingRobustZ().fit_predict_stream(values, pd.date_range("2024-01-01", periods=100, freq="h"))
    assert scores[60] == 1.0 and scores[70] == 0.0 and np.isfinite(scores).all()


def test_bad_input_and_settings_are_refused_with_a_reason() -> None:
    values, index = series(100)
    with pytest.raises(ValueError, match="infinity at row 5"):
        RollingRobustZ().fit_predict_stream(np.where(np.arange(100) == 5, np.inf, values), index)
    with pytest.raises(ValueError, match="100 values but 99 timestamps"):
        RollingRobustZ().fit_predict_stream(values, index[:99])
    with pytest.raises(ValueError, match="min_periods"):
        RollingRobustZ(window=10, min_periods=20).fit_predict_stream(values, index)
