"""Kill the watcher at every step of an incident's life, start a new one on the same log.

The crash is a BaseException raised right after a given step was written to SQLite (or in the
middle of the ECS call), so nothing after it runs, as with a SIGKILL. The restarted watcher is
a new object on a new connection to the same file; ECS and the notifier carry on as the world
would. Whatever the crash point: the action runs at most once, the verification happens exactly
once, and the incident ends resolved or escalated with the on-call engineer paged once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.settings import Mode, ServiceTarget, Settings
from service.store import IncidentStore
from service.watcher import Watcher
from tests.fakes import Clock, FakeEcs, FakeNotifier, FakeSource, fake_platform, normal

pytestmark = pytest.mark.integration

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
WRITES = ("open_incident", "add_anomalies", "record", "set_diagnosis", "set_status",
          "complete_verification", "begin_action", "finish_action")


class Crash(BaseException):
    """The process dies here (BaseException: no `except Exception` may swallow it)."""


class CrashingStore(IncidentStore):
    """The incident log, dying once right after the first write of event kind ``after``."""

    def __init__(self, path, after: str | None):
        super().__init__(path)
        self.after = after

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            seen = self._last_event_id()
            out = attr(*args, **kwargs)
            target = super(CrashingStore, self).__getattribute__("after")
            if target and target in self._kinds_since(seen):
                self.after = None
                raise Crash(f"killed after {target}")
            return out
        return write

    def _last_event_id(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def _kinds_since(self, event_id: int) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT kind FROM events WHERE id > ?", (event_id,))]


class CrashingEcs(FakeEcs):
    """ECS that applies the first mutating call, then the process dies before it returns."""

    def __init__(self):
        super().__init__()
        self.armed = False

    def _mutate(self, *args, **kwargs):
        result = super()._mutate(*args, **kwargs)
        if self.armed:
            self.armed = False
            raise Crash("killed during the ECS call")
        return result


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def start_watcher(path, detector, source, ecs, notifier, clock, crash_after=None) -> Watcher:
    settings = Settings(data_dir=path, mode=Mode.AUTO)
    store = CrashingStore(settings.db_path, crash_after)
    platform = fake_platform(settings, ecs=ecs, notifier=notifier, clock=clock, store=store)
    return platform.watcher(ServiceTarget(), detector, source=source)


def live_through(tmp_path, detector, source, crash_after=None, in_ecs_call=False, minutes=45):
    clock, ecs, notifier = Clock(T0), CrashingEcs(), FakeNotifier()
    ecs.armed = in_ecs_call
    watcher = start_watcher(tmp_path, detector, source, ecs, notifier, clock, crash_after)
    crashes = 0
    for _ in range(minutes):
        try:
            watcher.tick()
        except Crash:
            crashes += 1
            clock.advance()  # the restart takes a minute
            watcher = start_watcher(tmp_path, detector, source, ecs, notifier, clock)
            continue
        clock.advance()
    return IncidentStore(tmp_path / "incidents.sqlite"), ecs, notifier, crashes


STEPS = ["opened", "diagnosed", "decision", "action_started", "action_done", "status:verifying",
         "verification", "report", "report_sent"]


@pytest.mark.parametrize("step", STEPS + ["in the ECS call"])
def test_a_fix_that_holds_is_verified_once_whatever_the_crash(tmp_path, detector, step) -> None:
    source = FakeSource([(T0, T0 + pd.Timedelta(minutes=8), "high_cpu")])
    in_call = step == "in the ECS call"
    store, ecs, notifier, crashes = live_through(tmp_path, detector, source,
                                                 None if in_call else step, in_ecs_call=in_call)
    assert crashes == 1
    [incident] = store.list()
    events = store.events(incident.id)
    assert [e["kind"] for e in events].count("verification") == 1
    assert incident.status == "resolved"
    assert len(ecs.calls) <= 1, "an action is never repeated"
    if step not in ("opened", "diagnosed", "decision", "action_started"):
        assert ecs.calls == [("scale_up", incident.cluster, incident.service)]
    assert [s for _, s in notifier.sent if s.startswith("Resolved")] == [
        f"Resolved: incident {incident.id} on {incident.service} (high_cpu) - RCA report"]
    assert store.actions(status="started") == [], "no action left hanging"


@pytest.mark.parametrize("step", ["action_done", "status:verifying", "verification", "escalation"])
def test_a_fix_that_fails_is_escalated_once_whatever_the_crash(tmp_path, detector, step) -> None:
    source = FakeSource([(T0, None, "high_cpu")])
    store, ecs, notifier, crashes = live_through(tmp_path, detector, source, step, minutes=40)
    [incident] = store.list()
    kinds = [e["kind"] for e in store.events(incident.id)]
    assert crashes == 1 and kinds.count("verification") == 1
    assert incident.status == "escalated" and len(ecs.calls) == 1
    assert notifier.roles() == ["on-call engineer", "team lead"], "each role paged once"


def test_an_action_interrupted_before_ecs_answered_is_not_repeated(tmp_path, detector) -> None:
    source = FakeSource([(T0, None, "memory_leak")])
    store, ecs, notifier, _ = live_through(tmp_path, detector, source, "action_started", minutes=25)
    [incident] = store.list()
    [action] = store.actions(incident_id=incident.id)
    assert action.status == "interrupted" and ecs.calls == []
    assert incident.status == "escalated", "the verification found the leak still there"
    assert notifier.roles()[0] == "on-call engineer"
