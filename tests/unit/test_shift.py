"""The level-shift member: a step is seen where no baseline can tell the level, a ramp and noise
are not, the past alone decides, and one-minute and five-minute data read alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.shift import LevelShiftDetector, level_shift, outward_shift
from simulation.physics import Conditions, ServiceShape, history, normal_load, service_metrics

END = pd.Timestamp("2026-12-05T01:00:00Z")   # Saturday 01:00: three weekdays and one weekend hour
CPU, REQUESTS, MEMORY = "cpu_utilization", "request_count", "memory_utilization"


def minutes(start: str, n: int, load_factor: float = 1.0, from_minute: int = 0,
            seed: int = 3) -> pd.DataFrame:
    """``n`` simulated minutes from ``start``; the load multiplied by ``load_factor`` from
    minute ``from_minute`` on (a surge)."""
    shape = ServiceShape()
    index = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    load = normal_load(index, shape) * np.where(np.arange(n) >= from_minute, load_factor, 1.0)
    return service_metrics(index, Conditions(load=load, tasks=np.full(n, 2)), shape,
                           np.random.default_rng(seed))


@pytest.fixture(scope="module")
def detector() -> LevelShiftDetector:
    return LevelShiftDetector().fit(history(END, 3, ServiceShape(), np.random.default_rng(1)))


def test_a_surge_on_a_day_the_history_lacks_is_a_shift_of_many_spreads(detector) -> None:
    frame = minutes("2026-12-05T02:30", 60, load_factor=1.5, from_minute=30)
    scores = detector.score(frame)
    assert scores[CPU].iloc[31:40].min() > 5, "the step, while the reference is before it"
    assert scores[CPU].iloc[17:30].max() < 3, "quiet Saturday minutes before it"


def test_a_quiet_day_stays_inside_the_training_tail(detector) -> None:
    quiet = minutes("2026-12-05T01:00", 1440, seed=4)
    scores = detector.score(quiet).drop(columns=REQUESTS)
    limit = detector.threshold_.drop(REQUESTS)
    assert (scores > 2 * limit).to_numpy().sum() == 0


def test_a_drop_in_cpu_is_not_a_symptom(detector) -> None:
    frame = minutes("2026-12-05T02:30", 60, load_factor=0.5, from_minute=30)
    assert detector.score(frame)[CPU].max() < 3


def test_the_past_alone_decides_and_a_short_frame_says_nothing(detector) -> None:
    frame = minutes("2026-12-05T02:30", 60, load_factor=1.5, from_minute=30)
    whole = detector.score(frame)
    cut = detector.score(frame.iloc[:35])
    pd.testing.assert_frame_equal(whole.iloc[:35], cut)
    assert detector.score(frame.iloc[:5]).isna().all().all(), "no reference window: no evidence"


def test_durations_not_rows_five_minute_data_reads_like_one_minute_data() -> None:
    index = pd.date_range("2026-12-01", periods=120, freq="1min", tz="UTC")
    step = pd.Series(np.where(np.arange(120) >= 60, 10.0, 0.0), index=index)
    fine = level_shift(step, pd.Timedelta("5min"), pd.Timedelta("30min"))
    coarse = level_shift(step.resample("5min").mean(), pd.Timedelta("5min"), pd.Timedelta("30min"))
    assert fine[64] == pytest.approx(10.0) and coarse[12] == pytest.approx(10.0)
    assert np.nanmax(np.abs(fine[:60])) == 0 and np.nanmax(np.abs(coarse[:12])) == 0


def test_bad_settings_are_named() -> None:
    frame = history(END, 1, ServiceShape(), np.random.default_rng(1))
    with pytest.raises(ValueError, match="recent must be a duration"):
        LevelShiftDetector(recent="soon").fit(frame)
    with pytest.raises(ValueError, match="reference must be positive"):
        LevelShiftDetector(reference="-5min").fit(frame)
    with pytest.raises(RuntimeError, match="not fitted"):
        LevelShiftDetector().score(frame)


def test_climbing_back_into_the_band_from_below_is_no_symptom() -> None:
    """A service scaled back from three tasks to two: CPU per task jumps back to its normal."""
    detector = LevelShiftDetector().fit(history(pd.Timestamp("2026-12-01T10:00Z"), 3, ServiceShape(),
                                                np.random.default_rng(1)))
    shape = ServiceShape()
    index = pd.date_range("2026-12-01T10:00", periods=60, freq="1min", tz="UTC")
    tasks = np.where(np.arange(60) < 30, 3, 2)
    frame = service_metrics(index, Conditions(load=normal_load(index, shape), tasks=tasks), shape,
                            np.random.default_rng(5))
    assert detector.score(frame)[CPU].max() < 3


def test_only_the_part_of_a_move_beyond_the_centre_counts() -> None:
    index = pd.date_range("2026-12-01", periods=40, freq="1min", tz="UTC")
    def moved(before: float, after: float) -> float:
        deviation = pd.Series(np.where(np.arange(40) < 20, before, after), index=index)
        return float(outward_shift(deviation, pd.Timedelta("3min"), pd.Timedelta("15min"))[25])
    assert moved(0.0, 9.0) == 9.0 and moved(-6.0, 3.0) == 3.0 and moved(-9.0, 0.0) == 0.0
    assert moved(8.0, 2.0) == 0.0 and moved(0.0, -5.0) == -5.0 and moved(-8.0, -2.0) == 0.0
