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

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from tabulate import tabulate

from rca.classifier import TrainedClassifier
from rca.diagnosis import Diagnosis
from rca.features import Features
from rca.guards import decide
from rca.playbook import Playbook
from rca.rules import RuleClassifier
from training.rca_dataset import HOLDOUT_SEEDS, START, Generated, generate_incidents
from training.rca_train import DEFAULT_SERVICES, TRUTH_CLASSES, TrainInfo, rules_for, run_linear, train

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
    sets: list[tuple[str, SetScore, SetScore]] = field(default_factory=list)   # name, model, rules
    coverage: dict[str, list[dict]] = field(default_factory=dict)
    chosen_floors: dict[str, list[dict]] = field(default_factory=dict)   # set name -> per held-out group
    by_period: dict[int, tuple[int, float, float]] = field(default_factory=dict)   # csv form: n, model, rules


@dataclass(frozen=True)
class LabelledSet:
    """Incidents with what counts as right (``accepts``) and as harmful, and a CV group each."""

    name: str
    features: list[Features]
    truths: list[str]
    accepts: list[tuple[str, ...]]
    harmful_if: list[tuple[str, ...]]
    groups: list[str]
    folds: list[str] | None = None    # cross-validation groups (rca-dev: system/date)

    def subset(self, keep: Sequence[int]) -> "LabelledSet":
        def pick(items):
            return None if items is None else [items[i] for i in keep]
        return LabelledSet(self.name, pick(self.features), pick(self.truths), pick(self.accepts),
                           pick(self.harmful_if), pick(self.groups), pick(self.folds))


@dataclass(frozen=True)
class SetScore:
    """One classifier on one labelled set.

    ``exact``: right over all cases; ``answered_accuracy``: right among the cases it named a
    cause for (an ``unknown`` on a fault-free case is an answer, and a right one);
    ``abstained``: share of faulty cases answered ``unknown``; ``harmful``: automatic actions in
    the case's ``harmful_if``.
    """

    n: int
    exact: float
    answered_accuracy: float
    macro_f1: float
    abstained: float
    harmful: int
    misses: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n": self.n, "exact": round(self.exact, 4),
                "answered_accuracy": round(self.answered_accuracy, 4),
                "macro_f1": round(self.macro_f1, 4), "abstained": round(self.abstained, 4),
                "harmful_actions": self.harmful, "misses": self.misses}


def harmful_actions(cause: str, playbook: Playbook) -> set[str]:
    """Automatic actions that would do harm on an incident of ``cause``: every action other than
    an alert that the cause's row does not call for (as rca-dev's ``harmful_if``)."""
    wanted = playbook.cause(cause).auto_action.value
    return {c.auto_action.value for c in playbook.causes} - {wanted, "alert_only"}


def _answers(classifier, labelled: LabelledSet) -> list[Diagnosis]:
    return [classifier.diagnose(f) for f in labelled.features]


def score_set(classifier, labelled: LabelledSet, playbook: Playbook,
              answers: Sequence[Diagnosis] | None = None) -> SetScore:
    """Exact accuracy, accuracy among answered, macro-F1, abstention and harmful actions."""
    answers = list(answers) if answers is not None else _answers(classifier, labelled)
    causes = [d.root_cause for d in answers]
    right = [c in a for c, a in zip(causes, labelled.accepts, strict=True)]
    abstained = [c == "unknown" and "unknown" not in a for c, a in zip(causes, labelled.accepts, strict=True)]
    answered = [r for r, x in zip(right, abstained, strict=True) if not x]
    faulty = sum("unknown" not in a for a in labelled.accepts)
    scored = [t if r else c for t, c, r in zip(labelled.truths, causes, right, strict=True)]
    present = sorted(set(labelled.truths))
    harmful = sum(d.auto_action in h for d, h in zip(answers, labelled.harmful_if, strict=True))
    misses = [{"case": g, "truth": t, "predicted": c} for g, t, c, r in
              zip(labelled.groups, labelled.truths, causes, right, strict=True) if not r][:50]
    return SetScore(len(causes), sum(right) / max(len(right), 1),
                    sum(answered) / max(len(answered), 1),
                    float(f1_score(labelled.truths, scored, labels=present, average="macro",
                                   zero_division=0)),
                    sum(abstained) / max(faulty, 1), harmful, misses)


