"""The ``aiops`` command as a user runs it: the demo, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from service.aws import local_aws, reset_local_aws

pytestmark = pytest.mark.e2e
AIOPS = [sys.executable, "-m", "harness.cli"]


def aiops(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*AIOPS, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """An empty local endpoint (moto keeps its state per process, so clear what others left)."""
    with local_aws(env=False) as url:
        reset_local_aws(url)
        yield url


def aws_env(endpoint: str) -> dict:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def test_demo_prints_a_scorecard_and_writes_the_log_and_reports(tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path), "demo", "--faults", "load_surge,bad_deploy", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    rows = {r["fault"]: r for r in out["scorecard"]}
    assert rows["load_surge"]["root_cause"] == "high_cpu"
    assert rows["bad_deploy"]["action"] == "rollback" and rows["bad_deploy"]["correct"]
    assert all(r["delay_min"] is not None and r["delay_min"] <= 5 for r in rows.values())
    with sqlite3.connect(out["incident_log"]) as db:
        assert db.execute("SELECT count(*) FROM incidents WHERE status='resolved'").fetchone()[0] == 2
    for row in rows.values():
        assert "Timeline" in Path(row["report"]).read_text()
        html = Path(row["report"]).with_suffix(".html").read_text()
        assert "data:image/png;base64," in html, "the HTML report embeds a plot of its metrics"


def test_demo_table_names_every_column(tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path), "demo", "--faults", "error_trickle", "--days", "7")
    assert done.returncode == 0, done.stderr
    for column in ("fault", "detected (delay)", "root cause", "ECS change", "verification (+15 min)"):
        assert column in done.stdout
    assert "error_rate_low" in done.stdout and "1/1 faults" in done.stdout


def test_unknown_arguments_are_a_usage_error() -> None:
    done = aiops("demo", "--no-such-flag")
    assert done.returncode == 2 and "No such option" in done.stderr
    assert aiops("frobnicate").returncode == 2


def test_unknown_fault_is_named(tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path), "demo", "--faults", "meteor")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("aiops: error: unknown fault(s) meteor")
    assert not (tmp_path / "demo").exists()


def test_missing_cluster_or_service_is_one_line(endpoint, tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path), "remediate", "scale-up", "--cluster", "nope",
                 "--service", "ghost", "--reason", "test", env=aws_env(endpoint))
    assert done.returncode == 1
    assert done.stderr == "aiops: error: cluster nope not found\n"
    boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_cluster(clusterName="real")
    done = aiops("--data-dir", str(tmp_path), "remediate", "restart", "--cluster", "real",
                 "--service", "ghost", "--reason", "test", env=aws_env(endpoint))
    assert done.returncode == 1
    assert done.stderr == "aiops: error: service ghost not found in cluster real\n"


def test_empty_history_is_refused(endpoint, tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path), "baseline", "--days", "1", env=aws_env(endpoint))
    assert done.returncode == 1 and "no metric history" in done.stderr
    assert not (tmp_path / "models").exists(), "nothing written half-way"


def test_unreachable_endpoint_is_one_line(tmp_path) -> None:
    env = {**aws_env("http://127.0.0.1:9"), "AWS_MAX_ATTEMPTS": "1"}
    done = aiops("--data-dir", str(tmp_path), "baseline", "--days", "1", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "127.0.0.1:9" in done.stderr


def test_incidents_without_a_log_say_where_they_looked(tmp_path) -> None:
    done = aiops("--data-dir", str(tmp_path / "empty"), "incidents", "list")
    assert done.returncode == 1 and "no incident log at" in done.stderr
