"""The signing key from AWS Secrets Manager (on the local endpoint), and the root-cause doors
(`aiops rca`, the RCA Lambda) refusing a retrained classifier bundle that is not what was signed:
the refusal names the door, the pickle in it never runs, and the shipped model answers instead."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from service.aws import ClientFactory, local_aws
from service.settings import Settings
from service.signing import _FROM_SECRETS, SigningKeyError, signing_key

pytestmark = pytest.mark.integration
AIOPS = [sys.executable, "-m", "harness.cli"]
PAYLOAD = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}


class Marker:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_the_key_is_read_from_secrets_manager_once() -> None:
    with local_aws():
        factory = ClientFactory()
        secret = "0123456789abcdef" * 4
        factory.client("secretsmanager").create_secret(Name="aiops/signing", SecretString=secret)
        _FROM_SECRETS.clear()
        key = signing_key(Settings(signing_secret_id="aiops/signing"), factory=factory)
        assert key.secret == secret.encode() and "aiops/signing" in key.source
        with pytest.raises(SigningKeyError, match="Secrets Manager secret 'aiops/missing'"):
            signing_key(Settings(signing_secret_id="aiops/missing"), factory=factory)
        _FROM_SECRETS.clear()


def poisoned_classifier_bundle(data_dir: Path, marker: Path) -> Path:
    """A retrained-classifier bundle whose state is a pickle and whose manifest was regenerated
    by someone without the key (the data dir's key exists: it signed an earlier bundle)."""
    from models.signing import local_key

    local_key(data_dir, create=True, announce=lambda _: None)
    bundle = data_dir / "models" / "rca"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"kind": "rca_classifier"}))
    (bundle / "state.skops").write_bytes(pickle.dumps(Marker(marker)))
    sha = {n: hashlib.sha256((bundle / n).read_bytes()).hexdigest() for n in ("config.json", "state.skops")}
    (bundle / "manifest.json").write_text(json.dumps({"format": 2, "kind": "rca_classifier",
                                                      "packages": {}, "sha256": sha}))
    return bundle


def test_aiops_rca_refuses_a_poisoned_classifier_and_names_itself(tmp_path) -> None:
    marker = tmp_path / "pwned"
    poisoned_classifier_bundle(tmp_path / "data", marker)
    done = subprocess.run([*AIOPS, "--data-dir", str(tmp_path / "data"), "rca", "--payload",
                           json.dumps(PAYLOAD), "--json"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "aiops rca (root-cause classifier): model bundle" in done.stderr
    assert "is not signed" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["root_cause"] == "high_cpu", "the shipped model answered"
    assert not marker.exists(), "the pickle's code ran"


def test_the_rca_lambda_refuses_it_too(tmp_path, monkeypatch, caplog) -> None:
    from service import lambda_handlers

    marker = tmp_path / "pwned"
    poisoned_classifier_bundle(tmp_path / "data", marker)
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path / "data"))
    lambda_handlers._cache.clear()
    with caplog.at_level(logging.WARNING, logger="aiops.rca"):
        answer = lambda_handlers.rca_handler(PAYLOAD, None)
    lambda_handlers._cache.clear()
    assert answer["statusCode"] == 200
    assert any("aiops Lambda (root-cause classifier): model bundle" in r.getMessage()
               and "is not signed" in r.getMessage() for r in caplog.records)
    assert not marker.exists(), "the pickle's code ran"


def test_a_retrained_linear_model_is_used_only_as_it_was_signed(tmp_path) -> None:
    from models.signing import local_key, sign_file
    from rca.linear import SHIPPED

    data = tmp_path / "data"
    model = data / "models" / "rca" / "model-linear.json"
    model.parent.mkdir(parents=True)
    model.write_bytes(SHIPPED.read_bytes())   # what `aiops train-rca` writes and signs
    sign_file(model, local_key(data, create=True, announce=lambda _: None))

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*AIOPS, "--data-dir", str(data), "rca", "--payload", json.dumps(PAYLOAD),
                               "--json", *extra], capture_output=True, text=True, timeout=300, cwd=tmp_path)

    done = run()
    assert done.returncode == 0 and json.loads(done.stdout)["classifier"] == f"trained model from {model}"
    model.write_text(model.read_text().replace('"', '"', 1) + "\n")   # one byte more
    done = run()
    assert json.loads(done.stdout)["classifier"] == "shipped model model-linear-v2.json"
    assert "aiops rca (root-cause classifier): model file" in done.stderr
    assert "does not match its signature" in done.stderr
    done = run("--allow-unsigned")
    assert json.loads(done.stdout)["classifier"] == f"trained model from {model}"
