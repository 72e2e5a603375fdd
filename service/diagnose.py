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

import pandas as pd

from detection.anomaly import Anomaly
from detection.frames import MetricFrameError, check_metric_frame
from detection.metrics import DEFAULT_SPECS
from detection.zscore import RobustZDetector
from models.bundle import BundleError
from rca.diagnosis import Diagnosis, RootCauseClassifier
from rca.features import EcsContext, incident_features
from rca.payload import PayloadError, parse_payload
from rca.playbook import Playbook
from rca.rules import RuleClassifier
from service.settings import Settings
from service.store import IncidentStore

log = logging.getLogger("aiops.rca")
FEATURE_MINUTES = 15     # the window the watcher hands to the features (plus the current minute)
MIN_HISTORY_ROWS = 60


def rca_bundle_dir(settings: Settings) -> Path:
    """Where the trained root-cause classifier lives: ``<data dir>/models/rca``."""
    return settings.model_dir / "rca"


def load_rca_classifier(settings: Settings, playbook: Playbook,
                        threshold: float | None = None) -> tuple[RootCauseClassifier, str]:
    """The trained classifier when its bundle exists and loads, else the rules; and which, in words.

    A bundle that fails its checks (hashes, features) is refused with a warning, never used.
    """
    from training.rca_train import load_classifier

    threshold = settings.threshold if threshold is None else threshold
    directory = rca_bundle_dir(settings)
    if (directory / "manifest.json").is_file():
        try:
            classifier = load_classifier(directory, playbook)
        except (BundleError, OSError, ValueError) as exc:
            log.warning("root-cause classifier: cannot use the trained model (%s); using the rules", exc)
        else:
            source = f"trained model from {directory}"
            log.info("root-cause classifier: %s", source)
            return classifier, source
    source = f"rules (no trained model at {directory}; train one with `aiops train-rca`)"
    log.warning("root-cause classifier: %s", source)
    return RuleClassifier(playbook, threshold=threshold), source


def train_rca(settings: Settings, playbook: Playbook, n_services: int | None = None, kind: str = "forest",
              use_labels: bool = True, n_jobs: int = 1,
              progress: Callable[[str], None] = lambda _: None):
    """Train the classifier (simulated incidents + the incident log's operator labels) and save it.

    Returns the classifier, the training info and the bundle path.
    """
    from training.rca_train import DEFAULT_SERVICES, operator_labels, save_classifier, train

    labels = []
    if use_labels and settings.db_path.is_file():
        labels = operator_labels(IncidentStore(settings.db_path))
        progress(f"{len(labels)} operator label(s) in {settings.db_path}")
    classifier, info = train(playbook, n_services or DEFAULT_SERVICES, kind, labels,
                             threshold=settings.threshold, n_jobs=n_jobs, progress=progress)
    path = save_classifier(classifier, info, rca_bundle_dir(settings))
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


def read_metric_csv(path: str | Path, name: str) -> pd.DataFrame:
    """A CSV of canonical metric columns and a ``timestamp`` column, as a checked frame.

    Raises PayloadError naming the file (``name``) and what is wrong with it.
    """
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise PayloadError(name, f"cannot read {path}: {exc}") from None
    if "timestamp" not in raw.columns:
        raise PayloadError(name, f"{path} has no 'timestamp' column (columns: {', '.join(raw.columns)})")
    unknown = [c for c in raw.columns if c != "timestamp" and c not in DEFAULT_SPECS]
    if unknown:
        raise PayloadError(f"{name}.{unknown[0]}",
                           f"unknown metric column; known: {', '.join(DEFAULT_SPECS)}")
    try:
        index = pd.to_datetime(raw.pop("timestamp"), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"{name}.timestamp", f"unparseable timestamp: {exc}") from None
    if index.isna().any():
        raise PayloadError(f"{name}.timestamp", "missing timestamps")
    if index.duplicated().any():
        raise PayloadError(f"{name}.timestamp", f"duplicate timestamp {index[index.duplicated()][0]}")
    if not index.is_monotonic_increasing:
        raise PayloadError(f"{name}.timestamp", "timestamps are not in increasing order")
    raw.index = pd.DatetimeIndex(index)
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
    if len(history.dropna(how="all")) < MIN_HISTORY_ROWS:
        raise PayloadError("history", f"{len(history)} rows; at least {MIN_HISTORY_ROWS} needed to learn "
                                      "a baseline")
    if len(window.dropna(how="all")) < settings.group_window:
        raise PayloadError("window", f"{len(window)} row(s), shorter than the grouping window of "
                                     f"{settings.group_window} periods")
    missing = [c for c in window.columns if c not in history.columns]
    if missing:
        raise PayloadError(f"window.{missing[0]}", "metric not in the history, so it has no baseline")
    detector = RobustZDetector(threshold=settings.threshold).fit(history)
    anomalies = detector.detect(window)
    end = window.index[-1]
    recent = window[window.index >= end - pd.Timedelta(minutes=FEATURE_MINUTES)]
    columns = list(window.columns)
    centre = detector.expected_frame(window.index, columns)
    spread = pd.DataFrame({m: detector.baseline_.expected(m, window.index).spread for m in columns},
                          index=window.index)
    features = incident_features(anomalies, recent, centre.loc[recent.index], list(DEFAULT_SPECS),
                                 spread=spread.loc[recent.index], context=context)
    band = detector.threshold * spread
    return WindowDiagnosis(classifier.diagnose(features), anomalies, window, centre, centre - band,
                           centre + band)
