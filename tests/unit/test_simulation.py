"""The simulated service's physics: actions taken on ECS change the metrics that follow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulation.ecs_world import EcsSnapshot, TaskInfo
from simulation.faults import FAULTS, ActiveFault
from simulation.physics import Conditions, ServiceShape, normal_load, service_metrics
from simulation.simulator import Simulator

NOON = pd.DatetimeIndex([pd.Timestamp("2026-11-17 16:00", tz="UTC")] * 200)
SHAPE = ServiceShape()


def metrics(tasks: int, **cond) -> pd.DataFrame:
    load = normal_load(NOON, SHAPE) * cond.pop("load_factor", 1.0)
    return service_metrics(NOON, Conditions(load=load, tasks=np.full(len(NOON), tasks), **cond),
                           SHAPE, np.random.default_rng(0))


def test_load_is_seasonal() -> None:
    index = pd.DatetimeIndex(["2026-11-17 16:00", "2026-11-17 04:00", "2026-11-21 16:00"], tz="UTC")
    peak, night, saturday = normal_load(index, SHAPE)
    assert night < 0.6 * peak and saturday < peak


def test_more_tasks_lower_cpu_and_latency() -> None:
    surged_two, surged_three = metrics(2, load_factor=1.5), metrics(3, load_factor=1.5)
    normal = metrics(2)
    assert surged_two.cpu_utilization.mean() > normal.cpu_utilization.mean() + 10
    assert abs(surged_three.cpu_utilization.mean() - normal.cpu_utilization.mean()) < 1
    assert surged_three.response_time.mean() < surged_two.response_time.mean()


def snapshot(starts: list[str], revision: int = 2) -> EcsSnapshot:
    tasks = tuple(TaskInfo(f"arn:{i}", pd.Timestamp(s, tz="UTC"), revision) for i, s in enumerate(starts))
    return EcsSnapshot(len(tasks), tasks, f"app:{revision}", revision, (), 0, 0)


def test_restarted_tasks_carry_no_leaked_memory() -> None:
    leak = ActiveFault(FAULTS["memory_leak"], pd.Timestamp("2026-11-17 10:00", tz="UTC"))
    now = pd.Timestamp("2026-11-17 10:20", tz="UTC")
    old = snapshot(["2026-11-17 08:00", "2026-11-17 08:00"])
    fresh = snapshot(["2026-11-17 10:15", "2026-11-17 10:15"])
    assert Simulator._leak(leak, old, now) == 30.0
    assert Simulator._leak(leak, fresh, now) == 0.0


def test_rolling_back_removes_a_bad_deploys_errors() -> None:
    deploy = ActiveFault(FAULTS["bad_deploy"], pd.Timestamp("2026-11-17 10:00", tz="UTC"), bad_revision=3)
    share = np.array([1.0])
    assert Simulator._errors(deploy, snapshot(["2026-11-17 10:00"] * 2, revision=3), share) == 30.0
    assert Simulator._errors(deploy, snapshot(["2026-11-17 10:10"] * 2, revision=2), share) == 0.0


def test_an_extra_task_ends_overload_errors() -> None:
    overload = ActiveFault(FAULTS["overload_errors"], pd.Timestamp("2026-11-17 10:00", tz="UTC"))
    snap = snapshot(["2026-11-17 08:00"] * 2)
    assert Simulator._errors(overload, snap, np.array([1.5])) == 25.0
    assert Simulator._errors(overload, snap, np.array([1.0])) == 0.0


class KillingWorld:
    """The one call the simulator makes to kill a task, recorded."""

    def __init__(self):
        self.killed: list[tuple[str, str]] = []

    def kill(self, arn: str, reason: str) -> None:
        self.killed.append((arn, reason))


def test_a_task_whose_memory_reaches_its_limit_is_oom_killed() -> None:
    world = KillingWorld()
    sim = Simulator(world, write=lambda frame: len(frame), clock=None)
    leak = ActiveFault(FAULTS["memory_leak"], pd.Timestamp("2026-11-17 10:00", tz="UTC"))
    sim.faults.append(leak)
    tasks = snapshot(["2026-11-17 08:00", "2026-11-17 10:30"])   # the second started after the leak
    assert sim._kill_out_of_memory(pd.Timestamp("2026-11-17 10:20", tz="UTC"), tasks) == 0
    later = pd.Timestamp("2026-11-17 10:50", tz="UTC")
    assert sim._kill_out_of_memory(later, tasks) == 1
    assert world.killed == [("arn:0", "OutOfMemoryError: Container killed due to memory usage")]
    assert sim.oom_kills == [(later, "arn:0")]
