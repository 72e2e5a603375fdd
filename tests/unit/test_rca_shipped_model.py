"""The shipped root-cause model and the matrix's semantics around it.

What a user notices: the seed-format payloads of every matrix row and both sides of the error
boundary come out as the seed defines them; a window's incident is read as it was when it
opened, not after it ended; a one-period blip is no incident; and the model file is data that
is checked on load, with a clear error when it is not what it should be.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rca.classifier import TrainedClassifier
from rca.linear import SHIPPED, LinearModel, ModelFileError
from rca.payload import parse_payload
from rca.playbook import load_playbook
from rca.semantics import matrix_row
from rca.window import window_features
from training.rca_seed_cases import SEED_CASES

START = pd.Timestamp("2026-11-16 09:00", tz="UTC")


@pytest.fixture(scope="module")
def shipped() -> TrainedClassifier:
    return TrainedClassifier(LinearModel.load(SHIPPED), load_playbook())


def test_the_seed_cases_cover_every_row_and_both_sides_of_the_boundary() -> None:
    causes = {c.cause for c in SEED_CASES}
    assert causes == {"high_cpu", "high_cpu_with_errors", "memory_leak", "error_rate_low",
                      "error_rate_high", "slow_response"}
    assert len(SEED_CASES) >= 29
    covered = {c.covers for c in SEED_CASES}
    assert {"boundary: 10 is not more than 10", "boundary: 11 is more than 10"} <= covered


@pytest.mark.parametrize("case", SEED_CASES, ids=lambda c: c.name)
def test_every_seed_payload_gets_its_matrix_row(shipped, case) -> None:
    diagnosis = shipped.diagnose(parse_payload(case.payload).features())
    assert diagnosis.root_cause == case.cause, diagnosis.explanation
    assert diagnosis.auto_action == load_playbook().cause(case.cause).auto_action.value


@pytest.mark.parametrize("family, seen, row", [
    ("high_cpu", {"error_count_anomalous": 1.0, "errors_in_period": 3.0}, "high_cpu_with_errors"),
    ("high_cpu", {"error_count_anomalous": 0.0}, "high_cpu"),
    ("slow_response", {"error_count_anomalous": 1.0, "errors_in_period": 40.0}, "error_rate_high"),
    ("slow_response", {"error_count_anomalous": 1.0, "errors_in_period": 10.0}, "error_rate_low"),
    ("error_rate", {"error_count_anomalous": 1.0, "errors_in_period": 11.0}, "error_rate_high"),
    ("error_rate", {"error_count_anomalous": 1.0, "errors_in_period": 11.0,
                    "cpu_utilization_anomalous": 1.0}, "high_cpu_with_errors"),
    ("error_rate", {"error_count_anomalous": 1.0, "errors_in_period": 11.0, "cpu_utilization_anomalous": 1.0,
                    "cpu_utilization_first": 0.0, "error_count_first": 1.0}, "error_rate_high"),
    ("high_cpu", {"memory_utilization_anomalous": 1.0, "memory_utilization_value": 99.0}, "memory_leak"),
    ("high_cpu", {"memory_utilization_anomalous": 1.0, "memory_utilization_value": 99.0,
                  "memory_utilization_first": 0.0, "cpu_utilization_anomalous": 1.0}, "high_cpu"),
])
def test_the_matrix_rows_are_read_the_same_whatever_the_model(family, seen, row) -> None:
    assert matrix_row(family, seen, 10) == row


def _frames(period: str, spike: dict[str, list[float]], rows: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    index = pd.date_range(START, periods=90 + rows, freq=period)
    frame = pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1.0, len(index)),
                          "memory_utilization": 40 + rng.normal(0, 0.5, len(index)),
                          "response_time": 0.2 + rng.normal(0, 0.005, len(index)),
                          "request_count": 1000 + rng.normal(0, 20, len(index))}, index=index)
    window = frame.iloc[90:].copy()
    for metric, values in spike.items():
        window.iloc[4:4 + len(values), window.columns.get_loc(metric)] += values
    return frame.iloc[:90], window


def test_a_cpu_fault_whose_memory_jumps_later_is_high_cpu_not_a_leak(shipped) -> None:
    """Read at the moment the incident opened: CPU led; memory jumped afterwards and stays."""
    history, window = _frames("1min", {"cpu_utilization": [50] * 4, "memory_utilization": [0, 0, 40, 45, 50]})
    diagnosis = shipped.diagnose(window_features(history, window).features)
    assert diagnosis.root_cause == "high_cpu" and diagnosis.auto_action == "scale_up"


def test_a_fault_that_ended_before_the_window_did_is_still_named(shipped) -> None:
    history, window = _frames("1min", {"response_time": [1.0, 1.0, 1.0]})
    assert shipped.diagnose(window_features(history, window).features).root_cause == "slow_response"


def test_a_one_period_blip_is_no_incident(shipped) -> None:
    history, window = _frames("1min", {"response_time": [1.0]})
    diagnosis = shipped.diagnose(window_features(history, window).features)
    assert diagnosis.root_cause == "unknown" and diagnosis.auto_action == "alert_only"
    assert "two periods or more" in diagnosis.explanation


def test_a_window_that_starts_inside_the_incident_is_not_guessed_at(shipped) -> None:
    history, window = _frames("1min", {"response_time": [1.0] * 8})
    diagnosis = shipped.diagnose(window_features(history, window.iloc[4:]).features)
    assert diagnosis.root_cause == "unknown" and "starts inside the incident" in diagnosis.explanation
    whole = shipped.diagnose(window_features(history, window).features)
    assert whole.root_cause == "slow_response"


def _sampled(period: str, fault: dict[str, list[float]], error_rate: float = 0.3,
             fault_errors_per_minute: float = 0.0, rows: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and window sampled every ``period``, errors drawn as a count per period of a rate
    per minute (``error_rate`` before, plus ``fault_errors_per_minute`` from the fault's onset)."""
    history, window = _frames(period, fault, rows)
    seconds = pd.Timedelta(period).total_seconds()
    rng = np.random.default_rng(11)
    history["error_count"] = rng.poisson(error_rate * seconds / 60, len(history)).astype(float)
    rate = np.r_[np.zeros(4), np.full(rows - 4, fault_errors_per_minute)] + error_rate
    window["error_count"] = rng.poisson(rate * seconds / 60).astype(float)
    return history, window


