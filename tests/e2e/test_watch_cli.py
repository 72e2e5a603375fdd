"""``aiops watch`` over two services from a config file, on the local AWS endpoint; SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.signing import local_key
from service.aws import ClientFactory, local_aws
from service.cloudwatch import CloudWatchMetrics
from service.settings import ServiceTarget, Settings
from simulation.ecs_world import EcsWorld
from simulation.physics import ServiceShape, history
from tests.fakes import clock_env
from training.baselines import train_detector

pytestmark = pytest.mark.e2e
AIOPS = [sys.executable, "-m", "harness.cli"]
SERVICES = ("web", "api")
NOW = pd.Timestamp("2026-12-02T01:00:00Z")   # the watcher's clock is pinned just after (clock_env)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[dict, Path, Path]]:
    """Two services with a day of quiet history up to now, their baselines, and a config file."""
    data = tmp_path_factory.mktemp("aiops")
    with local_aws() as endpoint:
        env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_REGION", "AWS_SESSION_TOKEN")}
        factory, settings = ClientFactory(), Settings(data_dir=data)
        now = NOW
        lines = ['mode = "dry-run"', "[guardrails]", "max_desired_count = 4"]
        for i, name in enumerate(SERVICES):
            target = ServiceTarget(cluster="prod", service=name, target_group=f"targetgroup/{name}/{i}")
            EcsWorld(factory.client("ecs"), "prod", name, name, endpoint_url=endpoint,
                     ec2_client=factory.client("ec2")).setup(now)
            source = CloudWatchMetrics(factory.client("cloudwatch"), settings.metrics, target)
            source.write(history(now + pd.Timedelta(minutes=1), 1, ServiceShape(), np.random.default_rng(i)))
            train_detector(source, now, 1, settings.model_dir / f"prod--{name}",
                           key=local_key(data, create=True))
            lines += ["[[services]]", 'cluster = "prod"', f'service = "{name}"',
                      f'target_group = "{target.target_group}"']
        config = data / "aiops.toml"
        config.write_text("\n".join(lines) + "\n")
        yield env, data, config


def watch_env(env: dict) -> dict:
    """The test's AWS environment, with the command's clock a minute after the history's end."""
    return {**os.environ, **env, **clock_env(NOW + pd.Timedelta(minutes=1))}


def test_once_scores_every_configured_service(world) -> None:
    env, data, config = world
    done = subprocess.run([*AIOPS, "--data-dir", str(data), "watch", "--config", str(config), "--once",
                           "--json"], capture_output=True, text=True, timeout=300, env=watch_env(env))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["service"] for r in rows] == ["prod/web", "prod/api"]
    assert all(r["error"] is None and r["read_error"] is None for r in rows)
    assert "in dry-run mode" in done.stderr and "stopped after 1 tick(s)" in done.stderr


def test_sigterm_stops_the_loop_cleanly(world) -> None:
    env, data, config = world
    proc = subprocess.Popen([*AIOPS, "--data-dir", str(data), "watch", "--config", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=watch_env(env))
    try:
        first = [json.loads(proc.stdout.readline()) for _ in SERVICES]  # the first tick is done
        second = subprocess.run([*AIOPS, "--data-dir", str(data), "watch", "--config", str(config), "--once"],
                                capture_output=True, text=True, timeout=300, env=watch_env(env))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert [r["service"] for r in first] == ["prod/web", "prod/api"]
    assert proc.returncode == 0, err
    assert "SIGTERM received: stopping after the current tick" in err
    assert "stopped after 1 tick(s)" in err and "Traceback" not in err
    assert second.returncode == 1, "one watcher per incident log"
    assert second.stderr.startswith(f"aiops: error: another watcher (pid {proc.pid}) is running on")


def test_an_unreadable_config_is_one_line(tmp_path) -> None:
    bad = tmp_path / "aiops.toml"
    bad.write_text("[[services]]\ncluster = 'prod'\n")
    done = subprocess.run([*AIOPS, "--data-dir", str(tmp_path), "watch", "--config", str(bad), "--once"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"aiops: error: config {bad} is invalid: services.0.service: Field required\n"
