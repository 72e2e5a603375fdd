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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.bundle import RCA_CLASSIFIER, BundleError, load_bundle, save_bundle
from models.signing import SigningKey, Trust
from rca.classifier import CANDIDATES, TrainedClassifier, build_model
from rca.features import Features
from rca.guards import model_class
from rca.linear import LinearModel, design_matrix, softmax, squash
from rca.playbook import ROOT_CAUSES, Playbook
from rca.semantics import MODEL_CLASSES
from rca.vectorize import FEATURE_NAMES, MODEL_METRICS
from training.rca_dataset import START, TRAIN_SEEDS, LabelledIncident, Rules, generate_incidents

BUNDLE_KIND = "rca_classifier"
DEFAULT_SERVICES = 600          # about 3,600 incidents: the default training set
LABEL_WEIGHT = 5.0              # an operator's label counts as this many simulated incidents
TRUTH_CLASSES = tuple(c for c in ROOT_CAUSES if c != "unknown")


class RcaTrainingError(RuntimeError):
    """Training or loading the root-cause classifier failed; the message says why."""


@dataclass(frozen=True)
class OperatorLabel:
    incident_id: int
    cause: str
    features: Features


def operator_labels(store) -> list[OperatorLabel]:
    """Incidents an operator labelled, with the features recorded when they opened.

    The newest label of an incident wins; incidents without recorded features are left out. A
    label of ``unknown`` (a false alarm: no fault) teaches the fault-free class, as the
    simulator's fault-free windows do.
    """
    out = []
    for incident in store.list(limit=1_000_000):
        events = store.events(incident.id)
        labels = [e["data"].get("cause") for e in events if e["kind"] == "label"]
        features = [e["data"] for e in events if e["kind"] == "features"]
        if labels and features and labels[-1] in ROOT_CAUSES:
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