SAME_INCIDENT = {
    "cpu": ({"cpu_utilization": [45] * 8}, 0.0, "high_cpu"),
    "slow dependency": ({"response_time": [0.8] * 8}, 0.0, "slow_response"),
    "errors at 600 a minute": ({}, 600.0, "error_rate_high"),
    "cpu with errors at 600 a minute": ({"cpu_utilization": [45] * 8}, 600.0, "high_cpu_with_errors"),
    "memory climbing to 97%": ({"memory_utilization": [9, 18, 27, 36, 45, 54, 57, 57]}, 0.0, "memory_leak"),
}


@pytest.mark.parametrize("name", SAME_INCIDENT)
def test_the_same_incident_sampled_every_second_minute_or_five_minutes_gets_one_answer(shipped, name) -> None:
    """Persistence and order count periods, the error count is per scoring period (600 a minute is
    10 a second and 3,000 in five minutes, the same rate): 1 s to 5 min give the same cause."""
    fault, errors, cause = SAME_INCIDENT[name]
    answers = {}
    for period in ("1s", "10s", "1min", "5min"):
        history, window = _sampled(period, fault, fault_errors_per_minute=errors)
        diagnosis = shipped.diagnose(window_features(history, window).features)
        answers[period] = (diagnosis.root_cause, diagnosis.auto_action)
    assert set(answers.values()) == {(cause, load_playbook().cause(cause).auto_action.value)}, answers


def test_a_count_per_period_is_read_as_a_rate_per_scoring_period() -> None:
    """50 errors in five minutes is 10 a minute (not more than 10: the low row); 5 in a second is
    300 a minute."""
    from rca.window import errors_per_scoring_period

    five = pd.Series([50.0, 55.0], index=pd.date_range(START, periods=2, freq="5min"))
    second = pd.Series([5.0, 0.0], index=pd.date_range(START, periods=2, freq="1s"))
    assert list(errors_per_scoring_period(five)) == [10.0, 11.0]
    assert list(errors_per_scoring_period(second)) == [300.0, 0.0]
    assert list(errors_per_scoring_period(five, scoring_seconds=300)) == [50.0, 55.0]


def test_the_shipped_model_is_small_versioned_data(tmp_path) -> None:
    data = json.loads(SHIPPED.read_text())
    assert SHIPPED.stat().st_size < 100_000
    assert data["meta"]["version"] == 2 and data["meta"]["reproduce"].startswith("aiops train-rca --seed 0")
    model = LinearModel.from_dict(data)
    again = LinearModel.load(model.save(tmp_path / "m.json"))
    rows = [parse_payload(c.payload).features() for c in SEED_CASES]
    assert np.allclose(model.predict_proba(rows), again.predict_proba(rows))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="pickle"), "not a linear root-cause model"),
    (lambda d: d.update(coef=d["coef"][:2]), "coef has shape"),
    (lambda d: d["scales"].__setitem__(0, 0.0), "must be positive"),
    (lambda d: d.pop("medians"), "field missing"),
    (lambda d: d["feature_names"].__setitem__(0, "gpu_z"), "inputs this version does not make"),
])
def test_a_damaged_model_file_is_refused_with_a_reason(tmp_path, edit, message) -> None:
    data = json.loads(SHIPPED.read_text())
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=message):
        LinearModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        LinearModel.load(path)