COVERAGE_FLOORS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)


def _at_floor(classifier, playbook: Playbook, floor: float):
    """The classifier and playbook with ``min_confidence`` at ``floor`` (destructive: at least it)."""
    strict = playbook.model_copy(update={"min_confidence": floor, "min_confidence_destructive":
                                         max(floor, playbook.min_confidence_destructive)})
    model = TrainedClassifier(classifier.model, strict) if isinstance(classifier, TrainedClassifier) \
        else classifier
    return model, strict


def coverage_table(classifier, labelled: LabelledSet, playbook: Playbook) -> list[dict]:
    """For confidence floors from 0 to 0.99: how many cases are answered and how many of those are
    right (the floor applies to every cause; destructive ones keep their own higher floor)."""
    rows = []
    for floor in COVERAGE_FLOORS:
        model, strict = _at_floor(classifier, playbook, floor)
        got = score_set(model, labelled, strict)
        rows.append({"floor": floor, "coverage": round(1 - got.abstained, 4),
                     "answered_accuracy": round(got.answered_accuracy, 4), "harmful": got.harmful})
    return rows


MAX_ABSTAINED = 0.10


def choose_floor(classifier, labelled: LabelledSet, playbook: Playbook) -> list[dict]:
    """The confidence floor chosen by leave-one-group-out cross-validation, and how it does.

    For each group (rca-dev: one system on one day) the floor is chosen on the other groups
    alone, as the one with the best accuracy among answered that abstains on at most
    :data:`MAX_ABSTAINED` of their faulty cases (the lowest such floor on a tie), then scored
    on the held-out group.
    """
    folds = labelled.folds or []
    rows = []
    for held in sorted(set(folds)):
        inside = labelled.subset([i for i, f in enumerate(folds) if f != held])
        best: tuple[float, float] | None = None
        for floor in COVERAGE_FLOORS:
            model, strict = _at_floor(classifier, playbook, floor)
            got = score_set(model, inside, strict)
            if got.abstained <= MAX_ABSTAINED and (best is None or got.answered_accuracy > best[1] + 1e-9):
                best = (floor, got.answered_accuracy)
        floor = best[0] if best else playbook.min_confidence
        model, strict = _at_floor(classifier, playbook, floor)
        got = score_set(model, labelled.subset([i for i, f in enumerate(folds) if f == held]), strict)
        rows.append({"held_out": held, "floor": floor, "n": got.n, "exact": round(got.exact, 4),
                     "answered_accuracy": round(got.answered_accuracy, 4),
                     "abstained": round(got.abstained, 4), "harmful": got.harmful})
    return rows


def seed_payload_set(playbook: Playbook) -> LabelledSet:
    """The hand-written seed-format payloads (:mod:`training.rca_seed_cases`) as a labelled set,
    parsed by the parser every entry point uses."""
    from rca.payload import parse_payload
    from training.rca_seed_cases import SEED_CASES

    return LabelledSet("seed payloads", [parse_payload(c.payload).features() for c in SEED_CASES],
                       [c.cause for c in SEED_CASES], [(c.cause,) for c in SEED_CASES],
                       [tuple(harmful_actions(c.cause, playbook)) for c in SEED_CASES],
                       [c.name for c in SEED_CASES])


CV_NAME = "simulator CV by world"


def astuple_fields(labelled: LabelledSet) -> tuple:
    """A set's fields after its name, to rename it."""
    return (labelled.features, labelled.truths, labelled.accepts, labelled.harmful_if, labelled.groups,
            labelled.folds)


def cross_validated_set(run, playbook: Playbook) -> tuple[LabelledSet, list[Diagnosis]]:
    """The training incidents, each answered by the model of the grouped cross-validation fold
    that never saw its world (simulated service), through the same guards: the simulator
    figure by grouped cross-validation (the calibration temperature, one number, is fitted on
    these out-of-fold logits)."""
    incidents = run.incidents
    features = [i.features for i in incidents]
    answers = []
    for row, f in zip(run.oof_proba[:len(incidents)], features, strict=True):
        decision = decide(dict(zip(run.model.classes, row, strict=True)), f, playbook)
        answers.append(Diagnosis.from_cause(playbook, decision.cause, decision.confidence, "", []))
    truths = [i.cause for i in incidents]
    labelled = LabelledSet(CV_NAME, features, truths, [(t,) for t in truths],
                           [tuple(harmful_actions(t, playbook)) for t in truths],
                           [str(i.seed) for i in incidents])
    return labelled, answers


