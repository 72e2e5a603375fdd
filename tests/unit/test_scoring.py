"""The score use case: the table scorer finds exactly what the detector finds; bad input is named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from rca.payload import PayloadError
from service.scoring import (
    BaselineTable,
    LoadedModel,
    NoModelError,
    Series,
    ServiceModels,
    hours_of_week,
    score_series,
    scorer_for,
)
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-02T00:00Z")


@pytest.fixture(scope="module")
def week_detector() -> RobustZDetector:
    return RobustZDetector().fit(history(END, 14, ServiceShape(), np.random.default_rng(3)))


@pytest.fixture(scope="module")
def cold_detector() -> RobustZDetector:
    """Three days of history: the baselines fall back to day-type x hour-of-day buckets."""
    return RobustZDetector(threshold=3.0).fit(history(END, 3, ServiceShape(), np.random.default_rng(4)))


def _window(start: str, minutes: int, seed: int) -> pd.DataFrame:
    """Normal-looking metrics with a spread of spikes and dips, so every direction is exercised."""
    rng = np.random.default_rng(seed)
    frame = history(pd.Timestamp(start) + pd.Timedelta(minutes=minutes), 1, ServiceShape(), rng)
    frame = frame.iloc[-minutes:].copy()
    for column in frame.columns:
        factor = rng.choice([1.0, 1.0, 1.0, 3.0, 0.2], size=minutes)
        frame[column] = frame[column] * factor
    return frame


def _series(frame: pd.DataFrame, service: str = "web") -> list[Series]:
    stamps = [t.to_pydatetime() for t in frame.index]
    return [Series("c", service, m, stamps, frame[m].tolist()) for m in frame.columns]


@pytest.mark.parametrize("start", ["2026-11-02T10:00Z", "2026-11-08T22:30Z", "2026-11-04T00:00+05:30"])
@pytest.mark.parametrize("which", ["week_detector", "cold_detector"])
def test_the_table_finds_what_detect_finds(request, which, start) -> None:
    detector = request.getfixturevalue(which)
    frame = _window(start, 180, seed=len(start))
    expected = detector.detect(frame)
    got = BaselineTable(detector).anomalies(_series(frame))
    assert len(expected) > 5  # the comparison means something
    assert [_words(a) for a in got] == [_words(a) for a in expected]
    np.testing.assert_allclose([_numbers(a) for a in got], [_numbers(a) for a in expected], rtol=1e-12)


def _words(anomaly) -> tuple:
    return anomaly.metric, anomaly.timestamp, anomaly.render(), anomaly.label, anomaly.unit


def _numbers(anomaly) -> list[float]:
    return [anomaly.value, anomaly.expected, anomaly.lower, anomaly.upper, anomaly.score]


def test_hours_of_week_match_the_baselines_buckets() -> None:
    index = pd.date_range("2026-10-26", periods=24 * 9, freq="37min", tz="Europe/Paris")
    assert hours_of_week([t.to_pydatetime() for t in index]).tolist() == \
        (index.tz_convert("UTC").day_of_week * 24 + index.tz_convert("UTC").hour).tolist()


def test_a_detector_without_a_table_is_scored_by_its_own_detect(week_detector) -> None:
    class Wrapped:
        metrics_ = week_detector.metrics_

        def detect(self, frame):
            return week_detector.detect(frame)

    frame = _window("2026-11-02T10:00Z", 60, seed=9)
    assert scorer_for(Wrapped()).anomalies(_series(frame)) == week_detector.detect(frame)
    assert isinstance(scorer_for(week_detector), BaselineTable)


def test_a_batch_of_services_is_scored_each_by_its_own_model(week_detector, cold_detector) -> None:
    models = ServiceModels({"c--web": LoadedModel("c--web", scorer_for(week_detector), "test", "x"),
                            "c--api": LoadedModel("c--api", scorer_for(cold_detector), "test", "y")})
    web, api = _window("2026-11-02T10:00Z", 120, seed=5), _window("2026-11-03T20:00Z", 60, seed=6)
    results = score_series(_series(web) + _series(api, "api"), models, web.columns, 10_000)
    assert [(r.service, r.points) for r in results] == [("web", 600), ("api", 300)]
    for result, detector, frame in ((results[0], week_detector, web), (results[1], cold_detector, api)):
        assert [_words(a) for a in result.anomalies] == [_words(a) for a in detector.detect(frame)]


def _models(detector) -> ServiceModels:
    return ServiceModels({"c--web": LoadedModel("c--web", scorer_for(detector), "test", "x")})


def test_a_service_without_a_model_is_named(week_detector) -> None:
    frame = _window("2026-11-02T10:00Z", 5, seed=1)
    with pytest.raises(NoModelError) as caught:
        score_series(_series(frame) + _series(frame, "api"), _models(week_detector), frame.columns, 1000)
    assert caught.value.field == "series[5].service"
    assert "c/api" in caught.value.message


@pytest.mark.parametrize("mutate, field", [
    (lambda s: [Series(s[0].cluster, s[0].service, "disk_io", s[0].timestamps, s[0].values)],
     "series[0].metric"),
    (lambda s: [s[0], s[1], s[0]], "series[2]"),
    (lambda s: [Series(s[0].cluster, s[0].service, s[0].metric, s[0].timestamps, s[0].values[:-1])],
     "series[0].values"),
    (lambda s: s * 1, "series"),   # more points than allowed (the limit below)
    (lambda s: [Series(s[0].cluster, s[0].service, s[0].metric, s[0].timestamps[::-1], s[0].values)],
     "series[0].timestamps"),
    (lambda s: [Series(s[0].cluster, s[0].service, s[0].metric, [s[0].timestamps[0]] * 5, s[0].values)],
     "series[0].timestamps"),
    (lambda s: s[:3] + [Series(s[3].cluster, s[3].service, s[3].metric,   # a later series, one step
                               s[3].timestamps[:2] + s[3].timestamps[1:4], s[3].values)],
     "series[3].timestamps"),
])
def test_bad_batches_are_refused_with_the_field(week_detector, mutate, field) -> None:
    frame = _window("2026-11-02T10:00Z", 5, seed=1)
    limit = 20 if field == "series" else 1000
    with pytest.raises(PayloadError) as caught:
        score_series(mutate(_series(frame)), _models(week_detector), frame.columns, limit)
    assert caught.value.field == field


def test_ensembles_of_a_request_are_scored_together_and_answer_what_detect_answers(week_detector) -> None:
    from detection.ensemble import ServiceDetector

    ensembles = {name: ServiceDetector().fit(history(END, 14, ServiceShape(), np.random.default_rng(seed)))
                 for name, seed in (("web", 3), ("api", 4), ("db", 5))}
    loaded = {f"c--{n}": LoadedModel(f"c--{n}", scorer_for(d), "test", n) for n, d in ensembles.items()}
    loaded["c--tables"] = LoadedModel("c--tables", scorer_for(week_detector), "test", "t")
    models = ServiceModels(loaded)
    quiet = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(8)).iloc[600:616]
    frames = {"web": quiet.copy(), "api": quiet.copy(), "db": quiet.iloc[:10].copy()}  # db: another index
    frames["web"].iloc[-4:, frames["web"].columns.get_loc("cpu_utilization")] *= 3.0   # a surge
    frames["api"].iloc[-3:, frames["api"].columns.get_loc("error_count")] += 50        # errors
    batch = [s for name, frame in frames.items() for s in _series(frame, name)]
    results = score_series(batch + _series(quiet, "tables"), models, quiet.columns, 10_000)
    assert set(models.fleet.detectors) == {"c--web", "c--api", "c--db"}
    for result in results[:3]:
        expected = ensembles[result.service].detect(frames[result.service])
        assert [_words(a) for a in result.anomalies] == [_words(a) for a in expected]
        assert [a.members for a in result.anomalies] == [a.members for a in expected]
    assert {r.service for r in results if r.anomalies} >= {"web", "api"}
