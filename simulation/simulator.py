"""The simulated service: ECS state read back each minute, metrics written to CloudWatch.

Each ``step`` plays one simulated minute: the ECS side plays the scheduler (so actions taken
through the ECS API show up as tasks), the physics turns load, tasks and faults into metrics,
and the metrics go to CloudWatch through the writer handed in.
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