def render_sets(result: BenchmarkResult, tablefmt: str = "simple") -> str:
    """Every labelled set side by side, model and rules: exact, among answered, F1, abstained, harmful."""
    headers = ["set", "classifier", "cases", "exact accuracy", "accuracy among answered", "macro-F1",
               "abstained", "harmful actions"]
    rows = [[name, who, s.n, f"{s.exact:.1%}", f"{s.answered_accuracy:.1%}", f"{s.macro_f1:.3f}",
             f"{s.abstained:.1%}", s.harmful]
            for name, m, r in result.sets for who, s in (("model", m), ("rules", r))]
    out = ["Side by side (model: the trained classifier; rules: the rule-only baseline). Simulator "
           "hold-out: services never used in training; CV by world: each training incident answered by "
           "the fold that never saw its service",
           tabulate(rows, headers=headers, tablefmt=tablefmt), "",
           "Coverage vs accuracy of the model by confidence floor (min_confidence; restart and "
           "rollback keep min_confidence_destructive)"]
    names = list(result.coverage)
    table = [[f"{r['floor']:.2f}"] + [f"{result.coverage[n][i]['coverage']:.1%} / "
                                      f"{result.coverage[n][i]['answered_accuracy']:.1%} / "
                                      f"{result.coverage[n][i]['harmful']}" for n in names]
             for i, r in enumerate(result.coverage[names[0]])] if names else []
    out.append(tabulate(table, headers=["floor"] + [f"{n}: answered / right / harmful" for n in names],
                        tablefmt=tablefmt))
    for name, rows in result.chosen_floors.items():
        out += ["", f"Confidence floor chosen by leave-one-group-out CV on {name} (on the other groups: "
                    f"best accuracy among answered with at most {MAX_ABSTAINED:.0%} abstained), scored on "
                    "the held-out group",
                tabulate([[r["held_out"], f"{r['floor']:.2f}", r["n"], f"{r['answered_accuracy']:.1%}",
                           f"{r['abstained']:.1%}", r["harmful"]] for r in rows],
                         headers=["held out", "floor", "cases", "right among answered", "abstained",
                                  "harmful"], tablefmt=tablefmt)]
    for name, model, _ in result.sets:
        if not name.startswith("simulator") and model.misses:
            out.append(f"Misses of the model, {name}: " + "; ".join(
                f"{m['case']} ({m['truth']} -> {m['predicted']})" for m in model.misses))
    return "\n".join(out)


