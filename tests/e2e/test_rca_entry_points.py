"""The root-cause entry points as users call them: the CLI, POST /v1/rca, the Lambda handler, SES."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from harness.cli import cli
from rca.playbook import load_playbook
from service.api import create_app
from service.aws import local_aws
from service.diagnose import train_rca
from service.settings import Settings
from service.store import IncidentStore
from simulation.physics import ServiceShape, history

pytestmark = pytest.mark.e2e
SEED = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}
END = pd.Timestamp("2026-11-19 12:00", tz="UTC")  # a Thursday: three weekdays of history


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data dir with a small trained classifier (tens of services: behaviour, not accuracy)."""
    directory = tmp_path_factory.mktemp("aiops")
    settings = Settings(data_dir=directory)
    train_rca(settings, load_playbook(), n_services=30)
    return directory


def aiops(*args: str, data_dir: Path, env: dict | None = None):
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], env=env, catch_exceptions=False)


# --- the CLI ------------------------------------------------------------------------------------

def test_the_seed_payload_on_the_command_line(data_dir) -> None:
    done = aiops("rca", "--payload", json.dumps(SEED), "--json", data_dir=data_dir)
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("root_cause", "severity", "auto_action", "manual_action")} == {
        "root_cause": "high_cpu", "severity": "MEDIUM", "auto_action": "scale_up",
        "manual_action": "Monitor for 15 min"}
    assert 0 <= out["confidence"] <= 1 and out["explanation"] and out["evidence"]
    assert out["classifier"].startswith("trained model")


def test_a_payload_file_and_a_table(data_dir, tmp_path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"anomalies": ["Errors: 40 (expected 0)"],
                                   "context": {"minutes_since_deployment": 5}}))
    done = aiops("rca", "--payload", f"@{payload}", data_dir=data_dir)
    assert done.exit_code == 0, done.stderr
    assert "error_rate_high" in done.stdout and "rollback" in done.stdout


@pytest.mark.parametrize("payload, named", [
    ("{not json", "--payload: not valid JSON"),
    ("{}", "payload: empty"),
    ('{"anomalies": ["CPU is very high"]}', "anomalies[0]: cannot parse"),
    ('{"anomalies": ["Errors: -2 (expected 0)"]}', "anomalies[0]: error_count is a count"),
    ('{"metrics": {"cpu_utilization": NaN}}', "metrics.cpu_utilization: must be a finite number"),
    ('{"metrics": {"gpu": 3}}', "metrics.gpu: unknown metric"),
    ('{"anomalies": ["Latency: 2s (expected 40%)"]}', "anomalies[0]: mismatched units"),
])
def test_bad_input_is_a_usage_error_naming_the_field(data_dir, payload, named) -> None:
    done = aiops("rca", "--payload", payload, data_dir=data_dir)
    assert done.exit_code == 2
    assert done.stderr.startswith(f"aiops: error: {named}") and "Traceback" not in done.stderr


def test_without_a_retrained_model_the_shipped_one_answers_at_once(tmp_path) -> None:
    done = aiops("rca", "--payload", json.dumps(SEED), "--json", data_dir=tmp_path)
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["classifier"] == "shipped model model-linear-v2.json"
    assert out["root_cause"] == "high_cpu" and out["confidence"] >= 0.9
    assert "training" not in done.stderr and not (tmp_path / "models").exists()


def test_a_broken_retrained_model_is_refused_for_the_shipped_one(tmp_path) -> None:
    (tmp_path / "models" / "rca").mkdir(parents=True)
    (tmp_path / "models" / "rca" / "model-linear.json").write_text('{"format": "aiops-rca-linear/1"}')
    done = aiops("rca", "--payload", json.dumps(SEED), "--json", data_dir=tmp_path)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["classifier"] == "shipped model model-linear-v2.json"


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.rename_axis("timestamp").reset_index().to_csv(path, index=False)
    return path


