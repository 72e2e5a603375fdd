"""MLflow tracking of training runs: params, metrics, the evaluation and the bundle as a model.

A run logs what was trained (detector configuration, data window, metrics), how it did (the
evaluation figures, the champion's figures on the same evaluation) and the bundle itself, as
the pyfunc model that becomes a registered model version (``models.mlflow_store``).

Tracking is optional: ``check`` answers, quickly, why a store cannot be used (a server that
does not answer, a SQLite file in a missing directory), and the pipeline then writes the local
bundle anyway and says tracking was skipped.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from models.mlflow_store import MlflowModelStore, _quiet_mlflow
from models.signing import Trust
from models.store import ModelVersion

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "aiops-training"


@dataclass(frozen=True)
class TrackedRun:
    """What tracking produced for one service: the run and the registered version."""

    run_id: str
    version: ModelVersion | None


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts as ``a.b.c`` keys (MLflow params and metrics are flat)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


class MlflowTracker:
    """Logs training runs to one MLflow tracking store and registers their bundles.

    Parameters
    ----------
    trust : the signing key and loader name its registry store checks bundles with.
    uri : tracking URI (``sqlite:///mlflow.db`` by default, or ``http://host:5000``).
    experiment : the experiment runs go to.
    probe_timeout : seconds to wait for a tracking server's ``/health`` before giving up.
    """

    def __init__(self, trust: Trust, uri: str = DEFAULT_URI, experiment: str = DEFAULT_EXPERIMENT,
                 probe_timeout: float = 3.0):
        self.trust = trust
        self.uri = uri
        self.experiment = experiment
        self.probe_timeout = probe_timeout
        self._store: MlflowModelStore | None = None
        self._experiment_id: str | None = None

    @property
    def store(self) -> MlflowModelStore:
        if self._store is None:
            self._store = MlflowModelStore(self.uri, self.trust)
        return self._store

    def check(self) -> str | None:
        """None when the store can be used, else the reason it cannot (one line)."""
        parsed = urlparse(self.uri)
        if parsed.scheme in ("http", "https"):
            import httpx

            try:
                response = httpx.get(self.uri.rstrip("/") + "/health", timeout=self.probe_timeout)
            except httpx.HTTPError as exc:
                return f"MLflow server {self.uri} unreachable ({type(exc).__name__}: {exc})"
            if response.status_code != 200:
                return f"MLflow server {self.uri} answered /health with HTTP {response.status_code}"
        elif parsed.scheme == "sqlite":
            path = Path(self.uri[len("sqlite:///"):]) if self.uri.startswith("sqlite:///") else None
            if path is not None and str(path) not in ("", ":memory:") and not path.parent.is_dir():
                return f"MLflow store {self.uri}: directory {path.parent} does not exist"
        try:
            self._ensure_experiment()
        except Exception as exc:  # noqa: BLE001 - any failure of the store means: skip tracking
            return f"MLflow store {self.uri} unusable: {_first_line(exc)}"
        return None

    def _ensure_experiment(self) -> str:
        if self._experiment_id is None:
            client = self.store.client
            found = client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                self._experiment_id = client.create_experiment(self.experiment,
                                                               artifact_location=self._artifact_root())
        return self._experiment_id

    def _artifact_root(self) -> str | None:
        """For a SQLite store, artifacts go to ``mlruns/`` beside the database file (as
        ``mlflow ui`` expects), not wherever the command happens to run."""
        if self.uri.startswith("sqlite:///"):
            path = Path(self.uri[len("sqlite:///"):])
            return (path.parent.resolve() / "mlruns").as_uri()
        return None

    def log_training(self, *, name: str, run_name: str, params: dict, metrics: dict[str, float],
                     tags: dict[str, str], bundle_dir: Path, report: dict,
                     register: bool = True, info: dict | None = None, model: Any = None) -> TrackedRun:
        """Log one service's training run; register its bundle as a model version when asked.

        The ensemble's isolation forest, when ``model`` has one, is also logged on its own in
        MLflow's scikit-learn flavour (not registered: the bundle is the model that serves), so
        it can be inspected or reused with MLflow's tools. Raises whatever MLflow raises; the
        pipeline turns that into "tracking failed".
        """
        _quiet_mlflow()
        import mlflow

        experiment_id = self._ensure_experiment()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
            finite = {k: float(v) for k, v in metrics.items()
                      if isinstance(v, (int, float)) and math.isfinite(v)}
            if finite:
                mlflow.log_metrics(finite)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "evaluation.json"
                path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
                mlflow.log_artifact(str(path))
            self._log_forest(model)
            version = self.store.publish(name, bundle_dir, info=info) if register else None
            return TrackedRun(run.info.run_id, version)

    @staticmethod
    def _log_forest(model: Any) -> None:
        """The ensemble's isolation forest alone, as its node arrays (``isolation_forest.npz``,
        readable with ``np.load(allow_pickle=False)``); the bundle is what scoring loads."""
        import mlflow

        member = (getattr(model, "members_", None) or {}).get("iforest")
        forest = getattr(member, "forest_", None)
        if forest is None:
            return
        try:
            from detection.forest import CompiledForest

            if not isinstance(forest, CompiledForest):
                forest = CompiledForest.from_sklearn(forest)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "isolation_forest.npz"
                np.savez_compressed(path, **forest.arrays())
                mlflow.log_artifact(str(path))
            mlflow.set_tag("isolation_forest", "logged (node arrays, isolation_forest.npz)")
        except Exception as exc:  # noqa: BLE001 - an extra view of the model; the bundle is what counts
            mlflow.set_tag("isolation_forest", f"not logged: {_first_line(exc)}"[:250])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.store.client.set_tag(run_id, key, value)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]  # MLflow's param value limit is generous, but keep the UI readable


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
