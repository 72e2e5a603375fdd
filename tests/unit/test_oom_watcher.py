"""Restart before OOM: the watcher reads memory's trend, carries the time to OOM in a memory_leak
diagnosis, and restarts ahead of the kill when the forecast is inside the playbook's horizon."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from rca.report import render_markdown
from service.dashboard import incident_view
from service.guardrails import Facts, Guardrails
from service.settings import ServiceTarget, Settings
from service.store import ActionHistory, ActionRequest
from tests.fakes import Clock, FakeEcs, FakeService, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
TARGET = ServiceTarget()
CS = (TARGET.cluster, TARGET.service)
LEAK_START = T0 + pd.Timedelta(minutes=5)
RATE = 0.8   # points a minute: from 45% the tasks would be killed about 70 minutes in


class LeakingSource(FakeSource):
    """Quiet metrics, memory climbing since LEAK_START until the service's tasks are restarted."""

    def __init__(self, ecs: FakeEcs):
        super().__init__()
        self.ecs = ecs
        self.restarted_at: pd.Timestamp | None = None

    def read(self, start, end) -> pd.DataFrame:
        frame = super().read(start, end)
        if self.restarted_at is None and self.ecs.service(*CS).restarts:
            self.restarted_at = pd.Timestamp(end) - pd.Timedelta(minutes=1)
        minutes = (frame.index - LEAK_START).total_seconds().to_numpy() / 60
        climbing = (minutes >= 0) & ((frame.index < self.restarted_at) if self.restarted_at is not None
                                     else True)
        frame.loc[climbing, "memory_utilization"] += RATE * minutes[climbing]
        return frame


@pytest.fixture(scope="module")
def deaf_detector() -> RobustZDetector:
    """A detector that never fires: only the forecast can see this leak coming."""
    index = pd.date_range(T0 - pd.Timedelta(days=3), T0, freq="1min", inclusive="left")
    return RobustZDetector(threshold=1e6).fit(normal(index, np.random.default_rng(0)))


def playbook_with_horizon(tmp_path, minutes: float):
    text = resources.files("rca").joinpath("playbook.toml").read_text()
    path = tmp_path / "playbook.toml"
    path.write_text(text.replace("horizon_minutes = 60", f"horizon_minutes = {minutes}"))
    return path


def watch(tmp_path, detector, horizon: float, minutes: int = 90):
    clock = Clock(T0)
    ecs = FakeEcs()
    settings = Settings(data_dir=tmp_path, playbook=playbook_with_horizon(tmp_path, horizon))
    platform = fake_platform(settings, ecs=ecs, clock=clock)
    source = LeakingSource(ecs)
    watcher = platform.watcher(TARGET, detector, source=source)
    results = []
    for _ in range(minutes):
        results.append(watcher.tick())
        clock.advance()
    return platform.store, ecs, source, results


def test_the_tasks_are_restarted_before_the_forecast_oom(tmp_path, deaf_detector) -> None:
    store, ecs, source, results = watch(tmp_path, deaf_detector, horizon=60)
    [incident_id] = [r.opened for r in results if r.opened]
    incident = store.get(incident_id)
    assert incident.root_cause == "memory_leak" and incident.status == "resolved"
    assert ecs.calls == [("restart_tasks", *CS)], "one rolling restart, nothing else"
    forecast = incident.diagnosis.time_to_oom
    assert forecast is not None and forecast.within(60)
    oom_at = LEAK_START + pd.Timedelta(minutes=55 / RATE)
    assert source.restarted_at < oom_at - pd.Timedelta(minutes=10), "well before the kill"
    assert abs(forecast.reaches_at - oom_at) < pd.Timedelta(minutes=0.2 * (oom_at - forecast.at)
                                                            .total_seconds() / 60)
    report = render_markdown(incident.to_dict(), store.anomalies(incident_id), store.events(incident_id))
    assert "Time to OOM:" in report
    assert " min, at " in incident_view(store, incident_id)["time_to_oom"], "the dashboard shows it"


def test_without_a_horizon_the_forecast_alone_restarts_nothing(tmp_path, deaf_detector) -> None:
    store, ecs, _, results = watch(tmp_path, deaf_detector, horizon=0, minutes=40)
    assert ecs.calls == [] and not any(r.opened for r in results)


def test_a_restart_is_refused_while_a_deployment_rolls_out() -> None:
    guardrails = Guardrails(watched=[f"{TARGET.cluster}/{TARGET.service}"])
    state = FakeEcs({CS: FakeService(rolling_out=True)}).describe(*CS)
    verdict = guardrails.check(ActionRequest(*CS, "restart_tasks"), Facts(state), ActionHistory(), T0)
    assert not verdict.allowed and verdict.reason == "rolling_out"
