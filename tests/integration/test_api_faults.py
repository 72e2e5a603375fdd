"""AWS API faults while the platform handles incidents: none lost, retries bounded and logged.

Each kind of fault the issue names, once, against a matrix fault on the local endpoint: the
platform's own clients are made to fail (the simulated service's are not), as a failing
endpoint would. ``aiops benchmark faults`` plays every combination.
"""

from __future__ import annotations

import logging

import pytest
from botocore.retries.standard import ExponentialBackoff

from harness.faultbench import run_fault_benchmark

pytestmark = pytest.mark.integration

PAIRS = [("throttling", "load_surge"), ("server_error", "bad_deploy"), ("timeout", "memory_leak"),
         ("ecs_access_denied", "overload_errors"), ("cloudwatch_access_denied_10min", "error_trickle")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The scenarios, with botocore's backoff shortened (its attempts and decisions unchanged)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    logging.getLogger("aiops.aws").setLevel(logging.INFO)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("aiops.aws").addHandler(handler)
    try:
        result = run_fault_benchmark(tmp_path_factory.mktemp("faults"), rate=0.3, pairs=PAIRS,
                                     progress=lambda _: None)
    finally:
        logging.getLogger("aiops.aws").removeHandler(handler)
        patch.undo()
    return result, [r.getMessage() for r in records]


def test_no_incident_is_lost(report) -> None:
    result, _ = report
    assert result.lost == 0
    assert all(s.outcome in ("remediated", "escalated") for s in result.scenarios)


def test_transient_faults_are_retried_and_the_fix_goes_through(report) -> None:
    result, _ = report
    transient = {s.api_fault: s for s in result.scenarios[:3]}
    assert all(s.outcome == "remediated" and s.action_status == "done" for s in transient.values()), transient
    assert result.retries["retried_calls"] > 0


def test_access_denied_on_ecs_fails_the_action_and_escalates_at_once(report) -> None:
    result, _ = report
    denied = result.scenarios[3]
    assert (denied.outcome, denied.action_status) == ("escalated", "failed")


def test_a_cloudwatch_outage_delays_detection_and_tells_the_on_call_engineer(report) -> None:
    result, _ = report
    outage = result.scenarios[4]
    assert outage.ticks_without_metrics == 10 and outage.outcome == "remediated"
    assert outage.detected_after_min >= 10
    assert result.details["blind_alerts"] == 1


def test_retries_are_bounded_and_logged(report) -> None:
    result, messages = report
    assert 1 < result.retries["max_attempts_per_call"] <= result.max_attempts_allowed
    assert any("succeeded after" in m for m in messages)
    assert any("failed with AccessDenied" in m for m in messages)
