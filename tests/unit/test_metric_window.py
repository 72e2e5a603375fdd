"""The metric window the watcher keeps in the incident log: what an incident's plots are drawn from."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.metric_window import EVENT, capture_window, incident_series, window_frames
from service.settings import ServiceTarget, Settings
from tests.fakes import Clock, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def test_the_watcher_keeps_the_window_at_opening_and_at_verification(tmp_path, detector) -> None:
    clock = Clock(T0)
    settings = Settings(data_dir=tmp_path)
    source = FakeSource([(T0 + 3 * MINUTE, T0 + 10 * MINUTE, "high_cpu")])
    platform = fake_platform(settings, clock=clock)
    store = platform.store
    watcher = platform.watcher(ServiceTarget(), detector, source=source)
    for _ in range(30):
        watcher.tick()
        clock.advance()
    incident = store.list()[0]
    events = store.events(incident.id)
    windows = [e for e in events if e["kind"] == EVENT]
    assert [w["data"]["phase"] for w in windows] == ["opened", "verification"]
    assert len(json.dumps(windows)) < 20_000, "kept compact"

    series = incident_series(events)
    cpu = series["cpu_utilization"]
    assert cpu.index.is_monotonic_increasing
    assert cpu.index.min() < T0 + 3 * MINUTE and cpu.index.max() >= incident.verified_at - MINUTE
    surge = cpu.loc[T0 + 3 * MINUTE: T0 + 4 * MINUTE]
    assert (surge["observed"] == 85.0).all() and (surge["upper"] < 85.0).all(), \
        "the surge stands above the band"
    quiet = cpu.loc[incident.verified_at - 5 * MINUTE:]
    assert ((quiet["lower"] <= quiet["observed"]) & (quiet["observed"] <= quiet["upper"])).all(), \
        "after the fix the observations sit inside the band"
    assert abs(cpu["expected"].median() - 30) < 1


def test_a_missing_minute_stays_missing_and_nan_is_null(detector) -> None:
    index = pd.date_range(T0, periods=5, freq="1min")
    frame = normal(index, np.random.default_rng(1)).drop(index[2])
    frame.iloc[0, 0] = np.nan
    payload = capture_window(detector, frame, MINUTE, "opened")
    text = json.dumps(payload, allow_nan=False)  # valid JSON: no NaN tokens
    assert len(json.loads(text)["metrics"]["cpu_utilization"]["observed"]) == 5
    back = window_frames(payload)["cpu_utilization"]
    assert list(back.index) == list(index)
    assert np.isnan(back["observed"].iloc[0]) and np.isnan(back["observed"].iloc[2])
    assert (back["lower"] < back["expected"]).all() and (back["expected"] < back["upper"]).all()


def test_later_windows_win_where_they_overlap() -> None:
    def event(start, values):
        return {"kind": EVENT, "data": {"start": start.isoformat(), "step_seconds": 60, "metrics": {
            "cpu_utilization": {"observed": values, "expected": [1.0] * len(values),
                                "lower": [0.0] * len(values), "upper": [2.0] * len(values)}}}}

    merged = incident_series([event(T0, [1.0, 2.0, 3.0]), {"kind": "opened", "data": {}},
                              event(T0 + 2 * MINUTE, [9.0, 10.0])])
    assert merged["cpu_utilization"]["observed"].tolist() == [1.0, 2.0, 9.0, 10.0]
    assert incident_series([{"kind": "opened", "data": {}}]) == {}


def test_a_payload_that_is_not_a_window_is_named() -> None:
    with pytest.raises(ValueError, match="not a metrics_window payload"):
        window_frames({"start": "2026-11-16T10:00Z"})


def test_the_ensembles_band_is_its_own_width_not_its_calibrated_threshold(detector) -> None:
    class Ensemble:  # what the watcher sees of ServiceDetector: a [0, 1] threshold, band_z_ spreads
        threshold = 0.9999
        baseline_ = detector.baseline_
        band_z_ = pd.Series({"cpu_utilization": 3.0})

        def expected_frame(self, index, metrics):
            return detector.expected_frame(index, metrics)

    index = pd.date_range(T0, periods=3, freq="1min")
    frame = normal(index, np.random.default_rng(2))[["cpu_utilization"]]
    back = window_frames(capture_window(Ensemble(), frame, MINUTE, "opened"))["cpu_utilization"]
    spread = detector.baseline_.expected("cpu_utilization", index).spread
    assert np.allclose(back["upper"] - back["expected"], 3.0 * spread, rtol=1e-4)
