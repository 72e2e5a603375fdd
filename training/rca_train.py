"""Fit, save, load and evaluate the root-cause classifier.

Training data: simulated incidents (:mod:`training.rca_dataset`, training seeds only) plus the
operator labels of the incident log (``aiops incidents label ID CAUSE``), each label weighted
more than a simulated incident because it is a real service's truth. The fitted pipeline is
saved as a model bundle (config + state + sha256 manifest); the playbook is not in it, so
editing the playbook (boundary, confidence floors) needs no retraining.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from threadpoolctl import threadpool_limits

from models.bundle import BundleError, load_bundle, save_bundle
from rca.classifier import CANDIDATES, TrainedClassifier, build_model
from rca.features import Features
from rca.guards import model_class
from rca.playbook import ROOT_CAUSES, Playbook
from rca.rules import RuleClassifier
from rca.vectorize import FEATURE_NAMES, MODEL_METRICS
from training.rca_dataset import HOLDOUT_SEEDS, TRAIN_SEEDS, Generated, Rules, generate_incidents

BUNDLE_KIND = "rca_classifier"
DEFAULT_SERVICES = 600          # about 3,600 incidents: the default training set
LABEL_WEIGHT = 5.0              # an operator's label counts as this many simulated incidents
TRUTH_CLASSES = tuple(c for c in ROOT_CAUSES if c != "unknown")
DESTRUCTIVE = ("restart_tasks", "rollback")


class RcaTrainingError(RuntimeError):
    """Training or loading the root-cause classifier failed; the message says why."""


@dataclass(frozen=True)
class OperatorLabel:
    incident_id: int
    cause: str
    features: Features


def operator_labels(store) -> list[OperatorLabel]:
    """Incidents an operator labelled, with the features recorded when they opened.

    The newest label of an incident wins; incidents without recorded features, and labels of
    ``unknown`` (nothing to learn from), are left out.
    """
    out = []
    for incident in store.list(limit=1_000_000):
        events = store.events(incident.id)
        labels = [e["data"].get("cause") for e in events if e["kind"] == "label"]
        features = [e["data"] for e in events if e["kind"] == "features"]
        if labels and features and labels[-1] in TRUTH_CLASSES:
            out.append(OperatorLabel(incident.id, labels[-1], features[0]))
    return out


@dataclass
class TrainInfo:
    """What a training run used and took, for the bundle's config and the CLI."""

    kind: str
    n_services: int
    seeds: tuple[int, int]
    n_simulated: int
    n_labels: int
    class_counts: dict[str, int]
    skipped: dict[str, int]
    seconds: float
    rules: dict = field(default_factory=dict)


def fit_classifier(features: Sequence[Features], causes: Sequence[str], kind: str = "hgb",
                   weights: Sequence[float] | None = None, random_state: int = 0):
    """Fit a model from :func:`rca.classifier.build_model` on incidents and their root causes."""
    labels = [model_class(c) for c in causes]
    if len(set(labels)) < 2:
        raise RcaTrainingError("training needs incidents of at least two root causes")
    model = build_model(kind, random_state=random_state)
    params = {} if weights is None else {"classifier__sample_weight": np.asarray(weights, dtype=float)}
    # One thread: on a shared machine OpenMP oversubscription made the boosted trees ten times
    # slower; the fit is small, and the simulation (not the fit) is what parallelises.
    with threadpool_limits(limits=1):
        return model.fit(list(features), labels, **params)


def train(playbook: Playbook, n_services: int = DEFAULT_SERVICES, kind: str = "hgb",
          labels: Sequence[OperatorLabel] = (), threshold: float = 4.0, n_jobs: int = 1,
          progress: Callable[[str], None] = lambda _: None) -> tuple[TrainedClassifier, TrainInfo]:
    """Simulate incidents on training seeds, add operator labels, fit the classifier."""
    if kind not in CANDIDATES:
        raise RcaTrainingError(f"unknown model kind {kind!r}; known: {', '.join(CANDIDATES)}")
    started = time.monotonic()
    rules = _rules(playbook, threshold)
    progress(f"simulating incidents on {n_services} services (training seeds) ...")
    data = generate_incidents(n_services, TRAIN_SEEDS, rules=rules, n_jobs=n_jobs)
    features = [i.features for i in data.incidents] + [lab.features for lab in labels]
    causes = [i.cause for i in data.incidents] + [lab.cause for lab in labels]
    weights = [1.0] * len(data.incidents) + [LABEL_WEIGHT] * len(labels)
    progress(f"fitting a calibrated {kind} classifier on {len(data.incidents)} simulated incidents"
             f" and {len(labels)} operator label(s) ...")
    model = fit_classifier(features, causes, kind, weights)
    info = TrainInfo(kind, n_services, (TRAIN_SEEDS[0], TRAIN_SEEDS[n_services - 1]),
                     len(data.incidents), len(labels), dict(Counter(causes)), dict(data.skipped),
                     round(time.monotonic() - started, 1), vars(rules))
    return TrainedClassifier(model, playbook), info


def _rules(playbook: Playbook, threshold: float) -> Rules:
    return Rules(error_boundary=playbook.error_boundary,
                 recent_deployment_minutes=playbook.recent_deployment_minutes, threshold=threshold)


