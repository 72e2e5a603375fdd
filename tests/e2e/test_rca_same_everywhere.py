"""One classifier everywhere: the CLI, POST /v1/rca and the Lambda handler give the same answer.

With no model retrained under the data dir, all three load the model shipped with the package,
never train, and name the same cause with the same confidence for the same payload.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from harness.cli import cli
from service.api import create_app
from service.settings import Settings
from training.rca_seed_cases import SEED_CASES

pytestmark = pytest.mark.e2e
PAYLOADS = [c.payload for c in SEED_CASES if c.name in (
    "seed example", "cpu 85 with 3 errors", "memory 99 with cpu", "errors 10", "errors 11",
    "errors 40 slow", "slow 0.92")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fresh")


@pytest.fixture(scope="module")
def client(data_dir) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data_dir)))


def _answer(out: dict) -> tuple:
    return out["root_cause"], out["auto_action"], out["confidence"], out["classifier"]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: "; ".join(str(a) for a in p["anomalies"]))
def test_cli_http_and_lambda_agree(payload, data_dir, client, monkeypatch) -> None:
    from service import lambda_handlers

    done = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "rca", "--payload", json.dumps(payload),
                                    "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.stderr
    by_cli = _answer(json.loads(done.stdout))
    reply = client.post("/v1/rca", json=payload)
    assert reply.status_code == 200
    monkeypatch.setenv("AIOPS_DATA_DIR", str(data_dir))
    monkeypatch.setattr(lambda_handlers, "_cache", {})
    event = lambda_handlers.rca_handler(payload, None)
    assert event["statusCode"] == 200
    assert by_cli == _answer(reply.json()) == _answer(json.loads(event["body"]))
    assert by_cli[3] == "shipped model model-linear-v2.json"
