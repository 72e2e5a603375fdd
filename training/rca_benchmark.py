"""``aiops benchmark rca``: the trained classifier and the rule-only baseline on held-out incidents.

Both classify the very same simulated incidents, drawn from seeds never used in training
(:data:`training.rca_dataset.HOLDOUT_SEEDS`). Figures: accuracy, macro-F1 over the six causes,
per-cause recall, the confusion matrix (``unknown`` as an extra column), accuracy per input
form (watcher window, window without spreads, operator payload), and harmful actions: a
restart or a rollback the truth did not call for.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from tabulate import tabulate

from rca.classifier import TrainedClassifier
from rca.playbook import Playbook
from rca.rules import RuleClassifier
from training.rca_dataset import HOLDOUT_SEEDS, START, Generated, generate_incidents
from training.rca_train import DEFAULT_SERVICES, TRUTH_CLASSES, TrainInfo, rules_for, train

DESTRUCTIVE = ("restart_tasks", "rollback")
DEFAULT_TEST_SERVICES = 200


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


def benchmark(playbook: Playbook, n_train_services: int = DEFAULT_SERVICES,
              n_test_services: int = DEFAULT_TEST_SERVICES, kind: str = "forest",
              classifier: TrainedClassifier | None = None, threshold: float = 4.0,
              n_jobs: int = 1, progress: Callable[[str], None] = lambda _: None,
              start: pd.Timestamp = START) -> BenchmarkResult:
    """Train on training seeds (unless a classifier is given), test on held-out seeds, with the
    rule-only baseline on the very same incidents."""
    started = time.monotonic()
    if classifier is None:
        classifier, info = train(playbook, n_train_services, kind, threshold=threshold, n_jobs=n_jobs,
                                 progress=progress, start=start)
    else:
        info = TrainInfo("given", 0, (0, 0), 0, 0, {}, {}, 0.0)
    progress(f"simulating held-out incidents on {n_test_services} services (seeds never used in "
             "training) ...")
    test: Generated = generate_incidents(n_test_services, HOLDOUT_SEEDS,
                                         rules=rules_for(playbook, threshold), n_jobs=n_jobs,
                                         start=start)
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


def render(result: BenchmarkResult, tablefmt: str = "simple") -> str:
    """The side-by-side table, both confusion matrices and the harmful cases, as text."""
    model, rules = result.model, result.rules
    rows = [["accuracy", f"{model.accuracy:.2%}", f"{rules.accuracy:.2%}"],
            ["macro-F1", f"{model.macro_f1:.3f}", f"{rules.macro_f1:.3f}"],
            ["harmful actions", model.harmful, rules.harmful],
            ["unknown (alert only)", model.unknown, rules.unknown]]
    rows += [[f"recall {c}", f"{model.recall.get(c, float('nan')):.2%}",
              f"{rules.recall.get(c, float('nan')):.2%}"] for c in TRUTH_CLASSES]
    rows += [[f"accuracy, {form} form", f"{model.by_form[form]:.2%}", f"{rules.by_form[form]:.2%}"]
             for form in model.by_form]
    out = [f"Root-cause classifier on {result.n_test} held-out simulated incidents (seeds "
           f"{result.test_seeds[0]}-{result.test_seeds[1]}, never used in training)", "",
           tabulate(rows, headers=["", model.name, rules.name], tablefmt=tablefmt)]
    for evaluation in (model, rules):
        out += ["", f"Confusion matrix, {evaluation.name} (rows: truth, columns: predicted)",
                tabulate(evaluation.confusion.reset_index().values.tolist(),
                         headers=["truth"] + list(evaluation.confusion.columns), tablefmt=tablefmt)]
    if rules.harmful_cases or model.harmful_cases:
        out += [""]
        for evaluation in (model, rules):
            counts = pd.Series([f"{c['truth']} -> {c['predicted']}" for c in evaluation.harmful_cases])
            detail = ", ".join(f"{k}: {v}" for k, v in counts.value_counts().items()) or "none"
            out.append(f"Harmful actions, {evaluation.name}: {detail}")
    return "\n".join(out)


def summary(result: BenchmarkResult) -> str:
    """One line of what was trained and how long it all took."""
    info = result.info
    trained = (f"trained on {info.n_simulated} simulated incidents from {info.n_services} services"
               f" (seeds {info.seeds[0]}-{info.seeds[1]}) in {info.seconds:.0f} s"
               if info.n_services else "a given classifier")
    skipped = ", ".join(f"{v} {k}" for k, v in result.skipped.items()) or "none"
    return f"{trained}; held-out faults left out: {skipped}; {result.seconds:.0f} s in all."


def to_dict(result: BenchmarkResult) -> dict:
    return {"n_test": result.n_test, "test_seeds": list(result.test_seeds), "skipped": result.skipped,
            "seconds": result.seconds, "training": vars(result.info),
            "model": {**result.model.summary(), "confusion": result.model.confusion.to_dict()},
            "rules": {**result.rules.summary(), "confusion": result.rules.confusion.to_dict()}}


def log_to_mlflow(result: BenchmarkResult, tracking_uri: str, experiment: str = "rca-benchmark") -> str:
    """Record the benchmark as one MLflow run (params, both sides' metrics, tables); its run id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    info = result.info
    with mlflow.start_run(run_name=f"rca-{info.kind}") as run:
        mlflow.log_params({"model": info.kind, "train_services": info.n_services,
                           "train_incidents": info.n_simulated,
                           "train_seeds": f"{info.seeds[0]}-{info.seeds[1]}",
                           "test_incidents": result.n_test,
                           "test_seeds": f"{result.test_seeds[0]}-{result.test_seeds[1]}"})
        metrics = {}
        for prefix, evaluation in (("model", result.model), ("rules", result.rules)):
            metrics.update({f"{prefix}.accuracy": evaluation.accuracy,
                            f"{prefix}.macro_f1": evaluation.macro_f1,
                            f"{prefix}.harmful_actions": evaluation.harmful,
                            f"{prefix}.unknown": evaluation.unknown})
            metrics.update({f"{prefix}.recall.{k}": v for k, v in evaluation.recall.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            text = render(result, "github") + "\n\n" + summary(result) + "\n"
            Path(tmp, "rca_benchmark.md").write_text(text)
            Path(tmp, "rca_benchmark.json").write_text(json.dumps(to_dict(result), indent=2, default=str))
            mlflow.log_artifacts(tmp)
        return run.info.run_id