def benchmark(playbook: Playbook, n_train_services: int = DEFAULT_SERVICES,
              n_test_services: int = DEFAULT_TEST_SERVICES, kind: str = "linear",
              classifier: TrainedClassifier | None = None, threshold: float = 4.0,
              n_jobs: int = 1, progress: Callable[[str], None] = lambda _: None,
              start: pd.Timestamp = START, sets: Sequence[LabelledSet] = (),
              seed: int = 0) -> BenchmarkResult:
    """Train on training seeds (unless a classifier is given), test on held-out seeds, with the
    rule-only baseline on the very same incidents; then both on each of ``sets`` (real-system
    windows, seed payloads), side by side."""
    started = time.monotonic()
    cross_validated: list[tuple[LabelledSet, list[Diagnosis]]] = []
    if classifier is None and kind == "linear":
        run = run_linear(playbook, n_train_services, seed, threshold=threshold, n_jobs=n_jobs,
                         progress=progress, start=start)
        info = run.info
        classifier = TrainedClassifier(run.model, playbook)
        cross_validated.append(cross_validated_set(run, playbook))
    elif classifier is None:
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
    simulated = LabelledSet("simulator hold-out", features, truths,
                            [(t,) for t in truths], [tuple(harmful_actions(t, playbook)) for t in truths],
                            [str(i.seed) for i in test.incidents])
    faults = simulated.subset([i for i, t in enumerate(truths) if t != "unknown"])
    faults = LabelledSet("simulator hold-out, faults only", *astuple_fields(faults))
    scores = [(labelled, score_set(classifier, labelled, playbook, answers),
               score_set(rules, labelled, playbook))
              for labelled, answers in ((simulated, None), (faults, None), *cross_validated,
                                        *((s, None) for s in sets))]
    periods = {}
    for period in sorted({i.service.get("period_seconds", 60) for i in test.incidents if i.form == "csv"}):
        idx = [k for k, i in enumerate(test.incidents) if i.form == "csv"
               and i.service.get("period_seconds", 60) == period]
        periods[int(period)] = (len(idx), float(np.mean([predicted[k] == truths[k] for k in idx])),
                                float(np.mean([baseline[k] == truths[k] for k in idx])))
    coverage = {labelled.name: coverage_table(classifier, labelled, playbook)
                for labelled in (simulated, *sets)}
    return BenchmarkResult(evaluate(f"trained ({info.kind})", truths, predicted, playbook, forms),
                           evaluate("rules", truths, baseline, playbook, forms), info,
                           len(test.incidents), (HOLDOUT_SEEDS[0], HOLDOUT_SEEDS[n_test_services - 1]),
                           dict(test.skipped), round(time.monotonic() - started, 1),
                           [(lab.name, m, r) for lab, m, r in scores], coverage,
                           {lab.name: choose_floor(classifier, lab, playbook) for lab in sets if lab.folds},
                           periods)


def render(result: BenchmarkResult, tablefmt: str = "simple") -> str:
    """Every set side by side, the coverage table, then the simulator's details, as text."""
    return render_sets(result, tablefmt) + "\n\n" + render_simulated(result, tablefmt)


def render_simulated(result: BenchmarkResult, tablefmt: str = "simple") -> str:
    """The simulator's side-by-side table, both confusion matrices and the harmful cases."""
    model, rules = result.model, result.rules
    rows = [["accuracy", f"{model.accuracy:.2%}", f"{rules.accuracy:.2%}"],
            ["macro-F1", f"{model.macro_f1:.3f}", f"{rules.macro_f1:.3f}"],
            ["harmful actions", model.harmful, rules.harmful],
            ["unknown (alert only)", model.unknown, rules.unknown]]
    rows += [[f"recall {c}", f"{model.recall.get(c, float('nan')):.2%}",
              f"{rules.recall.get(c, float('nan')):.2%}"] for c in TRUTH_CLASSES]
    rows += [[f"accuracy, {form} form", f"{model.by_form[form]:.2%}", f"{rules.by_form[form]:.2%}"]
             for form in model.by_form]
    rows += [[f"accuracy, csv form sampled every {p} s ({n})", f"{m:.2%}", f"{r:.2%}"]
             for p, (n, m, r) in result.by_period.items()]
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
            "rules": {**result.rules.summary(), "confusion": result.rules.confusion.to_dict()},
            "sets": {name: {"model": m.to_dict(), "rules": r.to_dict()} for name, m, r in result.sets},
            "coverage": result.coverage, "chosen_floors": result.chosen_floors,
            "by_period": {str(p): {"n": n, "model": round(m, 4), "rules": round(r, 4)}
                          for p, (n, m, r) in result.by_period.items()}}


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
        for name, model, rules in result.sets:
            key = "".join(ch if ch.isalnum() else "_" for ch in name)
            for prefix, got in (("model", model), ("rules", rules)):
                metrics.update({f"{key}.{prefix}.exact": got.exact, f"{key}.{prefix}.macro_f1": got.macro_f1,
                                f"{key}.{prefix}.abstained": got.abstained,
                                f"{key}.{prefix}.harmful_actions": got.harmful})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            text = render(result, "github") + "\n\n" + summary(result) + "\n"
            Path(tmp, "rca_benchmark.md").write_text(text)
            Path(tmp, "rca_benchmark.json").write_text(json.dumps(to_dict(result), indent=2, default=str))
            mlflow.log_artifacts(tmp)
        return run.info.run_id
