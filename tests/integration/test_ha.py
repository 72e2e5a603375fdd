"""Watcher replicas sharing one fleet through DynamoDB leases while replicas die: the small form
of ``aiops benchmark ha`` (three replicas, the rollback Lambda, the soak's auditor)."""

from __future__ import annotations

import pytest

from harness.habench import render, run_ha

pytestmark = pytest.mark.integration


def test_killed_replicas_are_taken_over_without_double_actions_breaches_or_lost_incidents(tmp_path) -> None:
    report = run_ha(tmp_path, incidents=3, replicas=3, kill_rate=0.5, seed=7, progress=lambda _: None)
    assert sum(report.kills.values()) >= 2 and report.kills.get("in the middle of an action"), \
        "replicas died, one of them after ECS took its action"
    assert (report.double_actions, report.breaches, report.lost) == (0, 0, 0), render(report)
    assert report.incidents >= 3 and report.takeovers >= 1
    lease, period = report.details["lease_seconds"], 60
    assert report.takeover_seconds["max"] <= lease + period, "a dead replica waits one lease at most"
    assert "double actions: 0" in render(report)
