"""The watcher's lifecycle with fakes for CloudWatch, ECS and the notifier, and a real SQLite log."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.ecs import ActionResult, EcsActionError, ServiceState
from service.remediation import Remediator
from service.settings import Mode, ServiceTarget, Settings
from service.store import IncidentStore
from service.watcher import Watcher

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
METRICS = ["cpu_utilization", "memory_utilization", "error_count", "response_time"]


def normal(index: pd.DatetimeIndex, rng) -> pd.DataFrame:
    n = len(index)
    return pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, n),
                         "memory_utilization": 45 + rng.normal(0, 0.5, n),
                         "error_count": rng.poisson(0.2, n).astype(float),
                         "response_time": 0.15 + rng.normal(0, 0.003, n)}, index=index)


class FakeSource:
    """CloudWatch as a frame: normal points, with CPU raised from ``surge_from`` to ``surge_to``."""

    def __init__(self, surge_from: pd.Timestamp, surge_to: pd.Timestamp | None = None):
        self.surge_from, self.surge_to = surge_from, surge_to

    def read(self, start, end) -> pd.DataFrame:
        index = pd.date_range(start, end, freq="1min", inclusive="left")
        frame = normal(index, np.random.default_rng(int(start.timestamp()) % 1000))
        hot = (index >= self.surge_from) & ((index < self.surge_to) if self.surge_to else True)
        frame.loc[hot, "cpu_utilization"] = 85.0
        return frame


@dataclass
class FakeActions:
    """Records what it was asked to do; fails when told to."""

    fail: bool = False
    calls: list = field(default_factory=list)

    def _result(self, action: str, cluster: str, service: str) -> ActionResult:
        self.calls.append((action, cluster, service))
        if self.fail:
            raise EcsActionError(f"service {service} not found in cluster {cluster}")
        state = ServiceState(cluster, service, 2, 2, "app:2", "app", 2, 1, False)
        return ActionResult(action, state, state, "desired count 2 -> 3")

    def scale_up(self, cluster, service):
        return self._result("scale_up", cluster, service)

    def restart_tasks(self, cluster, service):
        return self._result("restart_tasks", cluster, service)

    def rollback(self, cluster, service):
        return self._result("rollback", cluster, service)


@dataclass
class FakeNotifier:
    sent: list = field(default_factory=list)

    def notify(self, role: str, subject: str, body: str) -> str:
        self.sent.append((role, subject))
        return f"msg-{len(self.sent)}"


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def make_watcher(tmp_path, detector, source, actions=None, notifier=None, clock=None):
    settings = Settings(data_dir=tmp_path, mode=Mode.AUTO)
    store = IncidentStore(settings.db_path)
    playbook = load_playbook()
    actions, notifier = actions or FakeActions(), notifier or FakeNotifier()
    remediator = Remediator(actions, store, notifier, Mode.AUTO)
    watcher = Watcher(ServiceTarget(), source, detector, RuleClassifier(playbook), remediator, store,
                      notifier, playbook, settings, clock)
    return watcher, store, actions, notifier


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def run(watcher, clock, minutes: int):
    results = []
    for _ in range(minutes):
        results.append(watcher.tick())
        clock.now += pd.Timedelta(minutes=1)
    return results


def test_a_surge_opens_one_incident_one_action_and_verifies(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource(T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(minutes=10))
    watcher, store, actions, _ = make_watcher(tmp_path, detector, source, clock=clock)
    results = run(watcher, clock, 30)
    opened = [r.opened for r in results if r.opened]
    assert len(opened) == 1, "the same surge reported every minute is one incident"
    assert actions.calls == [("scale_up", "aiops-platform-cluster", "aiops-platform-service")]
    incident = store.get(opened[0])
    assert incident.status == "resolved" and incident.root_cause == "high_cpu"
    kinds = [e["kind"] for e in store.events(incident.id)]
    assert kinds.index("decision") < kinds.index("action_started") < kinds.index("action_done") \
        < kinds.index("verification")
    assert (tmp_path / "reports" / f"incident-{incident.id}.md").read_text().count("high_cpu") >= 1


def test_a_fix_that_does_not_hold_escalates_along_the_path(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, _, notifier = make_watcher(tmp_path, detector, FakeSource(T0), clock=clock)
    run(watcher, clock, 3 + 15 + 16)
    incident = store.list()[0]
    assert incident.status == "escalated"
    assert [role for role, _ in notifier.sent] == ["on-call engineer", "team lead"]


def test_a_failed_action_is_logged_and_escalated_at_once(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, actions, notifier = make_watcher(tmp_path, detector, FakeSource(T0),
                                                     actions=FakeActions(fail=True), clock=clock)
    run(watcher, clock, 4)
    incident = store.list()[0]
    failed = [e for e in store.events(incident.id) if e["kind"] == "action_failed"]
    assert incident.status == "escalated" and "not found" in failed[0]["data"]["error"]
    assert notifier.sent[0][0] == "on-call engineer"


def test_quiet_metrics_open_nothing(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, actions, _ = make_watcher(tmp_path, detector, FakeSource(T0 + pd.Timedelta(days=1)),
                                              clock=clock)
    run(watcher, clock, 20)
    assert store.list() == [] and actions.calls == []