def fit_classifier(features: Sequence[Features], causes: Sequence[str], kind: str = "forest",
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


def train(playbook: Playbook, n_services: int = DEFAULT_SERVICES, kind: str = "forest",
          labels: Sequence[OperatorLabel] = (), threshold: float = 4.0, n_jobs: int = 1,
          progress: Callable[[str], None] = lambda _: None,
          start: pd.Timestamp = START) -> tuple[TrainedClassifier, TrainInfo]:
    """Simulate incidents on training seeds, add operator labels, fit the classifier."""
    if kind not in CANDIDATES:
        raise RcaTrainingError(f"unknown model kind {kind!r}; known: {', '.join(CANDIDATES)}")
    started = time.monotonic()
    rules = rules_for(playbook, threshold)
    progress(f"simulating incidents on {n_services} services (training seeds) ...")
    data = generate_incidents(n_services, TRAIN_SEEDS, rules=rules, n_jobs=n_jobs, start=start)
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


def rules_for(playbook: Playbook, threshold: float) -> Rules:
    return Rules(error_boundary=playbook.error_boundary,
                 recent_deployment_minutes=playbook.recent_deployment_minutes, threshold=threshold)


def save_classifier(classifier: TrainedClassifier, info: TrainInfo, directory: str | Path, *,
                    key: SigningKey) -> Path:
    """Write the fitted model as a signed bundle (config.json + state.skops + manifest.json +
    manifest.sig; skops, scikit-learn's format that loads without unpickling)."""
    config = {"kind": BUNDLE_KIND, "model": info.kind, "feature_names": list(FEATURE_NAMES),
              "classes": classifier.classes, "training": vars(info)}
    return save_bundle(classifier.model, config, directory, key=key, metrics=list(MODEL_METRICS),
                       data_window=(f"seed {info.seeds[0]}", f"seed {info.seeds[1]}"),
                       kind=RCA_CLASSIFIER)


def load_classifier(directory: str | Path, playbook: Playbook, *, trust: Trust) -> TrainedClassifier:
    """Load a saved classifier bundle, checking its signature, hashes, kind and feature names
    (the kind before any of its state is read)."""
    bundle = load_bundle(directory, trust=trust, kind=RCA_CLASSIFIER)
    if bundle.config.get("kind") != BUNDLE_KIND:
        raise BundleError(f"{trust.loader}: model bundle {directory} is not a root-cause classifier "
                          f"(kind {bundle.config.get('kind')!r})")
    if bundle.config.get("feature_names") != list(FEATURE_NAMES):
        raise BundleError(f"{trust.loader}: root-cause classifier at {directory} was trained on other "
                          "features; retrain it with `aiops train-rca`")
    return TrainedClassifier(bundle.model, playbook)


def log_training_to_mlflow(info: TrainInfo, bundle: Path, tracking_uri: str,
                           experiment: str = "rca-training") -> str:
    """Record a training run: what it was trained on, the class counts, the bundle's files."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"rca-{info.kind}") as run:
        mlflow.log_params({"model": info.kind, "services": info.n_services,
                           "seeds": f"{info.seeds[0]}-{info.seeds[1]}", "operator_labels": info.n_labels,
                           **{f"rules.{k}": v for k, v in info.rules.items()}})
        mlflow.log_metrics({"simulated_incidents": info.n_simulated, "seconds": info.seconds,
                            **{f"class.{k}": v for k, v in info.class_counts.items()}})
        mlflow.log_artifacts(str(bundle), artifact_path="bundle")
        return run.info.run_id


C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)   # the regularisation, chosen among these by grouped CV at each training
ABSENT_INTERCEPT = -30.0
MODEL_VERSION = 2       # 2: the fault-free class, error_share, csv-form training data
CV_FOLDS = 4


def _fit_logistic(X: np.ndarray, y: np.ndarray, weights: np.ndarray, C: float, seed: int,
                  classes: Sequence[str]) -> LinearModel:
    """A logistic regression on imputed, standardised inputs plus missing flags, as plain arrays."""
    from sklearn.linear_model import LogisticRegression

    X = squash(X)
    empty = np.isnan(X).all(axis=0)
    medians, lows, highs = np.zeros(X.shape[1]), np.zeros(X.shape[1]), np.zeros(X.shape[1])
    medians[~empty] = np.nanmedian(X[:, ~empty], axis=0)
    lows[~empty] = np.nanquantile(X[:, ~empty], 0.01, axis=0)
    highs[~empty] = np.nanquantile(X[:, ~empty], 0.99, axis=0)
    filled = np.where(np.isnan(X), medians, np.clip(X, lows, highs))
    centres = filled.mean(axis=0)
    scales = filled.std(axis=0)
    scales = np.where(scales > 1e-9, scales, 1.0)
    inputs = np.hstack([(filled - centres) / scales, np.isnan(X).astype(float)])
    with threadpool_limits(limits=1):
        fitted = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit(
            inputs, y, sample_weight=weights)
    # a class absent from this (cross-validation) part gets no weight and a very low intercept
    known = [str(c) for c in fitted.classes_]
    coef = np.zeros((len(classes), inputs.shape[1]))
    intercept = np.full(len(classes), ABSENT_INTERCEPT)
    if len(known) == 2:    # scikit-learn keeps one row for two classes: the second one's logit
        coef[classes.index(known[1])] = fitted.coef_[0]
        intercept[classes.index(known[1])] = fitted.intercept_[0]
        intercept[classes.index(known[0])] = 0.0
    else:
        for row, c in enumerate(known):
            coef[classes.index(c)] = fitted.coef_[row]
            intercept[classes.index(c)] = fitted.intercept_[row]
    return LinearModel(tuple(classes), FEATURE_NAMES, lows, highs, medians, centres, scales, coef, intercept)


def _temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """The temperature that minimises the log-loss of out-of-fold logits (a grid, then kept)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    losses = [-np.mean(np.log(np.clip(softmax(logits / t)[np.arange(len(y_index)), y_index], 1e-12, 1)))
              for t in grid]
    return float(grid[int(np.argmin(losses))])


def fit_linear(features: Sequence[Features], causes: Sequence[str], groups: Sequence[int],
               weights: Sequence[float] | None = None, C: float | Sequence[float] = C_GRID, seed: int = 0,
               folds: int = CV_FOLDS) -> tuple[LinearModel, dict, np.ndarray]:
    """Fit the shipped linear model, its regularisation and calibration chosen by grouped CV.

    ``groups``: the simulated service (world) of each incident; cross-validation never puts one
    service's incidents on both sides. Each candidate ``C`` is scored by the out-of-fold
    accuracy of the symptom family (ties: the lower out-of-fold log-loss); the chosen one is
    refitted on everything, its temperature fitted on its out-of-fold logits. Returns the
    model, the cross-validated figures and the out-of-fold probabilities (one row per incident,
    columns as the model's classes): each incident as a model that never saw its world would
    answer it.
    """
    from sklearn.model_selection import GroupKFold

    labels = np.array([model_class(c) for c in causes])
    classes = tuple(c for c in MODEL_CLASSES if c in set(labels))
    if len(classes) < 2:
        raise RcaTrainingError("training needs incidents of at least two symptom families")
    X = design_matrix(features)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    y_index = np.array([classes.index(c) for c in labels])
    splits = list(GroupKFold(n_splits=folds).split(X, labels, np.asarray(groups)))
    candidates = [float(C)] if np.isscalar(C) else [float(c) for c in C]
    tried = []
    for c in candidates:
        oof = np.zeros((len(labels), len(classes)))
        for train_idx, test_idx in splits:
            part = _fit_logistic(X[train_idx], labels[train_idx], w[train_idx], c, seed, classes)
            oof[test_idx] = part.logits(X[test_idx])
        temperature = _temperature(oof, y_index)
        proba = softmax(oof / temperature)
        accuracy = float(np.mean(proba.argmax(1) == y_index))
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_index)), y_index], 1e-12, 1))))
        tried.append((c, round(accuracy, 4), round(loss, 4), temperature, proba))
    c, accuracy, loss, temperature, proba = max(tried, key=lambda t: (t[1], -t[2]))
    model = _fit_logistic(X, labels, w, c, seed, classes)
    cv = {"C": c, "folds": folds, "family_accuracy": accuracy, "log_loss": loss,
          "temperature": round(temperature, 4),
          "candidates": {str(t[0]): {"family_accuracy": t[1], "log_loss": t[2]} for t in tried}}
    return replace(model, temperature=temperature, meta={"cv": cv}), cv, proba