def test_a_window_against_a_history_with_a_report_and_plots(data_dir, tmp_path) -> None:
    shape = ServiceShape()
    past = history(END - pd.Timedelta(minutes=20), 3, shape, np.random.default_rng(3))
    window = history(END, 1, shape, np.random.default_rng(4)).iloc[-20:].copy()
    window.loc[window.index[-10:], "memory_utilization"] += np.arange(1, 11) * 2.5
    report = tmp_path / "report"
    done = aiops("rca", "--history", str(_csv(past, tmp_path / "h.csv")),
                 "--window", str(_csv(window, tmp_path / "w.csv")), "--report-dir", str(report), "--json",
                 data_dir=data_dir)
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["root_cause"] in ("memory_leak", "unknown")
    assert "Memory" in (report / "rca.md").read_text()
    html = (report / "rca.html").read_text()
    assert "data:image/png;base64," in html and out["root_cause"] in html
    assert (report / "rca-memory_utilization.png").read_bytes().startswith(b"\x89PNG")


def test_a_window_shorter_than_the_grouping_window_is_refused(data_dir, tmp_path) -> None:
    past = history(END, 2, ServiceShape(), np.random.default_rng(3))
    done = aiops("rca", "--history", str(_csv(past, tmp_path / "h.csv")),
                 "--window", str(_csv(past.iloc[-2:], tmp_path / "w.csv")), data_dir=data_dir)
    assert done.exit_code == 2 and "window: 2 row(s), shorter than the grouping window" in done.stderr
    bad = past.iloc[-10:].rename(columns={"cpu_utilization": "cpu_pct"})
    done = aiops("rca", "--history", str(_csv(past, tmp_path / "h.csv")),
                 "--window", str(_csv(bad, tmp_path / "w.csv")), data_dir=data_dir)
    assert done.exit_code == 2 and "window.cpu_pct: unknown metric column" in done.stderr


