"""``aiops train`` as the nightly job runs it: simulated history in CloudWatch on the local AWS
endpoint, a SQLite MLflow store in a temporary directory, the registry's aliases, bundle
verification (tampered files refused), an unreachable tracking store, and the Dask backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.bundle import BundleError, bundle_digest, load_bundle
from models.mlflow_store import MlflowModelStore
from models.signing import Trust, local_key
from models.store import CHALLENGER, CHAMPION, LocalModelStore
from service.aws import ClientFactory, local_aws
from service.cloudwatch import CloudWatchMetrics
from service.settings import Settings
from simulation.physics import ServiceShape, history

pytestmark = pytest.mark.integration
AIOPS = [sys.executable, "-m", "harness.cli"]
END = pd.Timestamp("2026-12-02T01:00:00Z")   # every `aiops train` here passes --end
NAME = "aiops-platform-cluster--aiops-platform-service"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """The local AWS endpoint with five days of the simulated service's one-minute metrics."""
    with local_aws() as url:  # fake credentials and the endpoint, restored afterwards
        settings = Settings()
        CloudWatchMetrics(ClientFactory().client("cloudwatch"), settings.metrics, settings.target).write(
            history(END, 5, ServiceShape(), np.random.default_rng(5)))
        yield url


def trust(cwd: Path, loader: str = "tests") -> Trust:
    """What a loader on this machine trusts: the key `aiops train` generated in the data dir."""
    return Trust(local_key(cwd / "data", create=False), loader)


def registry(cwd: Path) -> MlflowModelStore:
    return MlflowModelStore(f"sqlite:///{cwd / 'mlflow.db'}", trust(cwd))


def aiops(endpoint: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([*AIOPS, "--data-dir", str(cwd / "data"), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)


def train(endpoint: str, cwd: Path, *args: str) -> dict:
    done = aiops(endpoint, cwd, "train", "--days", "4", "--end", END.isoformat(),
                 "--mlflow-uri", f"sqlite:///{cwd / 'mlflow.db'}", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]


@pytest.fixture(scope="module")
def trained(endpoint, tmp_path_factory) -> tuple[Path, dict]:
    """One nightly run of the default (ensemble) model: the first champion."""
    cwd = tmp_path_factory.mktemp("train")
    return cwd, train(endpoint, cwd)


def test_the_first_run_is_the_champion_in_both_stores(trained) -> None:
    cwd, result = trained
    assert result["status"] == CHAMPION and result["reason"] == "first model for this service"
    assert result["evaluation"]["events"] == 8 and result["evaluation"]["f1"] > 0.5
    assert result["run_id"] and result["mlflow_version"] == 1
    registry = MlflowModelStore(f"sqlite:///{cwd / 'mlflow.db'}", trust(cwd))
    champion = registry.get(NAME, alias=CHAMPION)
    assert (champion.version, champion.digest, champion.run_id) == (1, result["digest"], result["run_id"])
    run = registry.client.get_run(result["run_id"])
    assert run.data.params["detector"] == "ensemble" and run.data.metrics["f1"] == result["evaluation"]["f1"]
    assert run.data.tags["isolation_forest"] == "logged (node arrays, isolation_forest.npz)"
    from_registry = registry.load(NAME, alias=CHAMPION)
    assert type(from_registry.model).__name__ == "ServiceDetector"
    assert from_registry.manifest["evaluation"] == result["evaluation"]
    local = LocalModelStore(cwd / "data" / "models" / "registry", trust(cwd))
    assert local.get(NAME, alias=CHAMPION).digest == result["digest"]
    deployed = load_bundle(result["deployed"], trust=trust(cwd))
    assert deployed.digest == result["digest"] and deployed.manifest["packages"]["scikit-learn"]
    assert (cwd / "mlruns").is_dir(), "artifacts live beside the SQLite store"
    assert (cwd / "data" / "signing.key").stat().st_mode & 0o777 == 0o600


def test_a_second_run_in_the_same_hour_changes_nothing(endpoint, trained) -> None:
    cwd, first = trained
    again = train(endpoint, cwd)
    assert again["status"] == "unchanged" and again["digest"] == first["digest"]
    assert [v.version for v in registry(cwd).versions(NAME)] == [1]


def test_a_worse_model_stays_challenger_and_models_compare_shows_why(endpoint, trained) -> None:
    cwd, first = trained
    worse = train(endpoint, cwd, "--detector", "robust_z", "--threshold", "40")
    assert worse["status"] == CHALLENGER and "below the champion's" in worse["reason"]
    store = registry(cwd)
    assert store.get(NAME, alias=CHAMPION).version == 1
    assert store.get(NAME, alias=CHALLENGER).version == 2
    assert load_bundle(first["deployed"], trust=trust(cwd)).digest == first["digest"], \
        "the deployed champion stays"
    shown = aiops(endpoint, cwd, "models", "compare", "--store", "mlflow", "--mlflow-uri",
                  f"sqlite:///{cwd / 'mlflow.db'}")
    assert shown.returncode == 0, shown.stderr
    assert "champion v1" in shown.stdout and "challenger v2" in shown.stdout
    assert "same evaluation" in shown.stdout and "stayed challenger: F1" in shown.stdout
    listed = aiops(endpoint, cwd, "models", "list")
    assert listed.returncode == 0 and "challenger" in listed.stdout and NAME in listed.stdout


def test_a_missing_or_rewritten_digest_tag_is_refused(trained) -> None:
    cwd, first = trained
    store = registry(cwd)
    client = store.client
    try:
        client.delete_model_version_tag(NAME, "1", "bundle_digest")
        with pytest.raises(BundleError, match=r"tests \(MLflow registry models:/.*@champion\): version 1 "
                                              "has no bundle_digest tag"):
            store.load(NAME, alias=CHAMPION)
        client.set_model_version_tag(NAME, "1", "bundle_digest", "0" * 64)
        with pytest.raises(BundleError, match="does not match the digest its model store recorded"):
            store.load(NAME, alias=CHAMPION)
    finally:
        client.set_model_version_tag(NAME, "1", "bundle_digest", first["digest"])
    assert store.load(NAME, alias=CHAMPION).digest == first["digest"]


def test_the_mlflow_pyfunc_checks_the_signature(trained, monkeypatch, tmp_path) -> None:
    import mlflow

    cwd, _ = trained
    store = f"sqlite:///{cwd / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)   # "models:/" resolves there, whatever an earlier test set
    monkeypatch.delenv("AIOPS_SIGNING_KEY", raising=False)
    monkeypatch.setenv("AIOPS_DATA_DIR", str(cwd / "data"))  # where `aiops train` left its key
    frame = history(END, 1, ServiceShape(), np.random.default_rng(9)).iloc[-30:]
    scores = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict(frame)
    assert list(scores.columns) == list(frame.columns) and scores.notna().any().any()
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path))  # a process without that key
    with pytest.raises(BundleError, match="MLflow pyfunc: model bundle .* no signing key is configured"):
        mlflow.pyfunc.load_model(f"models:/{NAME}/1")


