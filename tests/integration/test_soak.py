"""A small soak: incidents of every kind on nine services, and an auditor that finds no breach.

The benchmark (``aiops benchmark soak``) runs a thousand; this runs enough to meet every
guardrail at least once, and checks the auditor is not blind by removing the guardrails.
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.soak import run_soak
from service.guardrails import Guardrails, Verdict

pytestmark = pytest.mark.integration


class NoGuardrails(Guardrails):
    """Allows everything: what the auditor must catch."""

    def check(self, request, facts, history, at: pd.Timestamp) -> Verdict:
        return Verdict(True)


def test_guardrails_hold_over_incidents_of_every_kind(tmp_path) -> None:
    report = run_soak(tmp_path, incidents=40, seed=5, progress=lambda _: None)
    assert report.breaches == [] and report.lost == 0
    assert report.incidents == 40
    assert set(report.by_cause) == {"high_cpu", "high_cpu_with_errors", "memory_leak", "error_rate_low",
                                    "error_rate_high", "slow_response"}
    assert "not_allowed" in report.refusals and len(report.refusals) >= 3, report.refusals
    assert {"auto", "manual", "lambda"} <= set(report.actions_by_origin)
    assert report.outcomes.get("remediated, verified", 0) > 0


def test_the_auditor_catches_breaches_when_the_guardrails_are_gone(tmp_path) -> None:
    report = run_soak(tmp_path, incidents=25, seed=5, progress=lambda _: None, guardrails=NoGuardrails())
    rules = {b.split(": ")[1] for b in report.breaches}
    assert "allow-list" in rules and len(report.breaches) >= 5
