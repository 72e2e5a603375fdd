"""The simulated service: ECS state read back each minute, metrics written to CloudWatch.

Each ``step`` plays one simulated minute: the ECS side plays the scheduler (so actions taken
through the ECS API show up as tasks), the physics turns load, tasks and faults into metrics,
and the metrics go to CloudWatch through the writer handed in. A task whose own memory (the
service's share plus what a leak added to it) reaches 100% is killed as ECS kills it
(``OutOfMemoryError``, see :attr:`Simulator.oom_kills`) and the scheduler replaces it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from simulation.clock import SimClock
from simulation.ecs_world import EcsSnapshot, EcsWorld
from simulation.faults import ActiveFault, get_fault
from simulation.physics import (
    Conditions,
    ServiceShape,
    history,
    normal_load,
    service_metrics,
)

MetricWriter = Callable[[pd.DataFrame], int]
OVERLOAD_SHARE = 1.15   # a task 15% over its usual share of requests starts timing out
MEMORY_LIMIT = 100.0    # a task is killed when its memory reaches this (% of its reservation)
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


class Simulator:
    """One simulated ECS service.

    Parameters
    ----------
    world : the ECS side (cluster, service, task definitions, scheduler).
    write : puts a metric frame into CloudWatch (``CloudWatchMetrics.write``).
    clock : the simulated clock; ``tick`` advances it.
    seed : fixes the noise.
    """

    def __init__(self, world: EcsWorld, write: MetricWriter, clock: SimClock, seed: int = 0,
                 shape: ServiceShape | None = None):
        self.world = world
        self.write = write
        self.clock = clock
        self.shape = shape or ServiceShape()
        self.rng = np.random.default_rng(seed)
        self.faults: list[ActiveFault] = []
        self.snapshot: EcsSnapshot | None = None
        self.oom_kills: list[tuple[pd.Timestamp, str]] = []   # (when, task ARN) killed for memory

    def bootstrap(self, history_days: int = 14) -> pd.DataFrame:
        """Create the ECS service and write ``history_days`` of normal metrics before now."""
        self.snapshot = self.world.setup(self.clock.now, desired_count=self.shape.nominal_tasks)
        past = history(self.clock.now, history_days, self.shape, self.rng)
        self.write(past)
        return past

    def inject(self, name: str) -> ActiveFault:
        """Start fault ``name`` now; a bad deploy ships its revision through ECS."""
        fault = get_fault(name)
        active = ActiveFault(fault, self.clock.now)
        if fault.deploy_errors:
            active.bad_revision = self.world.deploy(image_tag=f"bad-{self.clock.now:%H%M}")
        self.faults.append(active)
        return active

    def clear(self) -> None:
        """End every fault and put the service back to nominal capacity."""
        self.faults.clear()
        self.world.set_desired_count(self.shape.nominal_tasks)

    def step(self) -> pd.DataFrame:
        """Play the current minute: sync ECS, write the minute's metrics. The clock stays."""
        now = self.clock.now
        self.snapshot = self.world.sync(now)
        if self._kill_out_of_memory(now, self.snapshot):
            self.snapshot = self.world.sync(now)   # the scheduler replaces them at once
        frame = self.metrics_at(now, self.snapshot)
        self.write(frame)
        return frame

    def tick(self) -> pd.DataFrame:
        """Play the current minute, then advance the clock by one minute."""
        frame = self.step()
        self.clock.advance()
        return frame

    def metrics_at(self, now: pd.Timestamp, snap: EcsSnapshot) -> pd.DataFrame:
        index = pd.DatetimeIndex([now])
        normal = normal_load(index, self.shape)
        active = [f for f in self.faults if f.active(now)]
        load = normal * np.prod([f.fault.load_factor for f in active] or [1.0])
        tasks = max(len(snap.tasks), 1)
        share = (load / tasks) / (normal / self.shape.nominal_tasks)
        cond = Conditions(load=load, tasks=np.array([tasks]),
                          leaked_memory=sum(self._leak(f, snap, now) for f in active),
                          fault_errors=sum(self._errors(f, snap, share) for f in active),
                          latency_add=sum(f.fault.latency_add for f in active))
        return service_metrics(index, cond, self.shape, self.rng)

    def task_memory(self, now: pd.Timestamp, snap: EcsSnapshot) -> dict[str, float]:
        """Each running task's memory without noise: its share of the load plus what leaked into it."""
        if not snap.tasks:
            return {}
        index = pd.DatetimeIndex([now])
        active = [f for f in self.faults if f.active(now)]
        normal = normal_load(index, self.shape)
        load = normal * np.prod([f.fault.load_factor for f in active] or [1.0])
        share = float(load[0] / self.shape.peak_rpm) * self.shape.nominal_tasks / len(snap.tasks)
        base = self.shape.memory_base + self.shape.memory_at_peak * share
        return {t.arn: base + sum(f.fault.leak_per_minute * (now - f.start).total_seconds() / 60
                                  for f in active if f.fault.leak_per_minute and t.started_at <= f.start)
                for t in snap.tasks}

    def _kill_out_of_memory(self, now: pd.Timestamp, snap: EcsSnapshot) -> int:
        """Kill the tasks whose memory reached the limit, as ECS does; returns how many."""
        doomed = [arn for arn, memory in self.task_memory(now, snap).items() if memory >= MEMORY_LIMIT]
        for arn in doomed:
            self.world.kill(arn, OOM_REASON)
            self.oom_kills.append((now, arn))
        return len(doomed)

    @staticmethod
    def _leak(active: ActiveFault, snap: EcsSnapshot, now: pd.Timestamp) -> float:
        """Mean leaked memory over tasks; tasks started after the leak began carry none."""
        rate = active.fault.leak_per_minute
        if not rate or not snap.tasks:
            return 0.0
        leaked = [rate * (now - active.start).total_seconds() / 60
                  for t in snap.tasks if t.started_at <= active.start]
        return float(sum(leaked) / len(snap.tasks))

    @staticmethod
    def _errors(active: ActiveFault, snap: EcsSnapshot, share: np.ndarray) -> float:
        fault = active.fault
        errors = fault.extra_errors
        if fault.overload_errors:
            span = max(fault.load_factor - OVERLOAD_SHARE, 1e-9)
            errors += fault.overload_errors * float(np.clip((share[0] - OVERLOAD_SHARE) / span, 0, 1))
        if fault.deploy_errors and snap.tasks:
            bad = sum(t.revision == active.bad_revision for t in snap.tasks)
            errors += fault.deploy_errors * bad / len(snap.tasks)
        return errors
