"""Calibration to [0, 1], thresholds and alarm grouping, as configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from detection.postprocess import (
    AlarmGrouper,
    GroupingConfig,
    PostProcessConfig,
    PostProcessor,
    TailCalibrator,
)


@parametrize_with_checks([TailCalibrator()])
def test_calibrator_follows_the_sklearn_api(estimator, check) -> None:
    check(estimator)


def training_scores(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([np.abs(rng.normal(size=n)), rng.exponential(0.1, size=n)])


def test_calibrated_scores_lie_in_0_1_and_keep_the_order() -> None:
    calibrator = TailCalibrator().fit(training_scores())
    raw = np.linspace(-2, 12, 3001)
    calibrated = calibrator.transform(np.column_stack([raw, raw]))
    assert (calibrated >= 0).all() and (calibrated <= 1).all()
    assert (np.diff(calibrated, axis=0) >= 0).all()
    # beyond everything seen in training the tail still ranks points, short of 1
    beyond = calibrator.transform([[5.0, 2.0], [6.0, 2.5]])
    assert (beyond[1] > beyond[0]).all() and (beyond < 1).all()


def test_a_calibrated_score_reads_as_a_share_of_normal_points() -> None:
    calibrator = TailCalibrator().fit(training_scores())
    fresh = calibrator.transform(training_scores(seed=1))
    for level in (0.9, 0.99, 0.999):
        assert (fresh > level).mean() == pytest.approx(1 - level, rel=0.5, abs=3e-4)


def test_calibration_round_trips_and_keeps_missing_points() -> None:
    calibrator = TailCalibrator().fit(training_scores())
    raw = np.array([[0.5, 0.05], [3.9, 0.9]])
    np.testing.assert_allclose(calibrator.inverse_transform(calibrator.transform(raw)), raw, rtol=1e-6)
    assert np.isnan(calibrator.transform([[np.nan, 0.1]])[0, 0])
    surprise = calibrator.surprise([[3.0, 0.5], [30.0, 5.0]])
    assert (surprise[1] > surprise[0]).all() and np.isfinite(surprise).all()


def test_calibrating_the_training_scores_while_fitting_gives_the_same_values() -> None:
    """``fit_surprise`` and ``fit_transform`` look the training scores up in sorted order: the
    same bits as ``fit`` then ``surprise``/``transform``, and the same quantiles as fitting on
    ``np.sort``'s columns, ties, missing points and signed zeros (-0.0 ties with 0.0) included."""
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=3000), np.round(rng.exponential(size=3000), 1),
                         np.where(rng.random(3000) < 0.5, 0.0, rng.random(3000))])
    X[rng.random(X.shape) < 0.02] = np.nan
    for signed_zeros in (False, True):
        if signed_zeros:
            X[::7, 2] = -0.0
        fitted = TailCalibrator().fit(X)
        sorted_fit = QuantileTransformer(n_quantiles=1000, subsample=None).fit(np.sort(X, axis=0))
        assert fitted.quantiles_.quantiles_.tobytes() == sorted_fit.quantiles_.tobytes()
        for method, plain in (("fit_surprise", fitted.surprise(X)), ("fit_transform", fitted.transform(X))):
            calibrator = TailCalibrator()
            assert getattr(calibrator, method)(X).tobytes() == plain.tobytes()
            for name in ("tail_start_", "tail_scale_", "tail_level_"):
                assert getattr(calibrator, name).tobytes() == getattr(fitted, name).tobytes()
            assert calibrator.quantiles_.quantiles_.tobytes() == fitted.quantiles_.quantiles_.tobytes()


def test_a_constant_training_column_gets_the_fallback_tail() -> None:
    calibrator = TailCalibrator(fallback_scale=1.0).fit(np.zeros((100, 1)))
    zero, one, ten = calibrator.transform([[0.0], [1.0], [10.0]])[:, 0]
    assert zero == 0 and one == pytest.approx(1 - np.exp(-1)) and 0.9999 < ten < 1


def minutes(*offsets: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp("2026-11-16 10:00", tz="UTC") + pd.Timedelta(minutes=m)
                             for m in offsets])


def test_each_burst_opens_one_alarm() -> None:
    index = minutes(*range(60))
    scores = pd.DataFrame({"cpu": 0.1, "errors": 0.1}, index=index)
    scores.iloc[[3]] = 0.99                    # a lone point: no alarm
    scores.iloc[10:20, 0] = 0.99               # a burst
    scores.iloc[[24, 30], 1] = 0.99            # stragglers within the cooldown join it
    scores.iloc[50:53, 1] = 0.99               # a second burst after a quiet spell
    alarms = AlarmGrouper(GroupingConfig(min_points=2, window="3min", cooldown="15min")).group(scores, 0.9)
    assert len(alarms) == 2
    first, second = alarms
    assert (first.opened_at, first.start, first.end) == (index[11], index[10], index[30])
    assert first.points == 12 and first.metrics == ("cpu", "errors")
    assert second.opened_at == index[51] and second.metrics == ("errors",)


def test_grouping_works_on_uneven_timestamps() -> None:
    index = minutes(0, 1, 7, 8, 9)
    scores = pd.Series([0.95, 0.1, 0.95, 0.1, 0.95], index=index, name="cpu")
    alarms = AlarmGrouper(GroupingConfig(min_points=2, window="3min", cooldown="1min")).group(scores, 0.9)
    assert [a.opened_at for a in alarms] == [index[4]]


def test_post_processing_steps_switch_off_by_configuration() -> None:
    index = minutes(*range(5000))
    train = pd.DataFrame(training_scores()[:, :1], index=index, columns=["cpu"])
    live = pd.DataFrame({"cpu": [0.1, 6.0, 6.5, 0.2]}, index=minutes(*range(4)))
    grouped = PostProcessor(PostProcessConfig()).fit(train)
    assert len(grouped.alarms(live)) == 1
    assert grouped.transform(live)["cpu"].between(0, 1).all()
    per_point = PostProcessor(PostProcessConfig(grouping=None)).fit(train)
    assert len(per_point.alarms(live)) == 2
    raw = PostProcessor(PostProcessConfig(calibrate=False, threshold=5.0)).fit(train)
    pd.testing.assert_frame_equal(raw.transform(live), live)
    assert raw.flags(live)["cpu"].tolist() == [False, True, True, False]


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="tail_quantile"):
        TailCalibrator(tail_quantile=1.5).fit(training_scores())
    with pytest.raises(ValueError, match="window"):
        AlarmGrouper(GroupingConfig(window="soon")).group(pd.Series([1.0], index=minutes(0)), 0.5)
    with pytest.raises(ValueError, match="min_points"):
        GroupingConfig(min_points=0).checked()
    with pytest.raises(ValueError, match="threshold"):
        PostProcessor(PostProcessConfig(threshold=4.0)).fit(pd.DataFrame({"cpu": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="DatetimeIndex"):
        AlarmGrouper().group(pd.Series([1.0, 2.0]), 0.5)
