"""The playbook file and the rule classifier: every matrix row, the boundary, the guards."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd
import pytest

from detection.anomaly import Anomaly
from rca.features import incident_features
from rca.playbook import PlaybookError, load_playbook
from rca.rules import RuleClassifier

DEFAULT_TEXT = files("rca").joinpath("playbook.toml").read_text()


@pytest.fixture(scope="module")
def classifier() -> RuleClassifier:
    return RuleClassifier(load_playbook(), threshold=4.0)


def features(**z: float) -> dict[str, float]:
    out = {f"{m}_z": 0.0 for m in ("cpu_utilization", "memory_utilization", "error_count",
                                   "response_time")}
    out.update({f"{k}_z": v for k, v in z.items() if k != "errors"})
    out["errors_in_period"] = z.get("errors", 0.0)
    return out


@pytest.mark.parametrize("given, cause, severity, action", [
    (features(cpu_utilization=9), "high_cpu", "MEDIUM", "scale_up"),
    (features(cpu_utilization=9, error_count=20, errors=25), "high_cpu_with_errors", "HIGH", "scale_up"),
    (features(memory_utilization=6), "memory_leak", "CRITICAL", "restart_tasks"),
    (features(error_count=6, errors=7), "error_rate_low", "HIGH", "alert_only"),
    (features(error_count=30, errors=31), "error_rate_high", "CRITICAL", "rollback"),
    (features(response_time=40), "slow_response", "MEDIUM", "scale_up"),
    (features(), "unknown", "HIGH", "alert_only"),
])
def test_each_matrix_row(classifier, given, cause, severity, action) -> None:
    diagnosis = classifier.diagnose(given)
    assert (diagnosis.root_cause, diagnosis.severity, diagnosis.auto_action) == (cause, severity, action)
    assert 0.0 <= diagnosis.confidence <= 1.0
    assert diagnosis.explanation


def test_memory_that_rises_with_a_surge_of_requests_is_load_not_a_leak(classifier) -> None:
    """An overload moves memory too (tasks hold more requests): scale up, do not restart."""
    surge = {**features(cpu_utilization=9, memory_utilization=6, error_count=20, errors=25,
                        request_count=8), "request_count_log_ratio": 0.41}
    assert classifier.diagnose(surge).root_cause == "high_cpu_with_errors"
    quiet_requests = {**surge, "request_count_z": 0.0, "request_count_log_ratio": 0.0}
    assert classifier.diagnose(quiet_requests).root_cause == "memory_leak"
    fewer_requests = {**surge, "request_count_log_ratio": -0.41}
    assert classifier.diagnose(fewer_requests).root_cause == "memory_leak"


def test_the_error_boundary_is_strictly_more_than_ten(classifier) -> None:
    assert classifier.diagnose(features(error_count=9, errors=10)).root_cause == "error_rate_low"
    assert classifier.diagnose(features(error_count=10, errors=11)).root_cause == "error_rate_high"


def test_unknown_never_acts(classifier) -> None:
    diagnosis = classifier.diagnose(features(cpu_utilization=3.9))
    assert diagnosis.root_cause == "unknown" and diagnosis.auto_action == "alert_only"
    assert diagnosis.confidence == 0.0


def test_features_carry_values_expectations_and_missing_metrics() -> None:
    index = pd.date_range("2026-11-16 10:00", periods=5, freq="1min", tz="UTC")
    window = pd.DataFrame({"memory_utilization": [50.0, 52, 54, 56, 58]}, index=index)
    expected = pd.DataFrame({"memory_utilization": [45.0] * 5}, index=index)
    leak = [Anomaly.build("memory_utilization", index[-1], 58, 45, 40, 50, 7.5)]
    got = incident_features(leak, window, expected, ["memory_utilization", "cpu_utilization"])
    assert got["memory_utilization_z"] == 7.5
    assert got["memory_utilization_slope"] == pytest.approx(2.0)
    assert got["memory_utilization_expected"] == 45.0
    assert got["cpu_utilization_missing"] == 1.0 and got["cpu_utilization_z"] == 0.0


def test_a_playbook_file_is_validated_with_the_field_named(tmp_path) -> None:
    text = DEFAULT_TEXT
    bad_action = tmp_path / "bad.toml"
    bad_action.write_text(text.replace('auto_action = "scale_up"', 'auto_action = "reboot"', 1))
    with pytest.raises(PlaybookError, match="auto_action"):
        load_playbook(bad_action)
    unsafe = tmp_path / "unsafe.toml"
    unsafe.write_text(text.replace('manual_action = "Investigate: no known pattern matched"',
                                   'manual_action = "x"').replace(
        'id = "unknown"\ntitle = "Unknown cause"\nseverity = "HIGH"\nauto_action = "alert_only"',
        'id = "unknown"\ntitle = "Unknown cause"\nseverity = "HIGH"\nauto_action = "rollback"'))
    with pytest.raises(PlaybookError, match="never act when unsure"):
        load_playbook(unsafe)
    broken = tmp_path / "broken.toml"
    broken.write_text("error_boundary = [")
    with pytest.raises(PlaybookError, match="not valid TOML"):
        load_playbook(broken)
    with pytest.raises(PlaybookError, match="cannot read"):
        load_playbook(tmp_path / "absent.toml")


def test_the_error_boundary_is_configuration(tmp_path) -> None:
    text = DEFAULT_TEXT
    custom = tmp_path / "playbook.toml"
    custom.write_text(text.replace("error_boundary = 10", "error_boundary = 50"))
    diagnosis = RuleClassifier(load_playbook(custom)).diagnose(features(error_count=30, errors=31))
    assert diagnosis.root_cause == "error_rate_low"
