"""The root-cause use cases the CLI, the HTTP API and the Lambda handler share.

- which classifier diagnoses: the trained bundle under the data dir when there is one, else the
  rule-only classifier, said in a log line either way;
- training and saving that bundle (from simulated incidents plus the operator labels of the
  incident log);
- diagnosing an operator's JSON payload, or a metric window against a history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from detection.anomaly import Anomaly
from detection.frames import MetricFrameError, check_metric_frame
from detection.metrics import DEFAULT_SPECS
from models.bundle import BundleError
from models.signing import SignatureError, sign_file, verify_file
from rca.diagnosis import Diagnosis, RootCauseClassifier
from rca.features import EcsContext
from rca.payload import PayloadError, parse_payload
from rca.playbook import Playbook
from rca.rules import RuleClassifier
from rca.window import window_features
from service.settings import Settings
from service.signing import bundle_trust, signing_key
from service.store import IncidentStore

if TYPE_CHECKING:
    from service.aws import ClientFactory

log = logging.getLogger("aiops.rca")


LINEAR_FILE = "model-linear.json"    # what `aiops train-rca` writes under <data dir>/models/rca


def rca_bundle_dir(settings: Settings) -> Path:
    """Where a retrained root-cause classifier lives: ``<data dir>/models/rca``."""
    return settings.model_dir / "rca"


def load_rca_classifier(settings: Settings, playbook: Playbook, threshold: float | None = None, *,
                        loader: str = "aiops rca",
                        factory: ClientFactory | None = None) -> tuple[RootCauseClassifier, str]:
    """The classifier every door uses, and which one it is, in words. Never trains.

    In order: a model retrained with ``aiops train-rca`` under the data dir (the linear model's
    JSON, or a scikit-learn bundle of ``--model forest|hgb|logistic``), else the model shipped
    with the package (:data:`rca.linear.SHIPPED`), else the rules. A file that fails its
    checks (signature, format, shapes, hashes, features) is refused with a warning naming
    ``loader``, never used; nothing in it is unpickled.
    """
    from rca.classifier import TrainedClassifier
    from rca.linear import SHIPPED, LinearModel, ModelFileError

    threshold = settings.threshold if threshold is None else threshold
    directory = rca_bundle_dir(settings)
    candidates = [(directory / LINEAR_FILE, f"trained model from {directory / LINEAR_FILE}")]
    if (directory / "manifest.json").is_file():
        try:
            # training (and the simulator under it) only for a retrained bundle: the RCA
            # Lambda's package, which uses the shipped model, does not carry them
            from training.rca_train import load_classifier

            trust = bundle_trust(settings, f"{loader} (root-cause classifier)", factory=factory)
            classifier = load_classifier(directory, playbook, trust=trust)
        except (BundleError, OSError, ValueError) as exc:
            log.warning("root-cause classifier: cannot use the trained bundle (%s)", exc)
        else:
            log.info("root-cause classifier: trained model from %s", directory)
            return classifier, f"trained model from {directory}"
    candidates.append((SHIPPED, f"shipped model {SHIPPED.name}"))
    for path, source in candidates:
        if not path.is_file():
            continue
        try:
            if path != SHIPPED:   # a retrained model under the data dir: signed by its training
                verify_file(path, bundle_trust(settings, f"{loader} (root-cause classifier)",
                                               factory=factory))
            classifier = TrainedClassifier(LinearModel.load(path), playbook)
        except (ModelFileError, SignatureError) as exc:
            log.warning("root-cause classifier: cannot use %s (%s)", path, exc)
            continue
        log.info("root-cause classifier: %s", source)
        return classifier, source
    source = "rules (no usable root-cause model; retrain one with `aiops train-rca`)"
    log.warning("root-cause classifier: %s", source)
    return RuleClassifier(playbook, threshold=threshold), source


def train_rca(settings: Settings, playbook: Playbook, n_services: int | None = None, kind: str = "linear",
              use_labels: bool = True, n_jobs: int = 1,
              progress: Callable[[str], None] = lambda _: None, seed: int = 0, out: Path | None = None):
    """Train the classifier (simulated incidents + the incident log's operator labels) and save it.

    ``linear`` (the default, the shipped kind) is written as JSON to ``out`` or
    ``<data dir>/models/rca/model-linear.json``; the others as a bundle under the data dir.
    Returns the classifier, the training info and the path written.
    """
    from rca.classifier import TrainedClassifier
    from training.rca_train import DEFAULT_SERVICES, operator_labels, save_classifier, train, train_linear

    labels = []
    if use_labels and settings.db_path.is_file():
        labels = operator_labels(IncidentStore(settings.db_path))
        progress(f"{len(labels)} operator label(s) in {settings.db_path}")
    if kind == "linear":
        model, info = train_linear(playbook, n_services or DEFAULT_SERVICES, seed, labels,
                                   threshold=settings.threshold, n_jobs=n_jobs, progress=progress)
        path = model.save(out or rca_bundle_dir(settings) / LINEAR_FILE)
        if out is None:   # what the doors load: signed like every bundle
            sign_file(path, signing_key(settings, create=True))
        classifier = TrainedClassifier(model, playbook)
    else:
        classifier, info = train(playbook, n_services or DEFAULT_SERVICES, kind, labels,
                                 threshold=settings.threshold, n_jobs=n_jobs, progress=progress)
        key = signing_key(settings, create=True)
        path = save_classifier(classifier, info, rca_bundle_dir(settings), key=key)
    log.info("root-cause classifier trained in %.0f s and saved to %s", info.seconds, path)
    return classifier, info, path


def diagnose_payload(data: object, classifier: RootCauseClassifier) -> Diagnosis:
    """Diagnose the operator's JSON payload (already decoded). Raises PayloadError on bad input."""
    request = parse_payload(data)
    return classifier.diagnose(request.features(list(DEFAULT_SPECS)))


@dataclass(frozen=True)
class WindowDiagnosis:
    """A window diagnosed against a history: everything the report and its plots need."""

    diagnosis: Diagnosis
    anomalies: list[Anomaly]
    window: pd.DataFrame
    centre: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame


def read_window_file(path: str | Path, name: str) -> pd.DataFrame:
    """A history or window file (CSV or Parquet) of canonical metric columns, as a checked frame.

    Read by the one metric-file reader; the root-cause rules on top: known metric names only,
    timestamps unique and increasing, no negative value. Raises PayloadError naming the file
    (``name``) or its column, and what is wrong.
    """
    from training.metric_files import read_metric_file  # file input only: not on the Lambda's path

    parsed = read_metric_file(path, name)
    unknown = [c for c in parsed.metrics if c not in DEFAULT_SPECS] + parsed.keys
    if unknown:
        raise PayloadError(f"{name}.{unknown[0]}",
                           f"unknown metric column; known: {', '.join(DEFAULT_SPECS)}")
    raw = parsed.frame()
    index = raw.index
    if index.duplicated().any():
        raise PayloadError(f"{name}.timestamp", f"duplicate timestamp {index[index.duplicated()][0]}")
    if not index.is_monotonic_increasing:
        raise PayloadError(f"{name}.timestamp", "timestamps are not in increasing order")
    try:
        frame = check_metric_frame(raw, min_rows=1)
    except MetricFrameError as exc:
        raise PayloadError(name, str(exc)) from None
    negative = [c for c in frame.columns if (frame[c] < 0).any()]
    if negative:
        raise PayloadError(f"{name}.{negative[0]}", "negative values")
    return frame


def diagnose_window(history: pd.DataFrame, window: pd.DataFrame, classifier: RootCauseClassifier,
                    settings: Settings, context: EcsContext | None = None) -> WindowDiagnosis:
    """Fit the baselines on ``history``, find the anomalies of ``window`` and diagnose them.

    The features read the window's last 15 minutes, as the watcher's do.
    """
    found = window_features(history, window, settings.threshold, settings.group_window, context,
                            scoring_seconds=settings.period_seconds)
    return WindowDiagnosis(classifier.diagnose(found.features), found.anomalies, window, found.centre,
                           found.lower, found.upper)
