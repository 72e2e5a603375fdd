"""Does the root-cause model carry over to services unlike the ones it was trained on?

Simulates training and held-out incidents as ``aiops benchmark rca`` does, then trains the
shipped kind of model (the linear one, C and calibration by grouped CV) only on the services of
one kind and tests it on the held-out services of the other: small traffic -> large traffic,
large -> small, few tasks -> many, quiet metrics -> noisy ones, long history -> short, and, for
the windows read as ``aiops rca --history --window`` reads them, sampled every minute or
coarser -> finer than a minute and the reverse. Prints exact accuracy, macro-F1, harmful
actions and unknowns per shift, with the rule-only baseline on the same test.

    python scripts/rca_shift_check.py [--train-services 600] [--test-services 200]

About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse

from tabulate import tabulate

from rca.classifier import TrainedClassifier
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from training.rca_benchmark import evaluate
from training.rca_dataset import HOLDOUT_SEEDS, TRAIN_SEEDS, generate_incidents
from training.rca_train import fit_linear


def _fine(service: dict) -> bool:
    return service["period_seconds"] < 60


SHIFTS = {
    "small traffic -> large (peak rpm 2,000)": (lambda i: i.service["peak_rpm"] < 2000, None),
    "large traffic -> small": (lambda i: i.service["peak_rpm"] >= 2000, None),
    "few tasks -> many (8)": (lambda i: i.service["nominal_tasks"] < 8, None),
    "quiet metrics -> noisy (noise 1.0)": (lambda i: i.service["noise"] < 1.0, None),
    "long history -> short (7 days)": (lambda i: i.service["history_days"] >= 7, None),
    "csv: sampled every 1 min or coarser -> finer": (lambda i: not _fine(i.service), "csv"),
    "csv: sampled finer than 1 min -> 1 min or coarser": (lambda i: _fine(i.service), "csv"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-services", type=int, default=600)
    parser.add_argument("--test-services", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    playbook = load_playbook()
    train = generate_incidents(args.train_services, TRAIN_SEEDS, n_jobs=args.jobs).incidents
    test = generate_incidents(args.test_services, HOLDOUT_SEEDS, n_jobs=args.jobs).incidents
    rules = RuleClassifier(playbook)
    rows = []
    for name, (seen, form) in SHIFTS.items():
        # a csv shift trains on every other form too (what a user's model has), minus the
        # csv incidents of the other kind; it tests on the csv incidents of the other kind
        fit_on = [i for i in train if (seen(i) if form is None else (i.form != form or seen(i)))]
        test_on = [i for i in test if not seen(i) and (form is None or i.form == form)]
        model, _, _ = fit_linear([i.features for i in fit_on], [i.cause for i in fit_on], [i.seed for i in fit_on])
        classifier = TrainedClassifier(model, playbook)
        truths = [i.cause for i in test_on]
        decisions = classifier.diagnose_many([i.features for i in test_on])
        ours = evaluate("model", truths, [d.cause for d in decisions], playbook)
        base = evaluate("rules", truths, [rules.diagnose(i.features).root_cause for i in test_on], playbook)
        rows.append([name, len(fit_on), len(test_on), f"{ours.accuracy:.2%}", f"{ours.macro_f1:.3f}",
                     ours.harmful, ours.unknown, f"{base.accuracy:.2%}", base.harmful])
    print(tabulate(rows, headers=["trained on -> tested on", "train", "test", "accuracy", "macro-F1",
                                  "harmful (restart/rollback)", "unknown", "rules accuracy", "rules harmful"]))


if __name__ == "__main__":
    main()