def save_classifier(classifier: TrainedClassifier, info: TrainInfo, directory: str | Path) -> Path:
    """Write the fitted model as a bundle (config.json + state.joblib + manifest.json)."""
    config = {"kind": BUNDLE_KIND, "model": info.kind, "feature_names": list(FEATURE_NAMES),
              "classes": classifier.classes, "training": vars(info)}
    return save_bundle(classifier.model, config, directory, metrics=list(MODEL_METRICS),
                       data_window=(f"seed {info.seeds[0]}", f"seed {info.seeds[1]}"))


def load_classifier(directory: str | Path, playbook: Playbook) -> TrainedClassifier:
    """Load a saved classifier bundle, checking its hashes, kind and feature names."""
    bundle = load_bundle(directory)
    if bundle.config.get("kind") != BUNDLE_KIND:
        raise BundleError(f"model bundle {directory} is not a root-cause classifier "
                          f"(kind {bundle.config.get('kind')!r})")
    if bundle.config.get("feature_names") != list(FEATURE_NAMES):
        raise BundleError(f"root-cause classifier at {directory} was trained on other features; "
                          "retrain it with `aiops train-rca`")
    return TrainedClassifier(bundle.model, playbook)


@dataclass
class Evaluation:
    """How one classifier did on a labelled set."""

    name: str
    accuracy: float
    macro_f1: float
    recall: dict[str, float]
    confusion: pd.DataFrame       # truth rows x predicted columns (unknown included)
    harmful: int                  # restarts / rollbacks the truth did not call for
    unknown: int
    by_form: dict[str, float]
    harmful_cases: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {"accuracy": round(self.accuracy, 4), "macro_f1": round(self.macro_f1, 4),
                "harmful_actions": self.harmful, "unknown": self.unknown,
                "recall": {k: round(v, 4) for k, v in self.recall.items()},
                "accuracy_by_form": {k: round(v, 4) for k, v in self.by_form.items()}}


def evaluate(name: str, truths: Sequence[str], predictions: Sequence[str], playbook: Playbook,
             forms: Sequence[str] | None = None) -> Evaluation:
    """Accuracy, macro-F1 over the six causes, per-cause recall, confusion and harmful actions."""
    truths, predictions = list(truths), list(predictions)
    labels = list(TRUTH_CLASSES)
    present = [c for c in labels if c in truths]
    columns = labels + ["unknown"]
    matrix = confusion_matrix(truths, predictions, labels=columns)[:len(labels)]
    confusion = pd.DataFrame(matrix, index=labels, columns=columns)
    recall = dict(zip(present, recall_score(truths, predictions, labels=present, average=None,
                                            zero_division=0), strict=True))
    action = {c.id: c.auto_action.value for c in playbook.causes}
    harmful = [{"truth": t, "predicted": p} for t, p in zip(truths, predictions, strict=True)
               if action[p] in DESTRUCTIVE and action[p] != action[t]]
    by_form = {}
    if forms is not None:
        for form in sorted(set(forms)):
            idx = [i for i, f in enumerate(forms) if f == form]
            by_form[form] = accuracy_score([truths[i] for i in idx], [predictions[i] for i in idx])
    return Evaluation(name, float(accuracy_score(truths, predictions)),
                      float(f1_score(truths, predictions, labels=present, average="macro", zero_division=0)),
                      {k: float(v) for k, v in recall.items()}, confusion, len(harmful),
                      predictions.count("unknown"), by_form, harmful)


@dataclass
class BenchmarkResult:
    model: Evaluation
    rules: Evaluation
    info: TrainInfo
    n_test: int
    test_seeds: tuple[int, int]
    skipped: dict[str, int]
    seconds: float


def benchmark(playbook: Playbook, n_train_services: int = DEFAULT_SERVICES, n_test_services: int = 200,
              kind: str = "hgb", classifier: TrainedClassifier | None = None, threshold: float = 4.0,
              n_jobs: int = 1, progress: Callable[[str], None] = lambda _: None) -> BenchmarkResult:
    """Train on training seeds (unless a classifier is given), test on held-out seeds, with the
    rule-only baseline on the very same incidents."""
    started = time.monotonic()
    if classifier is None:
        classifier, info = train(playbook, n_train_services, kind, threshold=threshold, n_jobs=n_jobs,
                                 progress=progress)
    else:
        info = TrainInfo("given", 0, (0, 0), 0, 0, {}, {}, 0.0)
    progress(f"simulating held-out incidents on {n_test_services} services (seeds never used in "
             "training) ...")
    test: Generated = generate_incidents(n_test_services, HOLDOUT_SEEDS,
                                         rules=_rules(playbook, threshold), n_jobs=n_jobs)
    truths = [i.cause for i in test.incidents]
    forms = [i.form for i in test.incidents]
    features = [i.features for i in test.incidents]
    predicted = [d.cause for d in classifier.diagnose_many(features)]
    rules = RuleClassifier(playbook, threshold=threshold)
    baseline = [rules.diagnose(f).root_cause for f in features]
    return BenchmarkResult(evaluate(f"trained ({info.kind})", truths, predicted, playbook, forms),
                           evaluate("rules", truths, baseline, playbook, forms), info,
                           len(test.incidents), (HOLDOUT_SEEDS[0], HOLDOUT_SEEDS[n_test_services - 1]),
                           dict(test.skipped), round(time.monotonic() - started, 1))
