"""``aiops serve`` as an operator starts it, and ``aiops benchmark load`` on a tiny load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.loadbench import _free_port, score_payloads, write_bundles

pytestmark = pytest.mark.e2e
TOKEN = "serve-token-0123456789abcdef"


def test_serve_refuses_to_start_without_a_token(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AIOPS_API_TOKENS", raising=False)
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve"])
    assert result.exit_code == 1
    assert "refusing to start" in result.stderr and "--insecure-no-auth" in result.stderr


def test_short_tokens_are_refused_at_start_up(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve"],
                                env={"AIOPS_API_TOKENS": "secret"})
    assert result.exit_code == 1 and "api_tokens" in result.stderr and "16 characters" in result.stderr


def test_serve_answers_on_loopback_and_stops_on_sigterm(tmp_path) -> None:
    write_bundles(tmp_path / "models", ["web"], cluster="prod")
    port = _free_port()
    env = {**os.environ, "AIOPS_API_TOKENS": TOKEN, "AIOPS_TARGET__CLUSTER": "prod"}
    server = subprocess.Popen([sys.executable, "-m", "harness.cli", "--data-dir", str(tmp_path), "serve",
                               "--port", str(port), "--no-access-log"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):   # until it answers (or it died)
            if server.poll() is not None:
                break
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert server.poll() is None, server.communicate()[1]
        assert ready.status_code == 200 and "prod--web" in ready.json()["checks"]["models"]["loaded"]
        body = score_payloads(["web"], points=3, n=1, cluster="prod")[0]
        scored = httpx.post(f"{base}/v1/score", content=body, headers={"content-type": "application/json"})
        assert scored.status_code == 200 and scored.json()["points"] == 15
        refused = httpx.post(f"{base}/v1/remediate", json={"action": "scale_up", "reason": "x"})
        assert refused.status_code == 401
        assert "aiops_points_scored_total 15.0" in httpx.get(f"{base}/metrics").text
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why it ended
    assert server.returncode in (0, -15) and "Finished server process" in stderr
    assert "1 model(s) loaded" in stderr and "need a bearer token" in stderr


def test_the_load_benchmark_reports_both_servers(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["benchmark", "load", "--seconds", "1", "--rate", "20", "--series", "10",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["server"] for r in report["results"]] == ["bare FastAPI", "aiops serve"]
    for server in report["results"]:
        assert server["requests"] == 20 and server["errors"] == 0 and server["statuses"] == {"200": 20}
        assert 0 < server["p50_ms"] <= server["p99_ms"] <= server["max_ms"]
        assert server["rss_start_mb"] > 0 and server["rss_end_mb"] > 0 and server["cpu_ms_per_request"] > 0
    assert report["p99_ratio"] > 0 and report["p99_target_ratio"] == 3.0
