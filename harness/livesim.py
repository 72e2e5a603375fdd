"""The simulated service, live: on a local AWS endpoint, in real time, taking fault commands.

``aiops simulate run`` keeps the simulated ECS service running on a moto server at a fixed
port, writing one minute of metrics to CloudWatch every wall-clock minute, so ``aiops watch``,
``aiops status`` and ``aiops remediate`` can be pointed at it (``AWS_ENDPOINT_URL``) exactly as
at AWS. ``aiops simulate inject FAULT`` is the counterpart of ``scripts/generate_anomaly.py``:
instead of sending load to a real ALB, it drops a command file that the running simulator
picks up at its next minute. Commands and a heartbeat live under ``DATA_DIR/simulator/``.

The simulated time runs at the wall clock's pace from ``start`` (now, by default). Started at
another instant, it runs ``offset = start - now`` ahead (or behind) the wall clock; other
commands agree with it when ``AIOPS_CLOCK_OFFSET_SECONDS`` holds that offset, which ``aiops
simulate run`` prints. The heartbeat is kept in wall-clock time, so its staleness does not
depend on the offset.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd

from harness.world import SimulatedPlatform
from service.clock import Clock, SystemClock
from service.settings import Settings
from simulation.faults import get_fault

HEARTBEAT = "heartbeat.json"
STALE_HEARTBEAT = pd.Timedelta(minutes=3)


class SimulatorNotRunning(OSError):
    """No live simulator has written a heartbeat lately; the message says how to start one."""


def control_dir(settings: Settings) -> Path:
    return settings.data_dir / "simulator"


def queue_command(directory: Path, command: str, fault: str | None = None,
                  wall: Clock | None = None) -> Path:
    """Leave a command for the running simulator; refuses when none is running."""
    beat = read_heartbeat(directory)
    wall = wall or SystemClock()
    if beat is None or wall() - pd.Timestamp(beat["at"]) > STALE_HEARTBEAT:
        raise SimulatorNotRunning(f"no simulator running on {directory} (start one with "
                                  "`aiops simulate run`, with the same --data-dir)")
    if fault is not None:
        get_fault(fault)
    commands = directory / "commands"
    commands.mkdir(parents=True, exist_ok=True)
    path = commands / f"{time.time_ns()}-{command}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command, "fault": fault}))
    tmp.rename(path)  # the simulator never reads half a file
    return path


def read_heartbeat(directory: Path) -> dict | None:
    try:
        return json.loads((directory / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None


class LiveSimulation:
    """The simulated service, one step per minute, reading commands before each step."""

    def __init__(self, settings: Settings, endpoint: str, seed: int = 7,
                 start: pd.Timestamp | None = None, wall: Clock | None = None):
        self.settings = settings
        self.wall = wall or SystemClock()
        launched = self.wall().floor("min")
        start = launched if start is None else pd.Timestamp(start).floor("min")
        self.offset = start - launched   # simulated time minus wall-clock time
        self.endpoint = endpoint
        self.directory = control_dir(settings)
        self.directory.mkdir(parents=True, exist_ok=True)
        world = SimulatedPlatform.on(endpoint, settings, start, seed=seed)
        self.clock = world.clock
        simulated = world.make_service()
        self.metrics, self.world, self.sim = simulated.metrics, simulated.world, simulated.sim
        self.log: list[str] = []

    def start(self, history_days: int) -> int:
        """Create the service and write ``history_days`` of history up to now; returns the points."""
        return int(self.sim.bootstrap(history_days).size)

    def due(self) -> bool:
        """Whether the simulated minute has come (in wall-clock time, shifted by the offset)."""
        return self.clock.now <= self.simulated_now().floor("min")

    def simulated_now(self) -> pd.Timestamp:
        """The wall clock's time, shifted to the simulation's."""
        return self.wall() + self.offset

    def step(self) -> list[str]:
        """Apply waiting commands, play the current minute, write the heartbeat; returns what changed."""
        done = self._commands()
        self.sim.tick()
        self._heartbeat()
        return done

    def _commands(self) -> list[str]:
        done = []
        for path in sorted((self.directory / "commands").glob("*.json")):
            try:
                command = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            path.unlink(missing_ok=True)
            if command.get("command") == "inject":
                active = self.sim.inject(command["fault"])
                done.append(f"{self.clock.now:%H:%M} injected {active.fault.name}: "
                            f"{active.fault.description}")
            elif command.get("command") == "clear":
                self.sim.clear()
                done.append(f"{self.clock.now:%H:%M} cleared every fault")
        return done

    def _heartbeat(self) -> None:
        beat = {"at": self.wall().isoformat(), "minute": self.clock.now.isoformat(),
                "endpoint": self.endpoint, "pid": os.getpid(),
                "faults": [f.fault.name for f in self.sim.faults if f.active(self.clock.now)]}
        tmp = self.directory / (HEARTBEAT + ".tmp")
        tmp.write_text(json.dumps(beat))
        tmp.rename(self.directory / HEARTBEAT)
