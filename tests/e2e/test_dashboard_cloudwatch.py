"""``aiops dashboard --cloudwatch`` against the local AWS endpoint: what the AWS console then shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from click.testing import CliRunner

from detection.anomaly import Anomaly
from harness.cli import cli
from service.aws import local_aws, reset_local_aws
from service.store import IncidentStore
from tests.fakes import clock_env

pytestmark = pytest.mark.e2e
C, S = "aiops-platform-cluster", "aiops-platform-service"
NOW = pd.Timestamp("2026-12-02T01:00:00Z")   # the command's clock is pinned here (clock_env)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws(env=False) as url:
        yield url


@pytest.fixture()
def aws(endpoint: str) -> Iterator[dict]:
    reset_local_aws(endpoint)
    yield {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "2", "AWS_PROFILE": None, **clock_env(NOW)}


def cloudwatch(env: dict):
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1").client("cloudwatch",
                                                                 endpoint_url=env["AWS_ENDPOINT_URL"])


def incident(store: IncidentStore, service: str, opened: pd.Timestamp, cause: str, metric: str,
             value: float, expected: float, resolved: bool = True) -> int:
    """An incident as the watcher leaves it: anomalies, a diagnosis, resolved or still escalated."""
    number = store.open_incident(C, service, opened)
    store.add_anomalies(number, [Anomaly.build(metric, opened + pd.Timedelta(minutes=k), value, expected,
                                               expected - 5, expected + 5, 9.0) for k in (-1, 0)])
    store.set_diagnosis(number, opened, {"root_cause": cause, "severity": "MEDIUM", "confidence": 0.9,
                                         "auto_action": "scale_up"})
    if resolved:
        store.set_status(number, opened + pd.Timedelta(minutes=16), "resolved", closed=True)
    else:
        store.set_status(number, opened + pd.Timedelta(minutes=16), "escalated")
    return number


def run(data_dir: Path, env: dict, *args: str):
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "dashboard", *args], env=env)


def test_the_dashboard_has_a_graph_per_metric_and_the_recent_incidents_marked(tmp_path, aws) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    fixed = incident(store, S, NOW - pd.Timedelta(hours=5), "high_cpu", "cpu_utilization", 85, 30)
    failing = incident(store, S, NOW - pd.Timedelta(hours=1), "error_rate_high", "error_count", 40, 0,
                       resolved=False)
    incident(store, S, NOW - pd.Timedelta(days=10), "memory_leak", "memory_utilization", 80, 45)
    incident(store, "another-service", NOW - pd.Timedelta(hours=2), "high_cpu", "cpu_utilization", 85, 30)

    result = run(tmp_path, aws, "--cloudwatch", "--json", "--dashboard-url", "http://127.0.0.1:8080")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["dashboard"] == f"aiops-{S}" and out["incidents_marked"] == [fixed, failing]

    body = json.loads(cloudwatch(aws).get_dashboard(DashboardName=f"aiops-{S}")["DashboardBody"])
    graphs = {w["properties"]["title"]: w["properties"] for w in body["widgets"] if w["type"] == "metric"}
    assert set(graphs) == {"CPU (%)", "Memory (%)", "Errors", "Response time (s)", "Requests"}
    cpu = graphs["CPU (%)"]
    assert cpu["metrics"][0][:6] == ["AWS/ECS", "CPUUtilization", "ClusterName", C, "ServiceName", S]
    assert graphs["Errors"]["metrics"][0][:2] == ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"]
    assert graphs["Errors"]["metrics"][0][-1]["stat"] == "Sum"

    bands = [a for a in cpu["annotations"]["vertical"] if isinstance(a, list)]
    assert [b[0]["label"] for b in bands] == [f"#{fixed} high_cpu (MEDIUM)",
                                              f"#{failing} error_rate_high (MEDIUM)"]
    lines = [a["label"] for a in cpu["annotations"]["vertical"] if isinstance(a, dict)]
    assert lines == [f"#{fixed} CPU: 85% (expected 30%)"], "only this metric's first anomaly"
    assert [a["label"] for a in graphs["Errors"]["annotations"]["vertical"] if isinstance(a, dict)] == [
        f"#{failing} Errors: 40 (expected 0)"]

    table = next(w for w in body["widgets"] if w["type"] == "text")["properties"]["markdown"]
    assert "error_rate_high" in table and "memory_leak" not in table and "another-service" not in table
    assert f"(http://127.0.0.1:8080/incidents/{failing})" in table


def test_without_an_incident_log_the_graphs_come_unmarked_and_it_says_so(tmp_path, aws) -> None:
    result = run(tmp_path, aws, "--cloudwatch", "--service", "checkout", "--name", "checkout-board")
    assert result.exit_code == 0, result.output
    assert "no incident log" in result.output and "0 incident(s)" in result.output
    body = json.loads(cloudwatch(aws).get_dashboard(DashboardName="checkout-board")["DashboardBody"])
    assert all(w["properties"]["annotations"] == {"vertical": []} for w in body["widgets"]
               if w["type"] == "metric")
    assert body["widgets"][1]["properties"]["metrics"][0][5] == "checkout"


def test_dry_run_prints_the_body_and_writes_nothing(tmp_path, aws) -> None:
    result = run(tmp_path, aws, "--cloudwatch", "--dry-run")
    assert result.exit_code == 0 and json.loads(result.output.split("\n", 1)[1])["widgets"]
    assert cloudwatch(aws).list_dashboards()["DashboardEntries"] == []


def test_without_cloudwatch_it_points_at_the_html_dashboard(tmp_path, aws) -> None:
    result = run(tmp_path, aws)
    assert result.exit_code == 2 and "aiops serve" in result.output


def test_an_unreachable_cloudwatch_is_one_line_and_exit_1(tmp_path) -> None:
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}
    result = run(tmp_path, env, "--cloudwatch")
    assert result.exit_code == 1
    assert "aiops: error: cannot write CloudWatch dashboard" in result.output
    assert "Traceback" not in result.output
