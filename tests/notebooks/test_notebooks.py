"""The notebooks in notebooks/, executed with nbmake on small data, offline.

Each notebook runs in a fresh kernel from a copy in a temporary folder with no incident log and no
MLflow store around it, so it takes its "make a small one" path: the embedded environment plays one
fault for ``explore_incident``; two training runs through the pipeline give ``compare_models`` a
champion and a challenger. nbmake writes the outputs into the copies (``--overwrite``), which the
test then reads: the plots rendered, and the sections whose runs are absent said so.

The notebooks are not collected by the rest of the suite (``testpaths`` is ``tests``); deselect
this module with ``-m "not notebooks"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("explore_incident.ipynb", "compare_models.ipynb")
# Variables that would point a notebook at an existing store instead of its own small one.
POINTERS = ("AIOPS_INCIDENT_DB", "AIOPS_INCIDENT_ID", "MLFLOW_TRACKING_URI", "AIOPS_DATA_DIR")


def _texts(notebook) -> str:
    """Every text output of an executed notebook (streams and text/plain results), joined."""
    out = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                out.append(output["text"])
            elif "text/plain" in output.get("data", {}):
                out.append(output["data"]["text/plain"])
    return "\n".join(out)


def _images(notebook) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code), \
        f"{name} has outputs: strip them before committing"


def _run_nbmake(work: Path, names: list[str], extra_env: dict[str, str]) -> None:
    """Execute ``names`` (copies in ``work``) with nbmake in a subprocess; outputs written back."""
    (work / "pytest.ini").write_text("[pytest]\n")   # keep the project's pytest options out
    env = {k: v for k, v in os.environ.items() if k not in POINTERS}
    env.pop("MPLBACKEND", None)   # the kernel draws inline: the plots become outputs
    env.update(PYTHONWARNINGS="ignore", **extra_env)
    # the checkout under test, not whichever one the virtual environment was installed from
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(NOTEBOOKS.parent), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=300", "--overwrite",
         "-p", "no:cacheprovider", "-q", *names],
        cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """Both notebooks executed by nbmake in a temporary folder; the executed copies, by name."""
    work = tmp_path_factory.mktemp("notebooks")
    for name in NAMES:
        shutil.copy(NOTEBOOKS / name, work / name)
    scratch = work / "tmp"   # where the notebooks' small stores go
    scratch.mkdir()
    _run_nbmake(work, list(NAMES), {"TMPDIR": str(scratch)})
    return {name: nbformat.read(work / name, as_version=4) for name in NAMES}


def test_explore_incident(executed) -> None:
    notebook = executed["explore_incident.ipynb"]
    text = _texts(notebook)
    assert "played load_surge: high_cpu, scale_up" in text
    assert "root cause: high_cpu" in text           # the diagnosis
    assert "desired count 2 -> 3" in text           # the action on ECS
    assert "verification: passed" in text           # the timeline's verdict
    assert _images(notebook) >= 1                   # the metrics against their bands


def test_compare_models(executed) -> None:
    notebook = executed["compare_models.ipynb"]
    text = _texts(notebook)
    assert "ensemble: champion" in text             # the first model of the service
    assert "robust_z: " in text                     # challenger, or champion if not worse
    assert "no NAB benchmark run in this store" in text
    assert "no RCA benchmark run in this store" in text
    assert _images(notebook) >= 2                   # champion vs challenger, training runs


def test_compare_models_benchmarks(tmp_path) -> None:
    """A store with only benchmark runs: the NAB table and the RCA confusion matrices are drawn,
    and the champion section says there is none."""
    from rca.playbook import load_playbook
    from training import nab_benchmark, rca_benchmark

    root = nab_benchmark.default_nab_root()
    if not (root / "labels" / "combined_windows.json").is_file():
        pytest.skip(f"no NAB corpus at {root}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    nab_benchmark.log_to_mlflow(nab_benchmark.run_nab_benchmark(root, detector="baseline"), uri)
    small = rca_benchmark.benchmark(load_playbook(None), 12, 3, kind="forest", n_jobs=1)
    rca_benchmark.log_to_mlflow(small, uri)

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "compare_models.ipynb", work)
    _run_nbmake(work, ["compare_models.ipynb"], {"MLFLOW_TRACKING_URI": uri})
    notebook = nbformat.read(work / "compare_models.ipynb", as_version=4)
    text = _texts(notebook)
    assert "no registered model has a champion or challenger alias" in text
    assert "no training runs" in text
    assert "baseline (ours)" in text and "numenta" in text      # the NAB table, peers included
    assert "macro_f1" in text                                   # the RCA summary
    assert "no NAB benchmark run" not in text and "no RCA benchmark run" not in text
    assert _images(notebook) >= 2                               # NAB bars, confusion matrices
