"""``aiops benchmark nab`` as a user runs it: the table beside the peers, and MLflow when asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(os.environ.get("AIOPS_NAB_ROOT") or
            Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab")
needs_corpus = pytest.mark.skipif(not (ROOT / "labels" / "combined_windows.json").is_file(),
                                  reason=f"NAB corpus not found at {ROOT} (set AIOPS_NAB_ROOT)")


def aiops(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**clean, **(env or {})})


@needs_corpus
def test_nab_table_shows_us_beside_the_five_peers_and_says_tracking_was_skipped() -> None:
    done = aiops("benchmark", "nab", "--root", str(ROOT))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["detector", "Standard", "Low", "FP", "Low", "FN"]
    assert lines[3].startswith("streaming (ours)")
    assert any(line.split()[:4] == ["numenta", "72.30", "69.12", "75.98"] for line in lines)
    # the cross-validated table: every detector again, its leave-one-file-out score and the spread
    # of the k-fold scores, never above what the threshold fitted on the whole corpus gave
    cv = lines[lines.index(next(l for l in lines if l.startswith("Cross-validated"))) + 3:][:6]
    assert [line.split()[0] for line in cv] == ["streaming", "numenta", "contextOSE", "ARTime",
                                                "randomCutForest", "windowedGaussian"]
    numenta = next(line for line in cv if line.startswith("numenta")).split()
    assert float(numenta[1]) < 72.30 and numenta[3] == "\u00b1" and float(numenta[4].rstrip(")")) > 0
    assert "rows/s" in done.stdout and "112092 rows" in done.stdout
    assert "MLflow tracking skipped" in done.stdout


@needs_corpus
def test_nab_results_are_logged_to_mlflow_when_a_tracking_uri_is_set(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = aiops("benchmark", "nab", "--root", str(ROOT), "--json", env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["detector"] for r in report["table"]][0] == "streaming" and len(report["table"]) == 6
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=uri).get_run(report["mlflow_run_id"])
    assert run.data.params["detector"] == "streaming"
    assert run.data.metrics["peer.numenta.standard"] == pytest.approx(72.30, abs=0.01)
    assert "nab.standard" in run.data.metrics and "rows_per_second" in run.data.metrics
    assert run.data.metrics["nab.standard.cv_lofo"] < run.data.metrics["nab.standard"]
    assert len(report["table"][0]["standard"]["cv_folds"]) == 20
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)}
    assert artifacts == {"nab_table.md", "nab_report.json"}


def test_unknown_detector_and_missing_corpus_are_named(tmp_path: Path) -> None:
    done = aiops("benchmark", "nab", "--detector", "nope", "--root", str(tmp_path))
    assert done.returncode == 2 and "unknown detector 'nope'" in done.stderr
    done = aiops("benchmark", "nab", "--root", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"aiops: error: no NAB corpus at {tmp_path}")


def test_the_scoring_benchmark_prints_both_scorers_their_ratio_and_the_difference() -> None:
    done = aiops("benchmark", "scoring", "--services", "30", "--models", "1", "--ticks", "1", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["series"] == 150 and report["per_service_sample"] == 20
    assert report["ensemble_tick_cpu_ms"] > 0 and report["robust_z_tick_cpu_ms"] > 0
    assert report["max_difference"] <= 1e-6, "the fleet scorer gives each service its own scores"
