"""The live simulator and its fault injection, in process and through ``aiops simulate``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from harness.livesim import LiveSimulation, SimulatorNotRunning, control_dir, queue_command
from service.aws import local_aws
from service.settings import Settings
from tests.fakes import Clock

pytestmark = pytest.mark.integration
AIOPS = [sys.executable, "-m", "harness.cli"]


def test_an_injected_fault_is_picked_up_at_the_next_minute(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    with local_aws() as endpoint:
        live = LiveSimulation(settings, endpoint)
        live.start(history_days=1)
        with pytest.raises(SimulatorNotRunning, match="no simulator running"):
            queue_command(control_dir(settings), "inject", "memory_leak")
        minute = live.clock.now
        assert live.due() and live.step() == []
        queue_command(control_dir(settings), "inject", "memory_leak")
        done = live.step()
        assert len(done) == 1 and "injected memory_leak" in done[0]
        assert [f.fault.name for f in live.sim.faults] == ["memory_leak"]
        assert not list((control_dir(settings) / "commands").glob("*.json")), "each command runs once"
        written = live.metrics.read(minute, minute + pd.Timedelta(minutes=2))
        assert len(written.dropna()) == 2, "one point a minute reached CloudWatch"
        queue_command(control_dir(settings), "clear")
        assert "cleared" in live.step()[0] and live.sim.faults == []


def test_a_simulator_started_elsewhere_in_time_runs_at_the_wall_clock_pace(tmp_path) -> None:
    """Started at a Saturday night while the wall clock says Wednesday morning: its minutes come
    as the wall clock's do, and a command with the offset it prints agrees on the time."""
    wall = Clock(pd.Timestamp("2026-12-02T09:30:20Z"))
    start = pd.Timestamp("2026-12-05T23:00:00Z")
    settings = Settings(data_dir=tmp_path)
    with local_aws() as endpoint:
        live = LiveSimulation(settings, endpoint, start=start, wall=wall)
        live.start(history_days=1)
        assert live.clock.now == start and live.due()
        live.step()
        assert live.clock.now == start + pd.Timedelta(minutes=1) and not live.due()
        wall.advance(1)
        assert live.due()
        assert live.offset == start - pd.Timestamp("2026-12-02T09:30:00Z"), "what commands must add"
        history = live.metrics.read(start - pd.Timedelta(days=1), start)
        assert len(history.dropna()) == 1440, "a day of history ends at the simulated start"


def test_inject_without_a_running_simulator_is_one_line(tmp_path) -> None:
    done = subprocess.run([*AIOPS, "--data-dir", str(tmp_path), "simulate", "inject", "memory_leak"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("aiops: error: no simulator running")
    unknown = subprocess.run([*AIOPS, "simulate", "inject", "meteor"], capture_output=True, text=True,
                             timeout=120)
    assert unknown.returncode == 2 and "meteor" in unknown.stderr


def test_run_then_inject_then_sigterm(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([*AIOPS, "--data-dir", str(tmp_path), "simulate", "run", "--port", str(port),
                             "--days", "1", "--start", "2026-12-05T23:00:00Z"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    try:
        lines = []
        while not any("simulate inject" in line for line in lines):  # the end of the "ready" text
            line = proc.stderr.readline()
            assert line, f"simulator exited early: {lines}"
            lines.append(line)
        while not (control_dir(Settings(data_dir=tmp_path)) / "heartbeat.json").exists():
            time.sleep(0.05)  # the first minute is being played
        done = subprocess.run([*AIOPS, "--data-dir", str(tmp_path), "simulate", "inject", "load_surge"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "load_surge queued" in done.stdout
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "simulator stopped" in err
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in "".join(lines)
    assert "AIOPS_CLOCK_OFFSET_SECONDS=" in "".join(lines), "other commands are told the simulator's time"
