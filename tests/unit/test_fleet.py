"""Several services under one watcher, the config file, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.fleet import AlreadyWatching, Fleet, exclusive, stop_on_signals
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from service.watch_config import ConfigError, load_watch_config
from tests.fakes import Clock, FakeEcs, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
WEB, API = ServiceTarget(cluster="prod", service="web"), ServiceTarget(cluster="prod", service="api")


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def fleet_of(tmp_path, detector, sources: dict, clock) -> tuple[Fleet, IncidentStore, FakeEcs]:
    settings = Settings(data_dir=tmp_path)
    ecs = FakeEcs()
    platform = fake_platform(settings, ecs=ecs, clock=clock)
    watchers = [platform.watcher(target, detector, source=source) for target, source in sources.items()]
    return Fleet(watchers, platform.store), platform.store, ecs


def test_each_service_has_its_own_incident_and_action(tmp_path, detector) -> None:
    clock = Clock(T0)
    fleet, store, ecs = fleet_of(tmp_path, detector, {WEB: FakeSource([(T0, None, "high_cpu")]),
                                                      API: FakeSource([(T0, None, "memory_leak")])}, clock)
    for _ in range(5):
        fleet.tick()
        clock.advance()
    assert sorted(ecs.calls) == [("restart_tasks", "prod", "api"), ("scale_up", "prod", "web")]
    assert {(i.service, i.root_cause) for i in store.list()} == {("web", "high_cpu"), ("api", "memory_leak")}


class Broken:
    def read(self, start, end):
        raise RuntimeError("disk on fire")


def test_one_broken_service_does_not_stop_the_others(tmp_path, detector) -> None:
    clock = Clock(T0)
    sources = {WEB: Broken(), API: FakeSource([(T0, None, "high_cpu")])}
    fleet, store, ecs = fleet_of(tmp_path, detector, sources, clock)
    for _ in range(4):
        rows = fleet.tick()
        clock.advance()
    assert rows[0].error == "RuntimeError: disk on fire" and rows[1].result is not None
    assert ecs.calls == [("scale_up", "prod", "api")]
    assert len(store.events_of_kind("tick_failed")) == 4


class SignalsDuringRead(FakeSource):
    """A read during which the process receives SIGTERM (a deploy, a node drain)."""

    def read(self, start, end):
        os.kill(os.getpid(), signal.SIGTERM)
        return super().read(start, end)


def test_sigterm_finishes_the_tick_in_progress_then_stops(tmp_path, detector) -> None:
    clock = Clock(T0 + pd.Timedelta(minutes=1))
    source = SignalsDuringRead([(T0, None, "high_cpu")])
    fleet, store, ecs = fleet_of(tmp_path, detector, {WEB: source, API: FakeSource()}, clock)
    stop, seen = threading.Event(), []
    with stop_on_signals(stop):
        ticks = fleet.run(stop, 0.01, seen.append)
    assert ticks == 1 and stop.is_set()
    assert [r.service for r in seen[0]] == ["prod/web", "prod/api"], "both services ticked"
    [incident] = store.list()
    assert incident.status == "verifying" and ecs.calls == [("scale_up", "prod", "web")], \
        "the incident's step was completed, not cut in half"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the previous handler is back"


def test_a_config_file_lists_services_guardrails_and_channels(tmp_path) -> None:
    path = tmp_path / "aiops.toml"
    path.write_text('mode = "approve"\n'
                    '[guardrails]\nmax_desired_count = 6\n[guardrails.cooldown_minutes]\nrollback = 120\n'
                    '[[services]]\ncluster = "prod"\nservice = "web"\n'
                    '[[services]]\ncluster = "prod"\nservice = "api"\ntarget_group = "targetgroup/api/1"\n'
                    '[notify]\nwebhook_url = "http://127.0.0.1:9/hook"\n'
                    '[notify.email]\nsender = "aiops@example.com"\n'
                    '[notify.email.recipients]\n"on-call engineer" = ["oncall@example.com"]\n')
    config = load_watch_config(path)
    assert config.mode.value == "approve" and config.watched() == ["prod/web", "prod/api"]
    assert config.guardrails.max_desired_count == 6
    assert config.guardrails.cooldown_minutes == {"rollback": 120}
    assert config.services[1].target(ServiceTarget()).target_group == "targetgroup/api/1"
    assert config.notify.email.recipients["on-call engineer"] == ["oncall@example.com"]


@pytest.mark.parametrize("text, message", [
    ("mode = 'sometimes'", "mode: Input should be 'auto', 'approve' or 'dry-run'"),
    ("[[services]]\ncluster = 'a'\nservice = 'b'\n[[services]]\ncluster = 'a'\nservice = 'b'",
     "service(s) listed twice: a/b"),
    ("[guardrails]\nmax_desired_count = -1", "guardrails.max_desired_count"),
    ("[guardrails]\nallowed_services = ['web']", "must be written cluster/service"),
    ("[notify]\nwebhook_url = 'ftp://x'", "notify.webhook_url"),
    ("[[services]]\ncluster = 'a'", "services.0.service: Field required"),
    ("nonsense = [", "not valid TOML"),
    ("colour = 'red'", "colour: Extra inputs are not permitted"),
])
def test_a_bad_config_is_refused_naming_the_file_and_field(tmp_path, text, message) -> None:
    path = tmp_path / "aiops.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_watch_config(path)
    assert str(info.value).startswith(f"config {path}") and message in str(info.value)


def test_a_missing_config_file_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config .*nope.toml"):
        load_watch_config(tmp_path / "nope.toml")


def test_one_watcher_per_incident_log(tmp_path) -> None:
    with exclusive(tmp_path):
        with pytest.raises(AlreadyWatching, match=f"another watcher \\(pid {os.getpid()}\\) is running on"):
            with exclusive(tmp_path):
                pass
    with exclusive(tmp_path):  # released when the first one stopped
        pass


def test_a_fleet_of_ensembles_scores_its_tick_in_one_pass_and_files_what_each_would(tmp_path) -> None:
    """Every window read first, all scored together: each service gets the incident and action
    its own detector would have given it, and the anomalies are those of its own detect()."""
    from detection.ensemble import ServiceDetector

    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    ensemble = ServiceDetector().fit(normal(index, np.random.default_rng(0)))
    clock = Clock(T0)
    sources = {WEB: FakeSource([(T0, None, "high_cpu")]), API: FakeSource([(T0, None, "memory_leak")]),
               ServiceTarget(cluster="prod", service="db"): FakeSource([])}
    fleet, store, ecs = fleet_of(tmp_path, ensemble, sources, clock)
    seen: dict[str, list] = {}
    real = fleet.scorer.detect

    def spy(windows, newest=None):
        found = real(windows, newest=newest)
        for name, window in windows.items():   # what each watcher's own detect would have said
            own = [a for a in ensemble.detect(window) if a.timestamp >= window.index[-newest]]
            assert [a.to_dict() for a in found[name]] == [a.to_dict() for a in own], name
            seen.setdefault(name, []).extend(found[name])
        return found

    fleet.scorer.detect = spy
    for _ in range(6):
        fleet.tick()
        clock.advance()
    assert seen["prod/web"] and seen["prod/api"] and not seen.get("prod/db")
    assert set(fleet.scorer.alone) == set() and len(fleet.scorer.groups) == 1
    assert {i.service for i in store.list()} == {"web", "api"}, "each fault filed for its service"
