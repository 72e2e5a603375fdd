"""The trained root-cause classifier: guards, payloads, features, evidence, bundles, labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detection.anomaly import Anomaly
from models.bundle import BundleError
from rca.classifier import TrainedClassifier
from rca.features import EcsContext, incident_features
from rca.guards import decide
from rca.payload import PayloadError, parse_payload
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.store import IncidentStore
from tests.fakes import TEST_KEY, trusting
from training.rca_dataset import HOLDOUT_SEEDS, TRAIN_SEEDS, generate_incidents
from training.rca_train import TrainInfo, fit_classifier, load_classifier, operator_labels, save_classifier

SEED = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}
FAMILY = ("high_cpu", "high_cpu_with_errors", "memory_leak", "error_rate", "slow_response")


@pytest.fixture(scope="module")
def playbook():
    return load_playbook()


@pytest.fixture(scope="module")
def simulated():
    """A few hundred simulated incidents: enough to check behaviour, not the benchmark."""
    return generate_incidents(70, TRAIN_SEEDS).incidents


@pytest.fixture(scope="module")
def trained(playbook, simulated):
    model = fit_classifier([i.features for i in simulated], [i.cause for i in simulated])
    info = TrainInfo("forest", 70, (TRAIN_SEEDS[0], TRAIN_SEEDS[69]), len(simulated), 0, {}, {}, 0.0)
    return TrainedClassifier(model, playbook), info


def payload_features(payload: dict) -> dict:
    return parse_payload(payload).features()


def probs(**p: float) -> dict[str, float]:
    out = dict.fromkeys(FAMILY, 0.0)
    out.update(p)
    return out


# --- the seed's payload and bad input -------------------------------------------------------

def test_the_seed_payload_is_diagnosed_high_cpu_with_evidence(trained) -> None:
    classifier, _ = trained
    diagnosis = classifier.diagnose(payload_features(SEED)).to_dict()
    assert (diagnosis["root_cause"], diagnosis["severity"], diagnosis["auto_action"]) == \
        ("high_cpu", "MEDIUM", "scale_up")
    assert diagnosis["manual_action"] == "Monitor for 15 min"
    assert 0.6 <= diagnosis["confidence"] <= 1.0
    assert "60%" in diagnosis["explanation"] and "4%" in diagnosis["explanation"]
    assert diagnosis["evidence"][0] == {"feature": "cpu_utilization", "value": 60.0, "expected": 4.0,
                                        "contribution": diagnosis["evidence"][0]["contribution"]}
    assert json.loads(json.dumps(diagnosis)) == diagnosis


@pytest.mark.parametrize("payload, cause", [
    ({"anomalies": ["Errors: 25 (expected 0)"], "metrics": {"error_count": 25}}, "error_rate_high"),
    ({"anomalies": ["Errors: 7 (expected 0)"]}, "error_rate_low"),
    ({"anomalies": ["Memory: 85% (expected 45%)"], "metrics": {"memory_utilization": 85}}, "memory_leak"),
    ({"anomalies": ["Response time: 1.20s (expected 0.15s)"]}, "slow_response"),
    ({"anomalies": ["Latency: 900ms (expected 120ms)"]}, "slow_response"),
    ({"anomalies": [{"metric": "cpu_utilization", "value": 80, "expected": 30},
                    {"metric": "error_count", "value": 40, "expected": 0},
                    {"metric": "request_count", "value": 9000, "expected": 5000}]}, "high_cpu_with_errors"),
])
def test_each_row_from_a_payload(trained, payload, cause) -> None:
    assert trained[0].diagnose(payload_features(payload)).root_cause == cause


@pytest.mark.parametrize("payload, field", [
    ({}, "payload"),
    ([], "payload"),
    ({"anomalies": ["CPU is high"]}, "anomalies[0]"),
    ({"anomalies": ["Disk: 90% (expected 40%)"]}, "anomalies[0]"),
    ({"anomalies": ["Errors: -3 (expected 0)"]}, "anomalies[0]"),
    ({"anomalies": ["CPU: nan% (expected 4%)"]}, "anomalies[0]"),
    ({"anomalies": ["CPU: 60% (expected 4s)"]}, "anomalies[0]"),
    ({"anomalies": ["Errors: 25s (expected 0)"]}, "anomalies[0]"),
    ({"anomalies": [{"metric": "cpu_utilization", "value": 60}]}, "anomalies[0].expected"),
    ({"metrics": {"cpu_utilization": float("nan")}}, "metrics.cpu_utilization"),
    ({"metrics": {"error_count": -1}}, "metrics.error_count"),
    ({"metrics": {"disk_io": 5}}, "metrics.disk_io"),
    ({"metrics": {"cpu_utilization": "high"}}, "metrics.cpu_utilization"),
    ({"anomalies": ["CPU: 60% (expected 4%)"], "extra": 1}, "extra"),
    ({"anomalies": ["CPU: 60% (expected 4%)"], "context": {"oom_stopped_tasks": -2}},
     "context.oom_stopped_tasks"),
])
def test_bad_payloads_name_the_field(payload, field) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(payload)
    assert caught.value.field == field and caught.value.message


def test_units_are_converted_to_the_canonical_ones() -> None:
    request = parse_payload({"anomalies": ["Latency: 900ms (expected 0.12s)", "CPU: 60 (expected 4)"]})
    by_metric = {a.metric: a for a in request.anomalies}
    assert by_metric["response_time"].value == pytest.approx(0.9)
    assert by_metric["response_time"].expected == pytest.approx(0.12)
    assert by_metric["cpu_utilization"].value == 60.0


# --- the hard guards --------------------------------------------------------------------------

def test_many_errors_after_a_recent_deployment_roll_back_whatever_the_model_says(playbook) -> None:
    features = payload_features({"anomalies": ["Errors: 30 (expected 0)", "CPU: 80% (expected 30%)"],
                                 "context": {"minutes_since_deployment": 12}})
    decision = decide(probs(high_cpu_with_errors=0.95, error_rate=0.05), features, playbook)
    assert (decision.cause, decision.rule) == ("error_rate_high", "recent_deployment")
    old = {**features, "minutes_since_deployment": 600.0}
    assert decide(probs(high_cpu_with_errors=0.95, error_rate=0.05), old, playbook).cause == \
        "high_cpu_with_errors"


def test_the_error_boundary_is_strict_and_editable_without_retraining(playbook, tmp_path, trained) -> None:
    ten = payload_features({"anomalies": ["Errors: 10 (expected 0)"]})
    eleven = payload_features({"anomalies": ["Errors: 11 (expected 0)"]})
    assert decide(probs(error_rate=0.99), ten, playbook).cause == "error_rate_low"
    assert decide(probs(error_rate=0.99), eleven, playbook).cause == "error_rate_high"
    text = Path(load_playbook.__code__.co_filename).with_name("playbook.toml").read_text()
    custom = tmp_path / "playbook.toml"
    custom.write_text(text.replace("error_boundary = 10", "error_boundary = 50"))
    wider = TrainedClassifier(trained[0].model, load_playbook(custom))
    assert wider.diagnose(payload_features({"anomalies": ["Errors: 30 (expected 0)"]})).root_cause == \
        "error_rate_low"


def test_error_rate_low_only_ever_alerts(trained) -> None:
    diagnosis = trained[0].diagnose(payload_features({"anomalies": ["Errors: 8 (expected 0)"],
                                                      "context": {"minutes_since_deployment": 3}}))
    assert (diagnosis.root_cause, diagnosis.auto_action) == ("error_rate_low", "alert_only")


def test_low_confidence_is_unknown_and_only_alerts(playbook) -> None:
    features = payload_features({"anomalies": ["CPU: 60% (expected 40%)"]})
    decision = decide(probs(high_cpu=0.55, slow_response=0.45), features, playbook)
    assert (decision.cause, decision.rule, decision.guess) == ("unknown", "low_confidence", "high_cpu")
    assert playbook.cause("unknown").auto_action.value == "alert_only"


def test_a_restart_needs_more_confidence_and_memory_evidence(playbook) -> None:
    leak = payload_features({"anomalies": ["Memory: 80% (expected 45%)"]})
    assert decide(probs(memory_leak=0.8, high_cpu=0.2), leak, playbook).cause == "unknown"
    assert decide(probs(memory_leak=0.9, high_cpu=0.1), leak, playbook).cause == "memory_leak"
    no_memory = payload_features({"anomalies": ["CPU: 80% (expected 45%)"]})
    decision = decide(probs(memory_leak=0.99), no_memory, playbook)
    assert (decision.cause, decision.rule) == ("unknown", "no_evidence")


def test_nothing_anomalous_is_unknown(trained) -> None:
    diagnosis = trained[0].diagnose(payload_features({"metrics": {"cpu_utilization": 30}}))
    assert (diagnosis.root_cause, diagnosis.auto_action) == ("unknown", "alert_only")
    assert "No metric is outside its baseline" in diagnosis.explanation


# --- features ---------------------------------------------------------------------------------

def test_window_features_mean_the_same_on_any_scale() -> None:
    index = pd.date_range("2026-11-16 10:00", periods=16, freq="1min", tz="UTC")
    climbing = np.linspace(45, 60, 16)
    small = incident_features(
        [Anomaly.build("memory_utilization", index[-1], 60, 45, 40, 50, 8.0)],
        pd.DataFrame({"memory_utilization": climbing}, index=index),
        pd.DataFrame({"memory_utilization": 45.0}, index=index), ["memory_utilization", "cpu_utilization"],
        spread=pd.DataFrame({"memory_utilization": 1.0}, index=index),
        context=EcsContext(minutes_since_deployment=30, oom_stopped_tasks=1))
    large = incident_features(
        [Anomaly.build("memory_utilization", index[-1], 600, 450, 400, 500, 8.0)],
        pd.DataFrame({"memory_utilization": climbing * 10}, index=index),
        pd.DataFrame({"memory_utilization": 450.0}, index=index), ["memory_utilization"],
        spread=pd.DataFrame({"memory_utilization": 10.0}, index=index))
    for name in ("log_ratio", "dev_z", "slope_z", "slope_rel", "climb"):
        assert small[f"memory_utilization_{name}"] == pytest.approx(large[f"memory_utilization_{name}"])
    assert small["memory_utilization_slope_z"] == pytest.approx(1.0)
    assert 0.3 < small["memory_utilization_climb"] < 0.7, "a steady climb rises in both halves"
    assert small["minutes_since_deployment"] == 30 and small["oom_stopped_tasks"] == 1
    assert math.isnan(large["minutes_since_deployment"]), "unknown context is NaN, not zero"
    assert small["cpu_utilization_missing"] == 1.0


def test_context_becomes_service_agnostic_inputs() -> None:
    from rca.vectorize import FEATURE_NAMES, model_inputs

    known = model_inputs({"cpu_utilization_anomalous": 1.0, "running_tasks": 3, "desired_tasks": 4,
                          "minutes_since_deployment": 0.0, "oom_stopped_tasks": 2})
    assert known["running_share"] == 0.75 and known["log_minutes_since_deployment"] == 0.0
    assert known["oom_stopped_tasks"] == 2 and set(known) == set(FEATURE_NAMES)
    unknown = model_inputs({"cpu_utilization_anomalous": 1.0})
    assert all(math.isnan(unknown[k]) for k in ("running_share", "log_minutes_since_deployment",
                                                "oom_stopped_tasks", "memory_utilization_dev_z"))
    assert "cpu_utilization_z" not in known, "the detector's score is no input: its scale is its own"
    assert unknown["memory_utilization_missing"] == 1.0


def test_the_watcher_without_spreads_or_context_still_gets_a_diagnosis(trained) -> None:
    index = pd.date_range("2026-11-16 10:00", periods=16, freq="1min", tz="UTC")
    window = pd.DataFrame({"cpu_utilization": [30.0] * 12 + [70.0] * 4, "error_count": 0.0}, index=index)
    expected = pd.DataFrame({"cpu_utilization": 30.0, "error_count": 0.3}, index=index)
    anomalies = [Anomaly.build("cpu_utilization", t, 70, 30, 26, 34, 10.0) for t in index[-3:]]
    features = incident_features(anomalies, window, expected, ["cpu_utilization", "error_count"])
    assert trained[0].diagnose(features).root_cause == "high_cpu"


# --- the simulated data set -------------------------------------------------------------------

def test_simulated_incidents_cover_every_cause_and_form(simulated) -> None:
    causes = {i.cause for i in simulated}
    assert causes == {"high_cpu", "high_cpu_with_errors", "memory_leak", "error_rate_low",
                      "error_rate_high", "slow_response", "unknown"}
    assert {i.form for i in simulated} == {"window", "window_no_spread", "payload", "csv"}
    assert {i.scenario for i in simulated if i.cause == "unknown"} == {"none"}, \
        "only fault-free stretches are labelled unknown (hard negatives)"
    assert {i.form for i in simulated if i.cause == "unknown"} == {"csv"}
    periods = {i.service["period_seconds"] for i in simulated if i.form == "csv"}
    assert min(periods) < 60 < max(periods), "the csv form is sampled finer and coarser than a minute"
    again = generate_incidents(5, TRAIN_SEEDS).incidents
    assert [i.cause for i in again] == [i.cause for i in simulated[:len(again)]], "a seed fixes a run"


def test_training_and_held_out_seeds_never_overlap() -> None:
    assert set(TRAIN_SEEDS).isdisjoint(HOLDOUT_SEEDS)


def test_the_model_beats_chance_on_held_out_incidents(trained) -> None:
    data = generate_incidents(12, HOLDOUT_SEEDS)
    decisions = trained[0].diagnose_many([i.features for i in data.incidents])
    right = sum(d.cause == i.cause for d, i in zip(decisions, data.incidents, strict=True))
    assert right / len(data.incidents) > 0.85
    harmful = [(i.cause, d.cause) for d, i in zip(decisions, data.incidents, strict=True)
               if d.cause in ("memory_leak", "error_rate_high") and d.cause != i.cause]
    assert harmful == []


# --- bundles and operator labels --------------------------------------------------------------

def test_a_saved_classifier_loads_and_diagnoses_the_same(trained, playbook, tmp_path) -> None:
    classifier, info = trained
    path = save_classifier(classifier, info, tmp_path / "rca", key=TEST_KEY)
    loaded = load_classifier(path, playbook, trust=trusting())
    features = payload_features(SEED)
    assert loaded.diagnose(features) == classifier.diagnose(features)
    (path / "state.skops").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="sha256"):
        load_classifier(path, playbook, trust=trusting())


def test_a_bundle_of_another_kind_is_refused(tmp_path, playbook) -> None:
    from models.bundle import save_bundle
    save_bundle({"x": 1}, {"kind": "detector"}, tmp_path / "b", key=TEST_KEY, metrics=[],
                data_window=("a", "b"))
    with pytest.raises(BundleError, match="not a root-cause classifier"):
        load_classifier(tmp_path / "b", playbook, trust=trusting())


def test_operator_labels_become_training_data(tmp_path, simulated) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    leak = payload_features({"anomalies": ["Memory: 70% (expected 50%)"]})
    for _ in range(3):
        incident = store.open_incident("c", "s", "2026-11-16T10:00:00Z")
        store.record(incident, "2026-11-16T10:00:00Z", "features", leak)
        store.record(incident, "2026-11-16T11:00:00Z", "label", {"cause": "slow_response"})
    unlabelled = store.open_incident("c", "s", "2026-11-16T12:00:00Z")
    store.record(unlabelled, "2026-11-16T12:00:00Z", "features", leak)
    false_alarm = store.open_incident("c", "s", "2026-11-16T13:00:00Z")
    store.record(false_alarm, "2026-11-16T13:00:00Z", "features", leak)
    store.record(false_alarm, "2026-11-16T14:00:00Z", "label", {"cause": "unknown"})
    labels = operator_labels(store)
    assert sorted(lab.cause for lab in labels) == ["slow_response"] * 3 + ["unknown"], \
        "a false alarm labelled unknown teaches the fault-free class"
    labels = [lab for lab in labels if lab.cause != "unknown"]
    features = [i.features for i in simulated] + [lab.features for lab in labels]
    causes = [i.cause for i in simulated] + [lab.cause for lab in labels]
    model = fit_classifier(features, causes, weights=[1.0] * len(simulated) + [40.0] * len(labels))
    classes = list(model.classes_)
    assert model.predict_proba([leak])[0][classes.index("slow_response")] > 0.5, \
        "the operators' truth outweighs the simulator's"


def test_rules_read_payload_anomalies_too(playbook) -> None:
    diagnosis = RuleClassifier(playbook).diagnose(payload_features(SEED))
    assert diagnosis.root_cause == "high_cpu" and 0 < diagnosis.confidence < 1
