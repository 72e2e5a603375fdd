"""Learned outcomes: every verification is remembered per service, cause and action; the diagnosis
states the action's past success rate, and an action that keeps failing on a service is skipped
for an escalation at once, saying why."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from rca.outcomes import track_record
from rca.report import render_markdown
from service.action import ActionOutcome
from service.settings import ServiceTarget, Settings
from tests.fakes import Clock, FakeEcs, FakeNotifier, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
WEB = ServiceTarget(service="web")
API = ServiceTarget(service="api")
SKIP_AFTER = 2


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def platform_for(tmp_path, clock, ecs, notifier):
    text = resources.files("rca").joinpath("playbook.toml").read_text()
    playbook = tmp_path / "playbook.toml"
    playbook.write_text(text.replace("skip_after_failures = 3", f"skip_after_failures = {SKIP_AFTER}"))
    return fake_platform(Settings(data_dir=tmp_path, playbook=playbook), ecs=ecs, notifier=notifier,
                         clock=clock)


def test_scale_up_that_never_fixes_slow_responses_is_skipped_after_the_failures(tmp_path,
                                                                                  detector) -> None:
    clock, ecs, notifier = Clock(T0), FakeEcs(), FakeNotifier()
    platform = platform_for(tmp_path, clock, ecs, notifier)
    store = platform.store
    # a dependency that stays slow whatever the number of tasks
    source = FakeSource([(T0 + pd.Timedelta(minutes=2), None, "slow_response")])
    watcher = platform.watcher(WEB, detector, source=source)
    seen: list[int] = []
    for _ in range(120):
        result = watcher.tick()
        if result.opened:
            seen.append(result.opened)
        for incident in store.open_incidents(WEB.cluster, WEB.service):
            if incident.status == "escalated":   # the on-call engineer takes it and closes it
                store.resolve(incident.id, clock.now, by="on-call", note="dependency is slow")
        clock.advance()
        if len(seen) > SKIP_AFTER and store.get(seen[SKIP_AFTER]).status != "open":
            break
    assert len(seen) == SKIP_AFTER + 1
    assert ecs.calls == [("scale_up", WEB.cluster, WEB.service)] * SKIP_AFTER, \
        "scale-up ran twice, then was not tried again"
    skipped = store.get(seen[-1])
    assert skipped.root_cause == "slow_response" and skipped.escalated_at == skipped.opened_at, \
        "escalated in the tick it was diagnosed, without waiting for a verification"
    decision = store.last_event(skipped.id, "decision")["data"]
    assert decision["skipped"] and "failed to fix slow_response on web the last 2 times" in \
        decision["summary"]
    assert [(o.cause, o.action, o.resolved) for o in store.outcomes(WEB.cluster, WEB.service)] == [
        ("slow_response", "scale_up", False)] * SKIP_AFTER
    assert skipped.diagnosis.track_record.success_rate == 0.0
    assert "Past outcomes: scale_up resolved slow_response here 0 of 2 times (0%)" in \
        skipped.diagnosis.explanation
    report = render_markdown(skipped.to_dict(), store.anomalies(skipped.id), store.events(skipped.id))
    assert "- Past outcomes of the action: scale_up resolved slow_response here 0 of 2 times (0%); " \
           "the last 2 failed" in report
    page = store.last_event(skipped.id, "escalation")["data"]
    assert page["role"] == "on-call engineer" and page["reason"].startswith("scale_up skipped: it failed")

    # the record is per service: the same fault on another service still gets its scale-up
    other = platform.watcher(API, detector, source=source)
    for _ in range(4):
        other.tick()
        clock.advance()
    [first_api] = store.open_incidents(API.cluster, API.service)
    assert first_api.diagnosis.track_record.tried == 0
    assert ecs.calls[-1] == ("scale_up", API.cluster, API.service)


def test_a_success_resets_the_run_of_failures() -> None:
    def outcome(i, resolved):
        return ActionOutcome(i, "c", "web", "high_cpu", "scale_up", resolved, T0 + pd.Timedelta(hours=i))
    history = [outcome(1, False), outcome(2, False), outcome(3, True), outcome(4, False)]
    record = track_record(history, "high_cpu", "scale_up")
    assert (record.resolved, record.failed, record.failing_streak) == (1, 3, 1)
    assert not record.never_works(2) and record.never_works(1) and not record.never_works(0)
    assert record.summary() == "scale_up resolved high_cpu here 1 of 4 times (25%)"
