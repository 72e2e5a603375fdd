"""Seasonal baselines and the robust z-score detector, on small synthetic series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.anomaly import Anomaly
from detection.baseline import SeasonalBaseline
from detection.frames import MetricFrameError
from detection.zscore import RobustZDetector


def weekly_history(days: int = 14, seed: int = 0) -> pd.DataFrame:
    """CPU high in working hours, low at night; latency flat; errors rare."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-11-02", periods=days * 1440, freq="1min", tz="UTC")
    working = (index.hour >= 9) & (index.hour < 17)
    return pd.DataFrame({
        "cpu_utilization": np.where(working, 60.0, 10.0) + rng.normal(0, 1, len(index)),
        "response_time": 0.2 + rng.normal(0, 0.005, len(index)),
        "error_count": rng.poisson(0.2, len(index)).astype(float),
    }, index=index)


def test_anomaly_renders_like_the_operators_text() -> None:
    cpu = Anomaly.build("cpu_utilization", "2026-11-02T10:00Z", 60.2, 4.4, 0, 9, 12.0)
    latency = Anomaly.build("response_time", "2026-11-02T10:00Z", 1.234, 0.15, 0, 0.2, 9.0)
    errors = Anomaly.build("error_count", "2026-11-02T10:00Z", 14, 0, 0, 4, 14.0)
    assert cpu.render() == "CPU: 60% (expected 4%)"
    assert latency.render() == "Response time: 1.23s (expected 0.15s)"
    assert errors.render() == "Errors: 14 (expected 0)"
    assert cpu.to_dict()["text"] == "CPU: 60% (expected 4%)"


def test_baseline_learns_each_hour_of_the_week() -> None:
    baseline = SeasonalBaseline().fit(weekly_history())
    assert baseline.resolution_ == "hour_of_week"
    at = pd.DatetimeIndex(["2026-11-16 11:30", "2026-11-16 03:30"], tz="UTC")
    centre = baseline.expected("cpu_utilization", at).centre
    assert centre[0] == pytest.approx(60, abs=1) and centre[1] == pytest.approx(10, abs=1)


def test_short_history_falls_back_to_day_type_and_hour() -> None:
    baseline = SeasonalBaseline().fit(weekly_history(days=3))  # Monday to Wednesday
    assert baseline.resolution_ == "day_type_hour"
    noon_sunday = pd.DatetimeIndex(["2026-11-08 12:00"], tz="UTC")
    assert baseline.expected("cpu_utilization", noon_sunday).centre[0] == pytest.approx(60, abs=1)
    assert baseline.describe("cpu_utilization").loc[6 * 24 + 12, "level"] == "other_day_type_unscaled"


def test_excluded_ranges_do_not_shape_the_baseline() -> None:
    other = weekly_history()
    other.loc[pd.Timestamp("2026-11-10 10:00", tz="UTC"):pd.Timestamp("2026-11-10 10:59", tz="UTC"),
              "cpu_utilization"] = 100.0
    at = pd.DatetimeIndex(["2026-11-17 10:30"], tz="UTC")
    skewed = SeasonalBaseline().fit(other).expected("cpu_utilization", at).centre[0]
    clean = SeasonalBaseline().fit(other, exclude=[("2026-11-10 10:00Z", "2026-11-10 10:59Z")])
    assert skewed == pytest.approx(80, abs=2)
    assert clean.expected("cpu_utilization", at).centre[0] == pytest.approx(60, abs=1)


def test_detector_flags_a_rise_with_its_expected_value_and_ignores_a_drop() -> None:
    detector = RobustZDetector().fit(weekly_history())
    index = pd.date_range("2026-11-16 10:00", periods=3, freq="1min", tz="UTC")
    live = pd.DataFrame({"cpu_utilization": [61.0, 95.0, 2.0], "response_time": [0.2] * 3,
                         "error_count": [0.0] * 3}, index=index)
    found = detector.detect(live)
    assert [(a.metric, a.timestamp) for a in found] == [("cpu_utilization", index[1])]
    assert found[0].render() == "CPU: 95% (expected 60%)"
    assert found[0].upper < 95 and found[0].score > detector.threshold


def test_errors_need_more_than_a_stray_one() -> None:
    detector = RobustZDetector().fit(weekly_history())
    index = pd.date_range("2026-11-16 10:00", periods=2, freq="1min", tz="UTC")
    live = pd.DataFrame({"error_count": [2.0, 12.0]}, index=index)
    assert [a.value for a in detector.detect(live)] == [12.0]


def test_within_baseline_reads_the_median_not_one_noisy_minute() -> None:
    detector = RobustZDetector().fit(weekly_history())
    index = pd.date_range("2026-11-16 10:00", periods=3, freq="1min", tz="UTC")
    one_spike = pd.DataFrame({"cpu_utilization": [60.0, 99.0, 61.0]}, index=index)
    still_high = pd.DataFrame({"cpu_utilization": [90.0, 99.0, 61.0]}, index=index)
    assert detector.within_baseline(one_spike, ["cpu_utilization"]) == {"cpu_utilization": True}
    assert detector.within_baseline(still_high, ["cpu_utilization"]) == {"cpu_utilization": False}


def test_detector_names_what_is_wrong_with_its_input() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        RobustZDetector().score(weekly_history(days=1))
    detector = RobustZDetector().fit(weekly_history(days=2))
    index = pd.date_range("2026-11-16", periods=2, freq="1min", tz="UTC")
    with pytest.raises(KeyError, match="disk_io"):
        detector.score(pd.DataFrame({"disk_io": [1.0, 2.0]}, index=index))
    with pytest.raises(MetricFrameError, match="finite"):
        detector.score(pd.DataFrame({"cpu_utilization": [1.0, np.inf]}, index=index))
    with pytest.raises(MetricFrameError, match="DatetimeIndex"):
        detector.score(pd.DataFrame({"cpu_utilization": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="threshold"):
        RobustZDetector(threshold=0).fit(weekly_history(days=1))
