"""The trained root-cause classifier: a calibrated scikit-learn model behind the playbook's guards.

``build_model`` makes the estimator (a pipeline from feature dicts to calibrated class
probabilities); ``TrainedClassifier`` turns its probabilities into a :class:`Diagnosis` through
the hard guards of :mod:`rca.guards`, with an explanation and the evidence that drove it.

Candidates (compared by ``aiops benchmark rca --model``; README, "Root-cause classifier"):

- ``forest``: a random forest, the default. scikit-learn's trees route the NaN of unknown
  figures natively, so a payload with two metrics and a window with all five go through the
  same model. On 1,064 held-out incidents it had the best accuracy and macro-F1 (98.31%, 0.984;
  0 harmful actions) and fits in seconds.
- ``hgb``: histogram gradient-boosted trees (NaN native too): 97.74%, 0.979, 0 harmful.
- ``logistic``: multinomial logistic regression on median-imputed, standardised inputs with
  missing-value indicators, the linear reference: 96.43%, 0.971, 0 harmful, 28 unknowns.

The shipped model is none of these but ``linear`` (:mod:`rca.linear`): a logistic regression
stored as JSON and evaluated with numpy, which :class:`TrainedClassifier` runs the same way
(it reads ``classes_`` and ``predict_proba``). The scikit-learn candidates remain for
comparison and are saved as bundles.

Every candidate is wrapped in ``CalibratedClassifierCV`` (isotonic, 3 folds) so that its
probabilities can be compared with the playbook's confidence floors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from rca.diagnosis import Diagnosis, Evidence
from rca.explain import explain
from rca.features import Features
from rca.guards import Decision, decide
from rca.playbook import Playbook
from rca.semantics import NO_FAULT
from rca.vectorize import ERRORS, MODEL_METRICS, FeatureVectorizer, metric_anomalous, metric_missing

CANDIDATES = ("forest", "hgb", "logistic")
MIN_CONTRIBUTION = 0.02
EVIDENCE_TOP = 3


def build_model(kind: str = "forest", random_state: int = 0) -> Pipeline:
    """An unfitted pipeline: feature dicts -> model inputs -> calibrated class probabilities."""
    if kind == "hgb":
        core = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, max_leaf_nodes=15,
                                              min_samples_leaf=10, l2_regularization=1.0,
                                              random_state=random_state)
    elif kind == "forest":
        core = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, n_jobs=1,
                                      random_state=random_state)
    elif kind == "logistic":
        core = make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                           keep_empty_features=True),
                             StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    else:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(CANDIDATES)}")
    return Pipeline([("features", FeatureVectorizer()),
                     ("classifier", CalibratedClassifierCV(core, method="isotonic", cv=3))])


def _neutral(features: Features, group: str) -> Features:
    """``features`` with one metric (or one context figure) made unremarkable."""
    out = dict(features)
    if group == "deployment":
        out["minutes_since_deployment"] = math.nan
    elif group == "oom":
        out["oom_stopped_tasks"] = 0.0
    elif group == "tasks":
        out["running_tasks"] = out.get("desired_tasks", math.nan)
    else:
        for part, value in (("anomalous", 0.0), ("z", 0.0), ("log_ratio", 0.0), ("dev_z", 0.0),
                            ("slope_z", 0.0), ("slope_rel", 0.0), ("climb", 0.0), ("persist", 0.0),
                            ("first", 0.0)):
            if f"{group}_{part}" in out:
                out[f"{group}_{part}"] = value
        if group == ERRORS and f"{group}_expected" in out:
            out["errors_in_period"] = out[f"{group}_expected"]
    return out


class TrainedClassifier:
    """Diagnoses incidents with a fitted model, the playbook and its guards.

    Parameters
    ----------
    model : a fitted pipeline from :func:`build_model` (``predict_proba`` on feature dicts).
    playbook : the response matrix, with the error boundary and the confidence floors.
    """

    def __init__(self, model: Pipeline, playbook: Playbook):
        if not hasattr(model, "classes_"):
            raise ValueError("the root-cause model is not fitted; train it first (aiops train-rca)")
        self.model = model
        self.playbook = playbook

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.model.classes_]

    def probabilities(self, features: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Calibrated class probabilities, one row per incident, columns as :attr:`classes`.

        One thread: a handful of rows is cheaper than waking an OpenMP team, and on a busy
        machine that team's spin-waits made a single diagnosis take seconds.
        """
        with threadpool_limits(limits=1):
            return self.model.predict_proba(list(features))

    def decide(self, features: Features) -> Decision:
        """The guarded decision for one incident."""
        proba = self.probabilities([features])[0]
        return decide(dict(zip(self.classes, proba, strict=True)), features, self.playbook)

    def diagnose(self, features: Features) -> Diagnosis:
        """The playbook row for the incident, with confidence, explanation and evidence."""
        decision = self.decide(features)
        evidence = self._evidence(features, decision)
        return Diagnosis.from_cause(self.playbook, decision.cause, decision.confidence,
                                    explain(decision, features, self.playbook), evidence)

    def diagnose_many(self, features: Sequence[Features]) -> list[Decision]:
        """Guarded decisions for many incidents at once (benchmarks), without evidence."""
        proba = self.probabilities(features)
        return [decide(dict(zip(self.classes, row, strict=True)), f, self.playbook)
                for row, f in zip(proba, features, strict=True)]

    def _evidence(self, features: Features, decision: Decision) -> list[Evidence]:
        """The metrics (and context) whose removal most lowers the chosen class's probability.

        Occlusion: each metric in turn is made unremarkable (on its baseline, not anomalous,
        flat) and the model asked again; the drop in probability is its contribution. It says
        what this model relied on for this incident, whatever the model is.
        """
        target = decision.guess if decision.cause == "unknown" else decision.cause
        target = NO_FAULT if decision.rule == "no_fault" else target
        target = "error_rate" if target in ("error_rate_high", "error_rate_low") else target
        if target not in self.classes:
            return []
        column = self.classes.index(target)
        groups = [m for m in MODEL_METRICS if not metric_missing(features, m)]
        for name, key in (("deployment", "minutes_since_deployment"), ("oom", "oom_stopped_tasks")):
            value = features.get(key)
            if value is not None and math.isfinite(value) and (name == "deployment" or value > 0):
                groups.append(name)
        running, desired = features.get("running_tasks"), features.get("desired_tasks")
        if running is not None and desired is not None and running < desired:
            groups.append("tasks")
        rows = [features] + [_neutral(features, g) for g in groups]
        proba = self.probabilities(rows)[:, column]
        drops = sorted(zip(groups, proba[0] - proba[1:], strict=True), key=lambda gd: -gd[1])
        out = []
        if drops and all(d < MIN_CONTRIBUTION for _, d in drops[:EVIDENCE_TOP]):
            # a model so sure that no single metric moves it: name the anomalous metric that
            # moves it most rather than nothing (a small or an over-confident model)
            drops = [(g, max(d, 0.0)) for g, d in drops if g in MODEL_METRICS
                     and metric_anomalous(features, g)][:1]
        for group, drop in drops[:EVIDENCE_TOP]:
            if drop < MIN_CONTRIBUTION and len(drops) > 1:
                continue
            if group == "deployment":
                out.append(Evidence("minutes_since_deployment", features["minutes_since_deployment"],
                                    None, round(float(drop), 3)))
            elif group == "oom":
                out.append(Evidence("oom_stopped_tasks", features["oom_stopped_tasks"], 0.0,
                                    round(float(drop), 3)))
            elif group == "tasks":
                out.append(Evidence("running_tasks", features["running_tasks"], features["desired_tasks"],
                                    round(float(drop), 3)))
            else:
                out.append(Evidence(group, features.get(f"{group}_value", math.nan),
                                    features.get(f"{group}_expected"), round(float(drop), 3)))
        return out