def test_tampered_bundles_are_refused_everywhere(endpoint, trained) -> None:
    cwd, first = trained
    store = registry(cwd)
    artifacts = [p for p in (cwd / "mlruns").rglob("bundle/state.npz")]
    stored = next(p for p in artifacts if bundle_digest(p.parent) == first["digest"])
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="state.npz does not match its sha256"):
        store.load(NAME, alias=CHAMPION)
    deployed = Path(first["deployed"])
    config = json.loads((deployed / "config.json").read_text())
    config["params"]["threshold"] = 0.5
    (deployed / "config.json").write_text(json.dumps(config))
    done = aiops(endpoint, cwd, "watch", "--bundle", str(deployed), "--once")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "aiops watch: model bundle" in done.stderr
    assert "config.json does not match its sha256" in done.stderr


def test_an_unreachable_tracking_store_still_writes_the_bundle(endpoint, tmp_path) -> None:
    done = aiops(endpoint, tmp_path, "train", "--days", "4", "--end", END.isoformat(), "--detector",
                 "robust_z", "--mlflow-uri", "http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "MLflow tracking skipped: MLflow server http://127.0.0.1:9 unreachable" in done.stderr
    assert "champion" in done.stdout and "skipped:" in done.stdout
    assert load_bundle(tmp_path / "data" / "models" / NAME, trust=trust(tmp_path)).config["detector"] \
        == "robust_z"


def test_the_dask_backend_gives_the_same_bundle(endpoint, tmp_path) -> None:
    runs = {}
    for backend in ("loky", "dask"):
        cwd = tmp_path / backend
        cwd.mkdir()
        done = aiops(endpoint, cwd, "train", "--days", "4", "--end", END.isoformat(), "--no-tracking",
                     "--backend", backend, "--n-jobs", "2", "--json")
        assert done.returncode == 0, done.stderr
        runs[backend] = json.loads(done.stdout)[0]
    assert runs["dask"]["digest"] == runs["loky"]["digest"]
    assert runs["dask"]["tracking"] == "skipped: no tracking store configured"


def test_baseline_rebuilds_only_the_baselines_and_puts_them_in_service(endpoint, tmp_path) -> None:
    done = aiops(endpoint, tmp_path, "baseline", "--days", "3", "--end", END.isoformat(), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resolution"] == "day_type_hour" and out["version"] == 1
    assert load_bundle(out["bundle"], trust=trust(tmp_path)).config["detector"] == "robust_z"


def test_a_cloudwatch_that_does_not_answer_is_one_line(tmp_path) -> None:
    done = subprocess.run([*AIOPS, "--data-dir", str(tmp_path), "train", "--no-tracking"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                               "AWS_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot read cpu_utilization" in done.stderr and "127.0.0.1:9" in done.stderr
    assert not (tmp_path / "models").exists(), "nothing written half-way"
