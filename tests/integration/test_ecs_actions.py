"""Remediation actions through the ECS API, against a real moto server played by EcsWorld."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from botocore.stub import Stubber

from service.aws import ClientFactory, local_aws, reset_local_aws
from service.ecs import IAM_PERMISSIONS, EcsActionError, EcsActions
from simulation.ecs_world import EcsWorld

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
    world = EcsWorld(ecs, CLUSTER, SERVICE, FAMILY, endpoint_url=endpoint,
                     ec2_client=factory.client("ec2"))
    world.setup(T0)
    return world


@pytest.fixture()
def actions(ecs) -> EcsActions:
    return EcsActions(ecs)


def server_view(ecs) -> tuple:
    """What a user sees on the server: desired count, task definition, running task ARNs."""
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
    return service["desiredCount"], service["taskDefinition"], sorted(arns)


def test_describe_reads_the_service(world: EcsWorld, actions: EcsActions) -> None:
    state = actions.describe(CLUSTER, SERVICE)
    assert (state.cluster, state.service, state.desired_count) == (CLUSTER, SERVICE, 2)
    assert (state.family, state.revision, state.status) == (FAMILY, 2, "ACTIVE")
    assert state.task_definition.endswith(f"task-definition/{FAMILY}:2")
    assert state.deployments == 1 and not state.rolling_out


def test_scale_up_makes_the_next_sync_run_one_more_task(world: EcsWorld,
                                                        actions: EcsActions) -> None:
    result = actions.scale_up(CLUSTER, SERVICE)
    assert result.change == "desired count 2 -> 3" and not result.dry_run
    assert (result.before.desired_count, result.after.desired_count) == (2, 3)
    snap = world.sync(T0 + MINUTE)
    assert len(snap.tasks) == 3 and snap.started == 1


def test_scale_to_sets_the_count(world: EcsWorld, actions: EcsActions) -> None:
    assert actions.scale_to(CLUSTER, SERVICE, 1).change == "desired count 2 -> 1"
    assert len(world.sync(T0 + MINUTE).tasks) == 1
    with pytest.raises(EcsActionError, match="count >= 0"):
        actions.scale_to(CLUSTER, SERVICE, -1)


def test_restart_is_a_rolling_deployment_that_keeps_capacity(world: EcsWorld,
                                                             actions: EcsActions, ecs) -> None:
    old = {t.arn for t in world.sync(T0).tasks}
    made: list[str] = []
    ecs.meta.events.register("before-call.ecs.*", lambda model, **_: made.append(model.name))
    result = actions.restart_tasks(CLUSTER, SERVICE)
    assert result.change == "rolling restart: 2 tasks replaced by a new deployment"
    assert "StopTask" not in made, "no task is stopped by hand: ECS rolls the deployment"
    running = []
    for minute in range(1, 4):
        snap = world.sync(T0 + minute * MINUTE)
        running.append(snap.running)
        assert snap.running >= 2, "capacity never falls below the desired count"
    assert running[0] == 4, "new tasks start before old ones stop"
    assert len(snap.tasks) == 2 and not {t.arn for t in snap.tasks} & old, "every task replaced"


def test_restart_leaves_other_tasks_of_the_cluster_alone(world: EcsWorld, actions: EcsActions,
                                                         ecs) -> None:
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    other = ecs.run_task(cluster=CLUSTER, taskDefinition=f"{FAMILY}:1", launchType="FARGATE",
                         networkConfiguration=service["networkConfiguration"])["tasks"][0]
    actions.restart_tasks(CLUSTER, SERVICE)
    for minute in range(1, 4):
        world.sync(T0 + minute * MINUTE)
    assert other["taskArn"] in ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]


def test_rollback_after_a_bad_deploy_returns_to_the_previous_revision(
        world: EcsWorld, actions: EcsActions) -> None:
    assert world.deploy("bad-1") == 3
    world.sync(T0 + MINUTE)
    result = actions.rollback(CLUSTER, SERVICE)
    assert result.change == f"task definition {FAMILY}:3 -> {FAMILY}:2"
    assert (result.before.revision, result.after.revision) == (3, 2)
    assert result.after.task_definition.endswith(f"task-definition/{FAMILY}:2")
    snap = world.sync(T0 + 2 * MINUTE)
    assert snap.revision == 2 and len(snap.tasks) == 2
    assert all(t.revision == 2 for t in snap.tasks)


def test_rollback_skips_deregistered_revisions_and_takes_an_explicit_one(
        world: EcsWorld, actions: EcsActions, ecs) -> None:
    world.deploy("v3")
    ecs.deregister_task_definition(taskDefinition=f"{FAMILY}:2")
    assert actions.rollback(CLUSTER, SERVICE).change.endswith(f"{FAMILY}:1")
    assert actions.rollback(CLUSTER, SERVICE, to_revision=3).after.revision == 3
    with pytest.raises(EcsActionError, match=f"{FAMILY}:2 is not an ACTIVE task definition"):
        actions.rollback(CLUSTER, SERVICE, to_revision=2)


def test_rollback_with_a_single_revision_is_refused(ecs, endpoint: str, actions: EcsActions,
                                                    factory: ClientFactory) -> None:
    EcsWorld(ecs, CLUSTER, SERVICE, FAMILY, endpoint_url=endpoint,
             ec2_client=factory.client("ec2")).setup(T0, revisions=1)
    with pytest.raises(EcsActionError) as info:
        actions.rollback(CLUSTER, SERVICE)
    assert str(info.value) == (f"no previous task definition revision of {FAMILY} "
                               f"to roll back to")


def test_missing_service_and_cluster_are_named(world: EcsWorld, actions: EcsActions) -> None:
    with pytest.raises(EcsActionError) as info:
        actions.describe(CLUSTER, "no-such-service")
    assert str(info.value) == f"service no-such-service not found in cluster {CLUSTER}"
    with pytest.raises(EcsActionError, match="cluster no-such-cluster not found"):
        actions.scale_up("no-such-cluster", SERVICE)


def test_inactive_service_is_not_acted_on(world: EcsWorld, actions: EcsActions, ecs) -> None:
    ecs.delete_service(cluster=CLUSTER, service=SERVICE, force=True)
    with pytest.raises(EcsActionError, match="is not active"):
        actions.scale_up(CLUSTER, SERVICE)


def test_dry_run_changes_nothing_on_the_server(world: EcsWorld, ecs) -> None:
    world.deploy("bad-1")
    world.sync(T0 + MINUTE)
    before = server_view(ecs)
    dry = EcsActions(ecs, dry_run=True)
    results = [dry.scale_up(CLUSTER, SERVICE, by=2), dry.restart_tasks(CLUSTER, SERVICE),
               dry.rollback(CLUSTER, SERVICE)]
    assert [r.change for r in results] == [
        "desired count 2 -> 4", "would replace 2 tasks in a rolling deployment",
        f"task definition {FAMILY}:3 -> {FAMILY}:2"]
    assert all(r.dry_run and r.after == r.before for r in results)
    assert server_view(ecs) == before
    assert world.sync(T0 + 2 * MINUTE).started == 0


def test_dry_run_makes_no_mutating_call(world: EcsWorld, ecs) -> None:
    made: list[str] = []
    ecs.meta.events.register("before-call.ecs.*", lambda model, **_: made.append(model.name))
    dry = EcsActions(ecs, dry_run=True)
    dry.scale_up(CLUSTER, SERVICE)
    dry.restart_tasks(CLUSTER, SERVICE)
    dry.rollback(CLUSTER, SERVICE, to_revision=1)
    assert set(made) <= {"DescribeServices", "ListTasks", "DescribeTasks", "ListTaskDefinitions"}
    for action, permissions in IAM_PERMISSIONS.items():
        assert {p for p in permissions if not p.startswith("ecs:")} <= {
            "application-autoscaling:DescribeScalableTargets"}, action
        assert {p.split(":")[1] for p in permissions if p.startswith("ecs:")} <= {
            "DescribeServices", "ListTasks", "DescribeTasks", "ListTaskDefinitions",
            "UpdateService", "StopTask"}, action


def test_result_to_dict_is_plain_data(world: EcsWorld, actions: EcsActions) -> None:
    data = actions.scale_up(CLUSTER, SERVICE).to_dict()
    assert data["action"] == "scale_up" and data["dry_run"] is False
    assert data["before"]["desired_count"] == 2 and data["after"]["desired_count"] == 3


@pytest.mark.parametrize("code, expected", [
    ("AccessDeniedException", f"access denied to describe service {SERVICE} in cluster {CLUSTER}"),
    ("ServiceNotActiveException", f"service {SERVICE} in cluster {CLUSTER} is not active"),
    ("ThrottlingException", f"describe service {SERVICE} in cluster {CLUSTER} failed"),
])
def test_api_errors_become_one_line_action_errors(code: str, expected: str) -> None:
    client = ClientFactory(region="us-east-1").client("ecs")
    with Stubber(client) as stub:
        stub.add_client_error("describe_services", service_error_code=code,
                              service_message="not allowed")
        with pytest.raises(EcsActionError) as info:
            EcsActions(client).describe(CLUSTER, SERVICE)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_an_attached_auto_scaling_target_is_read(world: EcsWorld, ecs, factory: ClientFactory) -> None:
    aas = factory.client("application-autoscaling")
    actions = EcsActions(ecs, autoscaling_client=aas)
    assert actions.scaling_target(CLUSTER, SERVICE) is None
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId=f"service/{CLUSTER}/{SERVICE}",
                                 ScalableDimension="ecs:service:DesiredCount", MinCapacity=2, MaxCapacity=5)
    target = actions.scaling_target(CLUSTER, SERVICE)
    assert (target.min_capacity, target.max_capacity) == (2, 5)
    assert actions.status(CLUSTER, SERVICE).scaling == target
    aas.deregister_scalable_target(ServiceNamespace="ecs", ResourceId=f"service/{CLUSTER}/{SERVICE}",
                                   ScalableDimension="ecs:service:DesiredCount")


def test_status_lists_the_deployments(world: EcsWorld, actions: EcsActions) -> None:
    status = actions.status(CLUSTER, SERVICE)
    assert status.state.desired_count == 2 and status.scaling is None
    assert [d["status"] for d in status.deployments] == ["PRIMARY"]
    assert status.deployments[0]["taskDefinition"].endswith(f"{FAMILY}:2")
    assert status.to_dict()["state"]["service"] == SERVICE


def test_scale_up_respects_a_ceiling_read_just_before_the_update(world: EcsWorld, actions: EcsActions,
                                                                 ecs) -> None:
    made: list[str] = []
    ecs.meta.events.register("before-call.ecs.UpdateService", lambda **_: made.append("update"))
    with pytest.raises(EcsActionError, match="desired count 2 -> 3 exceeds 2"):
        actions.scale_up(CLUSTER, SERVICE, max_count=2)
    assert made == [] and actions.scale_up(CLUSTER, SERVICE, max_count=3).after.desired_count == 3


def test_scaling_to_the_current_count_makes_no_call(world: EcsWorld, actions: EcsActions, ecs) -> None:
    made: list[str] = []
    ecs.meta.events.register("before-call.ecs.UpdateService", lambda **_: made.append("update"))
    assert actions.scale_to(CLUSTER, SERVICE, 2).change == "desired count already 2"
    assert made == []


def test_tasks_stopped_for_running_out_of_memory_are_counted(world: EcsWorld, actions: EcsActions,
                                                              ecs) -> None:
    arns = actions.service_task_arns(CLUSTER, SERVICE)
    oom = "OutOfMemoryError: Container killed due to memory usage"
    ecs.stop_task(cluster=CLUSTER, task=arns[0], reason=oom)
    ecs.stop_task(cluster=CLUSTER, task=arns[1], reason="Scaling activity initiated by deployment")
    assert actions.oom_stopped_tasks(CLUSTER, SERVICE) == 1