@dataclass
class LinearRun:
    """A linear training run with what cross-validation needs: the simulated incidents and each
    one's out-of-fold probabilities (grouped by world: from a model that never saw its service)."""

    model: LinearModel
    info: TrainInfo
    incidents: list[LabelledIncident]
    oof_proba: np.ndarray     # rows: the simulated incidents, then the operator labels


def train_linear(playbook: Playbook, n_services: int = DEFAULT_SERVICES, seed: int = 0,
                 labels: Sequence[OperatorLabel] = (), threshold: float = 4.0, n_jobs: int = 1,
                 progress: Callable[[str], None] = lambda _: None,
                 start: pd.Timestamp = START) -> tuple[LinearModel, TrainInfo]:
    """Train the shippable linear model: simulated incidents of ``n_services`` services plus labels.

    ``seed`` picks the services: training seeds ``TRAIN_SEEDS[seed * n_services:(seed + 1) *
    n_services]``, so ``aiops train-rca --seed N`` rebuilds the same file byte for byte.
    """
    run = run_linear(playbook, n_services, seed, labels, threshold, n_jobs, progress, start)
    return run.model, run.info


def run_linear(playbook: Playbook, n_services: int = DEFAULT_SERVICES, seed: int = 0,
               labels: Sequence[OperatorLabel] = (), threshold: float = 4.0, n_jobs: int = 1,
               progress: Callable[[str], None] = lambda _: None,
               start: pd.Timestamp = START) -> LinearRun:
    """:func:`train_linear`, keeping the incidents and their grouped out-of-fold probabilities."""
    if seed < 0 or (seed + 1) * n_services > len(TRAIN_SEEDS):
        raise RcaTrainingError(f"--seed {seed} with {n_services} services runs past the training seeds")
    started = time.monotonic()
    rules = rules_for(playbook, threshold)
    first = seed * n_services
    progress(f"simulating incidents on {n_services} services (training seeds, --seed {seed}) ...")
    data = generate_incidents(n_services, TRAIN_SEEDS, first=first, rules=rules, n_jobs=n_jobs, start=start)
    features = [i.features for i in data.incidents] + [lab.features for lab in labels]
    causes = [i.cause for i in data.incidents] + [lab.cause for lab in labels]
    groups = [i.seed for i in data.incidents] + [-lab.incident_id for lab in labels]
    weights = [1.0] * len(data.incidents) + [LABEL_WEIGHT] * len(labels)
    progress(f"fitting the linear model on {len(data.incidents)} simulated incidents and "
             f"{len(labels)} operator label(s); C and calibration by {CV_FOLDS}-fold CV grouped by "
             "service ...")
    model, cv, oof = fit_linear(features, causes, groups, weights, seed=seed)
    seeds = (TRAIN_SEEDS[first], TRAIN_SEEDS[first + n_services - 1])
    info = TrainInfo("linear", n_services, seeds, len(data.incidents), len(labels), dict(Counter(causes)),
                     dict(data.skipped), round(time.monotonic() - started, 1), vars(rules))
    meta = {"version": MODEL_VERSION, "seed": seed, "services": n_services, "service_seeds": list(seeds),
            "simulated_incidents": info.n_simulated, "operator_labels": info.n_labels,
            "class_counts": dict(sorted(info.class_counts.items())), "cv": cv,
            "reproduce": f"aiops train-rca --seed {seed} --services {n_services} --no-labels"}
    return LinearRun(replace(model, meta=meta), info, list(data.incidents), oof)
