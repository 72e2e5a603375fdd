"""The training pipeline on in-memory history: evaluation, promotion, idempotence, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.bundle import load_bundle
from models.store import CHALLENGER, CHAMPION, LocalModelStore
from simulation.physics import ServiceShape, history
from tests.fakes import trusting
from training.datasets import FrameSource
from training.detectors import DetectorConfigError, build_detector, detector_config
from training.evaluation import evaluate, make_evaluation_set, not_worse
from training.pipeline import Target, TrainingError, TrainOptions, train_service, train_services
from training.tracking import MlflowTracker

END = pd.Timestamp("2026-11-20", tz="UTC")


@pytest.fixture(scope="module")
def normal() -> pd.DataFrame:
    """Fifteen days of the simulated service: fourteen to fit on, one held back."""
    return history(END, 15, ServiceShape(), np.random.default_rng(3))


def options(**overrides) -> TrainOptions:
    """Fast options: the baselines-only detector in this process (the ensemble has its own test)."""
    return TrainOptions(**{"backend": "sequential", "detector": detector_config("robust_z"), **overrides})


def test_injected_anomalies_go_into_health_metrics_the_bad_way(normal) -> None:
    tail, train = normal.iloc[-1440:], normal.iloc[:-1440]
    first = make_evaluation_set(tail, train, seed=1)
    again = make_evaluation_set(tail, train, seed=1)
    other = make_evaluation_set(tail, train, seed=2)
    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in again.events], "reproducible"
    assert [e.start for e in first.events] != [e.start for e in other.events]
    assert len(first.events) == 8 and {e.metric for e in first.events} <= {
        "cpu_utilization", "memory_utilization", "error_count", "response_time"}, "request_count is load"
    for event in first.events:
        window = slice(event.start, event.end)
        assert (first.frame.loc[window, event.metric] >= tail.loc[window, event.metric]).all()
    untouched = first.frame.index.difference(pd.DatetimeIndex(
        [t for e in first.events for t in pd.date_range(e.start, e.end, freq="1min")]))
    pd.testing.assert_frame_equal(first.frame.loc[untouched], tail.loc[untouched])


def test_a_sharper_detector_scores_better_on_the_same_evaluation(normal) -> None:
    tail, train = normal.iloc[-1440:], normal.iloc[:-1440]
    evalset = make_evaluation_set(tail, train, seed=0)
    good = evaluate(build_detector(detector_config("robust_z", threshold=4.0)).fit(train), evalset)
    blunt = evaluate(build_detector(detector_config("robust_z", threshold=12.0)).fit(train), evalset)
    assert good["f1"] > blunt["f1"] and good["recall"] >= 0.6
    assert not_worse(good, blunt)[0] and not not_worse(blunt, good)[0]
    assert "below the champion's" in not_worse(blunt, good)[1]


def test_first_run_promotes_and_a_second_run_changes_nothing(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    source = FrameSource(normal)
    first = train_service("c", "s", source, end=END, store=store, options=options(),
                          deploy_root=tmp_path)
    assert (first.status, first.version, first.reason) == ("champion", 1, "first model for this service")
    assert first.evaluation["events"] == 8 and first.evaluation["f1"] > 0.5
    assert first.end < END - pd.Timedelta(days=1), "the held-back tail is not fitted on"
    deployed = load_bundle(tmp_path / "c--s", trust=trusting())
    assert deployed.digest == first.digest and deployed.manifest["evaluation"] == first.evaluation
    second = train_service("c", "s", source, end=END, store=store, options=options(), deploy_root=tmp_path)
    assert second.status == "unchanged" and second.version == 1
    assert [v.version for v in store.versions("c--s")] == [1]


def test_a_worse_model_stays_challenger_and_says_why(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    source = FrameSource(normal)
    train_service("c", "s", source, end=END, store=store, options=options(), deploy_root=tmp_path)
    worse = train_service("c", "s", source, end=END, store=store, deploy_root=tmp_path,
                          options=options(detector=detector_config("robust_z", threshold=12.0)))
    assert worse.status == CHALLENGER and "below the champion's" in worse.reason
    assert worse.champion_evaluation["f1"] > worse.evaluation["f1"]
    assert store.get("c--s", alias=CHAMPION).version == 1
    assert store.get("c--s", alias=CHALLENGER).version == 2
    assert load_bundle(tmp_path / "c--s", trust=trusting()).model.threshold == 4.0, \
        "the deployed champion stays"


def test_a_cold_start_says_so_and_still_gives_a_champion(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    result = train_service("c", "s", FrameSource(normal.iloc[-1800:]), end=END, store=store,
                           options=options())
    assert result.status == CHAMPION and result.evaluation == {}
    text = " ".join(result.notes)
    assert "cold start: 1.2 days of history" in text and "evaluation skipped" in text
    assert "fall back to day-type-hour" in text


def test_one_failing_service_does_not_stop_the_others(tmp_path, normal) -> None:
    targets = [Target("c", "empty", FrameSource(normal.iloc[:0])), Target("c", "good", FrameSource(normal))]
    results = train_services(targets, options(), end=END,
                             store=LocalModelStore(tmp_path / "r", trusting()))
    assert [r.status for r in results] == ["failed", CHAMPION]
    assert "no metric history" in results[0].reason


def test_an_unreachable_tracking_store_still_gives_the_local_bundle(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    result = train_service("c", "s", FrameSource(normal), end=END, store=store, options=options(),
                           tracker=MlflowTracker(trusting(), "http://127.0.0.1:9", probe_timeout=1))
    assert result.status == CHAMPION and result.run_id is None
    assert result.tracking.startswith("skipped: MLflow server http://127.0.0.1:9 unreachable")
    assert store.load("c--s", alias=CHAMPION).digest == result.digest


def test_the_default_detector_is_the_ensemble_and_its_bundle_says_how_it_was_built(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    result = train_service("c", "s", FrameSource(normal), end=END, store=store,
                           options=TrainOptions(backend="sequential"))
    assert type(result.model).__name__ == "ServiceDetector"
    assert result.evaluation["f1"] >= 0.8
    loaded = store.load("c--s", alias=CHAMPION)
    assert loaded.config["detector"] == "ensemble"
    members = {"zscore", "seasonal", "iforest", "shift", "streaming"}
    assert set(loaded.config["params"]["config"]["members"]) == members
    assert "cpu_utilization:z" in loaded.manifest["feature_names"], "the forest's derived features"


def test_unknown_detectors_and_options_are_refused() -> None:
    with pytest.raises(DetectorConfigError, match="unknown detector 'magic'"):
        detector_config("magic")
    with pytest.raises(DetectorConfigError, match="bad parameters for detector 'robust_z'"):
        build_detector({"detector": "robust_z", "params": {"thresh": 3}})
    with pytest.raises(DetectorConfigError, match="calibrated score in \\(0, 1\\), got 4"):
        detector_config("ensemble", threshold=4.0)
    with pytest.raises(ValueError, match="promote must be one of"):
        TrainOptions(promote="sometimes").validate()


class ThrottledSource:
    """A metric source whose API keeps throttling (what the CloudWatch adapter raises once
    botocore's retries are spent)."""

    def read(self, start, end):
        raise RuntimeError("cannot read cpu_utilization (AWS/ECS CPUUtilization) from CloudWatch: "
                           "An error occurred (Throttling) when calling the GetMetricStatistics "
                           "operation (reached max retries: 4): Rate exceeded")


def test_a_throttled_source_fails_with_the_reason_and_the_champion_stays(tmp_path, normal) -> None:
    store = LocalModelStore(tmp_path / "registry", trusting())
    train_service("c", "s", FrameSource(normal), end=END, store=store, options=options(),
                  deploy_root=tmp_path)
    with pytest.raises(TrainingError, match=r"c/s: cannot read cpu_utilization .*Throttling.*Rate exceeded"):
        train_service("c", "s", ThrottledSource(), end=END, store=store, options=options(),
                      deploy_root=tmp_path)
    assert store.get("c--s", alias=CHAMPION).version == 1 and len(store.versions("c--s")) == 1
    deployed = load_bundle(tmp_path / "c--s", trust=trusting())
    assert deployed.digest == store.get("c--s", alias=CHAMPION).digest
