"""Each row of the response matrix, end to end on the local AWS endpoint.

Fault injected -> detected -> right root cause -> right ECS state change -> verified resolved,
on the same embedded environment ``aiops demo`` uses (moto, CloudWatch history, SQLite log).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.demo import DemoEnvironment
from service.ecs import EcsActions
from service.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[DemoEnvironment]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("aiops"))
    with DemoEnvironment(settings, seed=11, progress=lambda _: None) as environment:
        yield environment


def ecs_state(env: DemoEnvironment):
    target = env.settings.target
    return EcsActions(env.factory.client("ecs")).describe(target.cluster, target.service)


def task_arns(env: DemoEnvironment) -> set[str]:
    target = env.settings.target
    return set(EcsActions(env.factory.client("ecs")).service_task_arns(target.cluster, target.service))


def test_load_surge_scales_up(env) -> None:
    row = env.play("load_surge")
    assert (row.root_cause, row.severity, row.action) == ("high_cpu", "MEDIUM", "scale_up")
    assert ecs_state(env).desired_count == 3
    assert row.verification.startswith("resolved") and row.escalation == "none"
    assert any(text.startswith("CPU: ") for text in row.anomalies.split("; "))


def test_overload_with_errors_scales_up(env) -> None:
    row = env.play("overload_errors")
    assert (row.root_cause, row.severity, row.action) == ("high_cpu_with_errors", "HIGH", "scale_up")
    assert ecs_state(env).desired_count == 3
    assert row.verification.startswith("resolved")


def test_memory_leak_restarts_tasks(env) -> None:
    env.play("error_trickle", quiet_minutes=0)  # settle back to nominal capacity first
    before = task_arns(env)
    row = env.play("memory_leak")
    assert (row.root_cause, row.severity, row.action) == ("memory_leak", "CRITICAL", "restart_tasks")
    after = task_arns(env)
    assert len(after) == 2 and not (after & before), "every leaking task was replaced"
    assert row.verification.startswith("resolved")
    assert row.oom_kills == 0, "restarted before any task was killed for memory"
    assert env.store.get(row.incident_id).diagnosis.time_to_oom is not None, "the time to OOM is told"


def test_a_few_errors_only_alert(env) -> None:
    before = ecs_state(env)
    row = env.play("error_trickle")
    assert (row.root_cause, row.severity, row.action) == ("error_rate_low", "HIGH", "alert_only")
    after = ecs_state(env)
    assert (after.desired_count, after.revision) == (before.desired_count, before.revision)
    assert row.ecs_change == "alerted on-call engineer"
    assert row.verification.startswith("resolved")


def test_bad_deploy_rolls_back(env) -> None:
    row = env.play("bad_deploy")
    assert (row.root_cause, row.severity, row.action) == ("error_rate_high", "CRITICAL", "rollback")
    state = ecs_state(env)
    assert f"-> {state.family}:{state.revision}" in row.ecs_change
    assert state.revision < env.sim.faults[-1].bad_revision
    assert row.verification.startswith("resolved")


def test_slow_dependency_scales_up(env) -> None:
    row = env.play("slow_dependency")
    assert (row.root_cause, row.severity, row.action) == ("slow_response", "MEDIUM", "scale_up")
    assert row.anomalies.startswith("Response time: ")
    assert row.verification.startswith("resolved")


def test_a_quiet_service_opens_no_incident(env) -> None:
    assert env.quiet(60) == 0


def test_a_fault_the_playbook_cannot_fix_escalates(env) -> None:
    row = env.play("dependency_outage")
    assert (row.root_cause, row.action) == ("slow_response", "scale_up")
    assert row.verification.startswith("FAILED") and row.recovery_min is None
    assert row.escalation == "on-call engineer, team lead" and row.correct
    assert env.store.get(row.incident_id).status == "resolved", "closed by the operator afterwards"
