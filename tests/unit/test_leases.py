"""Service leases: several watcher replicas share one fleet, and a dead replica's services are
taken over after the lease lapses, resuming what it left."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.aws import ClientFactory, local_aws
from service.dynamo_store import create_table
from service.fleet import Fleet
from service.leases import DynamoLeases, MemoryLeases, SqliteLeases
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from tests.fakes import Clock, FakeEcs, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
TTL = pd.Timedelta(minutes=2)
WEB = ServiceTarget(cluster="prod", service="web")


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[ClientFactory]:
    with local_aws():
        yield ClientFactory()


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def leases(request, tmp_path, dynamodb):
    if request.param == "memory":
        return MemoryLeases()
    if request.param == "sqlite":
        return SqliteLeases(tmp_path / "incidents.sqlite")
    client = dynamodb.client("dynamodb")
    table = f"leases-{abs(hash(str(tmp_path))) % 10**8}"
    create_table(client, table)
    return DynamoLeases(client, table)


def test_one_holder_at_a_time_until_the_lease_lapses_or_is_given_up(leases) -> None:
    assert leases.hold("prod/web", "a", T0, TTL)
    assert not leases.hold("prod/web", "b", T0 + pd.Timedelta(seconds=119), TTL), "a still holds it"
    assert leases.hold("prod/web", "a", T0 + pd.Timedelta(minutes=1), TTL), "the holder renews"
    assert not leases.hold("prod/web", "b", T0 + pd.Timedelta(minutes=2), TTL), "renewed: until 10:03"
    assert leases.holder("prod/web", T0 + pd.Timedelta(minutes=2)) == "a"
    assert leases.hold("prod/web", "b", T0 + pd.Timedelta(minutes=3, seconds=1), TTL), "lapsed: b takes it"
    assert not leases.hold("prod/web", "a", T0 + pd.Timedelta(minutes=4), TTL), "a lost it"
    leases.release("prod/web", "a")   # not a's to give up: nothing happens
    assert leases.holder("prod/web", T0 + pd.Timedelta(minutes=4)) == "b"
    leases.release("prod/web", "b")
    assert leases.holder("prod/web", T0 + pd.Timedelta(minutes=4)) is None
    assert leases.hold("prod/web", "a", T0 + pd.Timedelta(minutes=4), TTL), "given up: free at once"
    assert leases.hold("prod/api", "b", T0 + pd.Timedelta(minutes=4), TTL), "each service its own lease"


def test_heartbeats_count_the_replicas_alive(leases) -> None:
    assert leases.heartbeat("a", T0, TTL) == 1
    assert leases.heartbeat("b", T0 + pd.Timedelta(minutes=1), TTL) == 2
    assert leases.heartbeat("a", T0 + pd.Timedelta(minutes=2), TTL) == 2
    assert leases.heartbeat("a", T0 + pd.Timedelta(minutes=3), TTL) == 1, "b's heartbeat lapsed"


class Killed(BaseException):
    """The replica's process dies (not an error any code of it handles)."""


class DiesWhileScaling(FakeEcs):
    """ECS takes the scale-up, then the replica that asked for it dies before hearing back."""

    def scale_up(self, cluster, service, by=1, max_count=None):
        super().scale_up(cluster, service, by=by, max_count=max_count)
        raise Killed()


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def replica(name: str, store: IncidentStore, leases: MemoryLeases, ecs: FakeEcs, clock, detector,
            tmp_path) -> Fleet:
    platform = fake_platform(Settings(data_dir=tmp_path), ecs=ecs, clock=clock, store=store)
    watcher = platform.watcher(WEB, detector, source=FakeSource([(T0, None, "high_cpu")]))
    return Fleet([watcher], store, leases=leases, owner=name, lease_ttl=TTL)


def test_a_dead_replica_s_service_is_taken_over_and_its_action_never_repeated(tmp_path, detector) -> None:
    clock, leases = Clock(T0), MemoryLeases()
    store = IncidentStore(tmp_path / "incidents.sqlite")
    ecs = DiesWhileScaling()
    a = replica("a", store, leases, ecs, clock, detector, tmp_path)
    b = replica("b", store, leases, ecs, clock, detector, tmp_path)
    ticked_by_b, died_at = [], None
    for _ in range(30):
        if died_at is None:
            try:
                a.tick()
            except Killed:
                died_at = clock()
        ticked_by_b += [clock()] if b.tick() else []
        clock.advance()
    assert died_at is not None, "a opened the incident and scaled up, then died"
    assert ticked_by_b and ticked_by_b[0] - died_at <= TTL + pd.Timedelta(minutes=1), \
        "b took the service over within the lease's ttl"
    assert all(t > died_at for t in ticked_by_b), "never two replicas on one service"
    assert ecs.calls == [("scale_up", "prod", "web")], "the action is not repeated by the new owner"
    [action] = store.actions()
    assert action.status == "interrupted", "b settled the action a died in"
    [incident] = store.list()
    kinds = [e["kind"] for e in store.events(incident.id)]
    assert "verification" in kinds, "b verified the incident a opened"
    taken = [e["data"] for e in store.events_of_kind("lease_taken")]
    assert [t["replica"] for t in taken] == ["a", "b"]


def test_replicas_share_the_fleet_and_the_survivor_takes_it_all(tmp_path, detector) -> None:
    clock, leases = Clock(T0), MemoryLeases()
    store = IncidentStore(tmp_path / "incidents.sqlite")
    targets = [ServiceTarget(cluster="prod", service=f"s{k}") for k in range(5)]

    def replica_of(name: str) -> Fleet:
        platform = fake_platform(Settings(data_dir=tmp_path), clock=clock, store=store)
        watchers = [platform.watcher(t, detector, source=FakeSource()) for t in targets]
        return Fleet(watchers, store, leases=leases, owner=name, lease_ttl=TTL)

    a, b = replica_of("a"), replica_of("b")
    for _ in range(4):
        a.tick()
        b.tick()
        clock.advance()
    assert not a.held & b.held and len(a.held | b.held) == 5, "every service has one owner"
    assert sorted([len(a.held), len(b.held)]) == [2, 3], "each replica has its fair share"
    for _ in range(4):   # b dies: its heartbeat and its leases lapse, a takes everything
        a.tick()
        clock.advance()
    assert len(a.held) == 5


def test_a_held_lease_is_written_again_once_half_of_it_has_run(tmp_path, detector) -> None:
    clock, leases = Clock(T0), MemoryLeases()
    writes = []
    hold = leases.hold
    leases.hold = lambda *a: writes.append(clock()) or hold(*a)
    store = IncidentStore(tmp_path / "incidents.sqlite")
    platform = fake_platform(Settings(data_dir=tmp_path), clock=clock, store=store)
    fleet = Fleet([platform.watcher(WEB, detector, source=FakeSource())], store, leases=leases,
                  owner="a", lease_ttl=pd.Timedelta(minutes=4))
    for _ in range(6):
        fleet.tick()
        clock.advance()
    minutes = [(t - T0) / pd.Timedelta(minutes=1) for t in writes]
    assert minutes == [0, 2, 4], "taken, then renewed each time half of its 4 minutes has run"
    assert fleet.held == {fleet.watchers[0].name}
    assert leases.holder(fleet.watchers[0].name, clock()) == "a", "never lapsed"