def test_an_operator_label_is_logged_and_used_by_the_next_training(tmp_path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite")
    incident = store.open_incident("c", "s", END)
    store.record(incident, END, "features", {"memory_utilization_anomalous": 1.0})
    done = aiops("incidents", "label", str(incident), "slow_response", "--by", "ana", data_dir=tmp_path)
    assert done.exit_code == 0, done.stderr
    labels = [e["data"] for e in store.events(incident) if e["kind"] == "label"]
    assert labels == [{"cause": "slow_response", "by": "ana", "note": None, "previous": None}]
    assert aiops("incidents", "label", str(incident), "gremlins", data_dir=tmp_path).exit_code == 2
    done = aiops("train-rca", "--services", "10", "--json", data_dir=tmp_path)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["operator_labels"] == 1


# --- HTTP and Lambda ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(data_dir) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data_dir)))


def test_http_rca_answers_the_seed_payload(client) -> None:
    reply = client.post("/v1/rca", json=SEED)
    assert reply.status_code == 200
    assert reply.json()["root_cause"] == "high_cpu" and reply.json()["auto_action"] == "scale_up"
    assert client.get("/healthz").json()["rca_classifier"].startswith("trained model")


@pytest.mark.parametrize("body, loc", [
    ({"anomalies": ["CPU 60"]}, ["body", "anomalies", 0]),
    ({"metrics": {"error_count": -4}}, ["body", "metrics", "error_count"]),
    ({}, ["body", "payload"]),
    ({"\u00b2": None}, ["body", "\u00b2"]),   # named by a digit that is not 0-9 (the fuzz test found it)
])
def test_http_bad_input_is_422_with_the_field(client, body, loc) -> None:
    reply = client.post("/v1/rca", json=body)
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == loc


def test_the_lambda_handler_takes_the_event_or_an_http_body(data_dir, monkeypatch) -> None:
    from service import lambda_handlers

    monkeypatch.setenv("AIOPS_DATA_DIR", str(data_dir))
    monkeypatch.setattr(lambda_handlers, "_cache", {})
    direct = lambda_handlers.rca_handler(SEED, None)
    assert direct["statusCode"] == 200 and json.loads(direct["body"])["root_cause"] == "high_cpu"
    http = {"requestContext": {}, "isBase64Encoded": True,
            "body": base64.b64encode(json.dumps(SEED).encode()).decode()}
    assert json.loads(lambda_handlers.rca_handler(http, None)["body"])["root_cause"] == "high_cpu"
    bad = lambda_handlers.rca_handler({"requestContext": {}, "body": "{oops"}, None)
    assert bad["statusCode"] == 422 and json.loads(bad["body"])["error"]["field"] == "body"
    empty = lambda_handlers.rca_handler({}, None)
    assert empty["statusCode"] == 422 and json.loads(empty["body"])["error"]["field"] == "payload"


# --- the report by e-mail, on the local SES endpoint ---------------------------------------------

@pytest.fixture(scope="module")
def ses_env() -> Iterator[dict]:
    with local_aws(env=False) as endpoint:
        yield {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1"}


def test_the_report_is_sent_by_ses_from_a_verified_sender(data_dir, ses_env) -> None:
    ses = boto3.client("ses", endpoint_url=ses_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ses.verify_email_identity(EmailAddress="aiops@example.com")
    done = aiops("rca", "--payload", json.dumps(SEED), "--email-to", "oncall@example.com",
                 "--email-from", "aiops@example.com", "--json", data_dir=data_dir, env=ses_env)
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["report"]["email_message_id"]
    assert ses.get_send_quota()["SentLast24Hours"] == 1
    refused = aiops("rca", "--payload", json.dumps(SEED), "--email-to", "oncall@example.com",
                    "--email-from", "nobody@example.com", data_dir=data_dir, env=ses_env)
    assert refused.exit_code == 1 and "nobody@example.com" in refused.stderr


# --- the benchmark ------------------------------------------------------------------------------

def test_the_benchmark_prints_both_sides_and_logs_to_mlflow(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = aiops("benchmark", "rca", "--train-services", "12", "--test-services", "10", "--jobs", "1",
                 "--mlflow-uri", uri, "--json", data_dir=tmp_path)
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["test_seeds"][0] >= 9_000_000 and out["training"]["seeds"][1] < 9_000_000
    for side in ("model", "rules"):
        assert {"accuracy", "macro_f1", "harmful_actions", "recall", "confusion"} <= set(out[side])
    assert set(out["sets"]) == {"simulator hold-out", "simulator hold-out, faults only",
                                "simulator CV by world", "seed payloads"}
    cv = out["sets"]["simulator CV by world"]["model"]
    assert cv["n"] == out["training"]["n_simulated"], "every training incident, answered out of fold"
    for side in ("model", "rules"):
        seeds = out["sets"]["seed payloads"][side]
        assert {"exact", "macro_f1", "abstained", "harmful_actions"} <= set(seeds)
    assert [row["floor"] for row in out["coverage"]["seed payloads"]][:2] == [0.0, 0.5]
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=uri).get_run(out["mlflow_run_id"])
    assert run.data.metrics["model.accuracy"] == pytest.approx(out["model"]["accuracy"], abs=1e-4)
    assert "rules.harmful_actions" in run.data.metrics
    table = aiops("benchmark", "rca", "--train-services", "12", "--test-services", "10", "--jobs", "1",
                  data_dir=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert "harmful actions" in table.stdout and "MLflow tracking skipped" in table.stdout
    assert "simulator CV by world" in table.stdout and "Coverage vs accuracy" in table.stdout
    assert "seed payloads: answered / right / harmful" in table.stdout


def test_a_dev_set_that_is_not_one_is_refused_before_any_training(tmp_path) -> None:
    empty = tmp_path / "cases"
    empty.mkdir()
    done = aiops("benchmark", "rca", "--dev-set", str(empty), data_dir=tmp_path)
    assert done.exit_code == 1 and "--dev-set:" in done.stderr and "no case folders" in done.stderr
    assert "simulating" not in done.stderr and "Traceback" not in done.stderr
    case = empty / "one"
    case.mkdir()
    (case / "truth.json").write_text("{not json")
    done = aiops("benchmark", "rca", "--dev-set", str(empty), data_dir=tmp_path)
    assert done.exit_code == 1 and "truth.json" in done.stderr and "Traceback" not in done.stderr
