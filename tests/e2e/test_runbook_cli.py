"""The runbook commands as an on-call engineer types them:
status, remediate, incidents ack/approve/resolve.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from service.aws import local_aws, reset_local_aws
from service.store import IncidentStore
from simulation.ecs_world import EcsWorld

pytestmark = pytest.mark.e2e
AIOPS = [sys.executable, "-m", "harness.cli"]
C, S = "aiops-platform-cluster", "aiops-platform-service"
T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")


def aws_env(endpoint: str) -> dict:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2"}


def client(endpoint: str, name: str):
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1").client(name, endpoint_url=endpoint)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(env=False) as url:
        yield url


@pytest.fixture()
def service(endpoint: str) -> str:
    """A fresh service with three task-definition revisions, running the third."""
    reset_local_aws(endpoint)
    EcsWorld(client(endpoint, "ecs"), C, S, "aiops-platform", endpoint_url=endpoint,
             ec2_client=client(endpoint, "ec2")).setup(T0, revisions=3)
    return endpoint


def aiops(data_dir: Path, *args: str, endpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(aws_env(endpoint) if endpoint else {})}
    env.pop("AIOPS_CONFIG", None)
    return subprocess.run([*AIOPS, "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def desired(endpoint: str) -> tuple[int, str]:
    svc = client(endpoint, "ecs").describe_services(cluster=C, services=[S])["services"][0]
    return svc["desiredCount"], svc["taskDefinition"].rsplit("/", 1)[-1]


def test_status_shows_the_service_its_deployments_and_its_scaler(service, tmp_path) -> None:
    client(service, "application-autoscaling").register_scalable_target(
        ServiceNamespace="ecs", ResourceId=f"service/{C}/{S}", ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=1, MaxCapacity=3)
    done = aiops(tmp_path, "status", endpoint=service)
    assert done.returncode == 0, done.stderr
    assert f"{S} in {C}: ACTIVE, desired 2" in done.stdout and "aiops-platform:3" in done.stdout
    assert "Application Auto Scaling: min 1, max 3" in done.stdout
    assert "PRIMARY" in done.stdout and "Open incident: none" in done.stdout
    data = json.loads(aiops(tmp_path, "status", "--json", endpoint=service).stdout)
    assert data["scaling"] == {"min_capacity": 1, "max_capacity": 3, "suspended": False}
    assert data["deployments"][0]["status"] == "PRIMARY"


def test_manual_scaling_is_logged_and_kept_inside_the_scaler(service, tmp_path) -> None:
    client(service, "application-autoscaling").register_scalable_target(
        ServiceNamespace="ecs", ResourceId=f"service/{C}/{S}", ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=1, MaxCapacity=3)
    done = aiops(tmp_path, "remediate", "scale", "--count", "3", "--reason", "game day", endpoint=service)
    assert done.returncode == 0, done.stderr
    assert "desired count 2 -> 3" in done.stdout and desired(service)[0] == 3
    refused = aiops(tmp_path, "remediate", "scale-up", "--reason", "more", endpoint=service)
    assert refused.returncode == 1
    assert refused.stderr.startswith("aiops: error: refused (autoscaling_max): desired count 4 would "
                                     "exceed the Application Auto Scaling max capacity 3")
    assert desired(service)[0] == 3
    with sqlite3.connect(tmp_path / "incidents.sqlite") as db:
        rows = db.execute("SELECT action, origin, status, reason FROM actions").fetchall()
        kinds = [r[0] for r in db.execute("SELECT kind FROM events ORDER BY id")]
    assert rows == [("scale_to", "manual", "done", "game day")]
    assert kinds == ["manual_action_started", "manual_action_done", "guardrail_refused"]


def test_rollback_to_a_named_revision_and_a_dry_run(service, tmp_path) -> None:
    dry = aiops(tmp_path, "remediate", "rollback", "--reason", "check", "--dry-run", "--json",
                endpoint=service)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["status"] == "dry_run" and desired(service)[1] == "aiops-platform:3"
    done = aiops(tmp_path, "remediate", "rollback", "--to", "1", "--reason", "bad release",
                 endpoint=service)
    assert done.returncode == 0, done.stderr
    assert "aiops-platform:3 -> aiops-platform:1" in done.stdout and desired(service)[1] == "aiops-platform:1"


def test_a_service_outside_the_config_allow_list_is_refused(service, tmp_path) -> None:
    config = tmp_path / "aiops.toml"
    config.write_text(f'[[services]]\ncluster = "{C}"\nservice = "web"\n')
    done = aiops(tmp_path, "remediate", "restart", "--reason", "r", "--config", str(config),
                 endpoint=service)
    assert done.returncode == 1 and "refused (not_allowed)" in done.stderr


def test_a_reason_is_required() -> None:
    assert subprocess.run([*AIOPS, "remediate", "restart"], capture_output=True).returncode == 2
    blank = subprocess.run([*AIOPS, "remediate", "restart", "--reason", " "], capture_output=True, text=True)
    assert blank.returncode == 2 and "--reason" in blank.stderr


def waiting_incident(data_dir: Path) -> int:
    store = IncidentStore(data_dir / "incidents.sqlite")
    incident = store.open_incident(C, S, T0)
    store.set_diagnosis(incident, T0, {"root_cause": "error_rate_high", "severity": "CRITICAL",
                                       "confidence": 0.9, "auto_action": "rollback",
                                       "manual_action": "Investigate", "explanation": "39 errors",
                                       "evidence": []})
    store.set_status(incident, T0, "awaiting_approval")
    return incident


def test_approve_ack_and_resolve_an_incident(tmp_path) -> None:
    incident = waiting_incident(tmp_path)
    done = aiops(tmp_path, "incidents", "approve", str(incident), "--by", "bob")
    assert done.returncode == 0, done.stderr
    assert "rollback" in done.stdout and "next tick" in done.stdout
    again = aiops(tmp_path, "incidents", "approve", str(incident))
    assert again.returncode == 1
    assert again.stderr == f"aiops: error: incident {incident} was already approved by bob\n"
    assert aiops(tmp_path, "incidents", "ack", str(incident), "--by", "alice").returncode == 0
    resolved = aiops(tmp_path, "incidents", "resolve", str(incident), "--by", "alice", "--note",
                     "rolled back and fixed the config", "--json")
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["status"] == "resolved"
    page = json.loads(resolved.stderr.strip().splitlines()[-1])
    assert page["role"] == "on-call engineer" and page["subject"].startswith(f"Resolved: incident {incident}")
    assert "rolled back and fixed the config" in page["body"]
    assert aiops(tmp_path, "incidents", "resolve", str(incident)).returncode == 1
    shown = aiops(tmp_path, "incidents", "show", str(incident), "--json")
    kinds = [e["kind"] for e in json.loads(shown.stdout)["events"]]
    assert {"approved", "acknowledged", "status:resolved", "report_sent"} <= set(kinds)


def test_unknown_incident_is_one_line(tmp_path) -> None:
    IncidentStore(tmp_path / "incidents.sqlite")
    done = aiops(tmp_path, "incidents", "ack", "99")
    assert done.returncode == 1 and done.stderr.startswith("aiops: error: no incident 99")
