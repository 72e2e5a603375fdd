"""The simulated ECS scheduler against a real moto server: what the simulator relies on."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from service.aws import ClientFactory, local_aws, reset_local_aws
from simulation.ecs_world import EcsWorld, parse_task_definition

pytestmark = pytest.mark.integration

CLUSTER, SERVICE, FAMILY = "aiops-platform-cluster", "aiops-platform-service", "aiops-platform"
T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws() as url:
        yield url


@pytest.fixture(scope="module")
def factory(endpoint: str) -> ClientFactory:
    return ClientFactory(endpoint_url=endpoint)


@pytest.fixture()
def ecs(endpoint: str, factory: ClientFactory):
    """A fresh ECS client on an empty server (one per test: tests register event hooks)."""
    reset_local_aws(endpoint)
    return factory.session().client("ecs", endpoint_url=endpoint)


@pytest.fixture()
def world(ecs, endpoint: str, factory: ClientFactory) -> EcsWorld:
    return EcsWorld(ecs, CLUSTER, SERVICE, FAMILY, endpoint_url=endpoint,
                    ec2_client=factory.client("ec2"))


def running_arns(ecs) -> set[str]:
    """What the server says runs, filtered as a user would: by the service's group."""
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return set()
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    return {t["taskArn"] for t in tasks if t["group"] == f"service:{SERVICE}"}


def test_setup_runs_desired_tasks_on_latest_revision(world: EcsWorld, ecs) -> None:
    snap = world.setup(T0)
    assert (snap.desired_count, len(snap.tasks), snap.started) == (2, 2, 2)
    assert snap.task_definition == f"{FAMILY}:2" and snap.revision == 2
    assert all(t.revision == 2 and t.started_at == T0 for t in snap.tasks)
    assert running_arns(ecs) == {t.arn for t in snap.tasks}


def test_steady_state_changes_nothing(world: EcsWorld) -> None:
    first = world.setup(T0)
    for minute in range(1, 4):
        snap = world.sync(T0 + minute * MINUTE)
        assert snap.tasks == first.tasks
        assert (snap.started, snap.stopped, snap.replaced) == (0, 0, ())


def test_raised_desired_count_starts_a_task_at_sim_time(world: EcsWorld, ecs) -> None:
    world.setup(T0)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)
    snap = world.sync(T0 + MINUTE)
    assert (len(snap.tasks), snap.started) == (3, 1)
    assert sorted(t.started_at for t in snap.tasks) == [T0, T0, T0 + MINUTE]


def test_lowered_desired_count_stops_newest_tasks_first(world: EcsWorld, ecs) -> None:
    world.setup(T0)
    world.set_desired_count(3)
    newest = world.sync(T0 + MINUTE).tasks[-1]
    world.set_desired_count(1)
    snap = world.sync(T0 + 2 * MINUTE)
    assert (len(snap.tasks), snap.stopped) == (1, 2)
    assert newest.arn not in running_arns(ecs)
    assert snap.tasks[0].started_at == T0


def test_stopped_tasks_are_replaced_with_new_arns(world: EcsWorld, ecs) -> None:
    old = world.setup(T0)
    victim = old.tasks[0].arn
    ecs.stop_task(cluster=CLUSTER, task=victim, reason="someone else")
    snap = world.sync(T0 + 5 * MINUTE)
    assert snap.replaced == (victim,) and snap.started == 1
    assert victim not in {t.arn for t in snap.tasks}
    assert world.started_at(victim) is None
    assert sorted(t.started_at for t in snap.tasks) == [T0, T0 + 5 * MINUTE]


def test_deploy_replaces_every_task_with_the_new_revision(world: EcsWorld, ecs) -> None:
    old = world.setup(T0)
    assert world.deploy("bad-1") == 3
    snap = world.sync(T0 + MINUTE)
    assert snap.revision == 3 and len(snap.tasks) == 2
    assert all(t.revision == 3 and t.started_at == T0 + MINUTE for t in snap.tasks)
    assert not {t.arn for t in old.tasks} & running_arns(ecs)


def test_literal_family_revision_on_the_service_is_understood(world: EcsWorld, ecs) -> None:
    world.setup(T0)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=f"{FAMILY}:1")
    snap = world.sync(T0 + MINUTE)
    assert snap.task_definition == f"{FAMILY}:1"
    assert all(t.revision == 1 for t in snap.tasks)


def test_other_tasks_of_the_cluster_are_left_alone(world: EcsWorld, ecs) -> None:
    first = world.setup(T0)
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    other = ecs.run_task(cluster=CLUSTER, taskDefinition=f"{FAMILY}:1", launchType="FARGATE",
                         networkConfiguration=service["networkConfiguration"])["tasks"][0]
    snap = world.sync(T0 + MINUTE)
    assert snap.tasks == first.tasks
    listed = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    assert other["taskArn"] in listed


def test_a_fresh_world_adopts_the_running_tasks(world: EcsWorld, ecs, endpoint: str,
                                                 factory: ClientFactory) -> None:
    first = world.setup(T0)
    again = EcsWorld(ecs, CLUSTER, SERVICE, FAMILY, endpoint_url=endpoint,
                     ec2_client=factory.client("ec2")).sync(T0 + MINUTE)
    assert {t.arn for t in again.tasks} == {t.arn for t in first.tasks}
    assert again.started == 0


def test_parse_task_definition_reads_arns_and_literals() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/aiops-platform:12"
    assert parse_task_definition(arn) == ("aiops-platform", 12)
    assert parse_task_definition("aiops-platform:3") == ("aiops-platform", 3)
    with pytest.raises(ValueError):
        parse_task_definition("aiops-platform")
