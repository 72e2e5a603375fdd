"""Does the root-cause classifier carry over to services unlike the ones it was trained on?

Simulates training and held-out incidents as ``aiops benchmark rca`` does, then trains only on
the services of one kind and tests on the services of the other: small traffic -> large traffic,
large -> small, few tasks -> many, quiet metrics -> noisy ones, long history -> short. Prints
accuracy, macro-F1 and harmful actions per shift, with the rule-only baseline on the same test.

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
from training.rca_train import fit_classifier

SHIFTS = {
    "small traffic -> large (peak rpm 2,000)": lambda s: s["peak_rpm"] < 2000,
    "large traffic -> small": lambda s: s["peak_rpm"] >= 2000,
    "few tasks -> many (8)": lambda s: s["nominal_tasks"] < 8,
    "quiet metrics -> noisy (noise 1.0)": lambda s: s["noise"] < 1.0,
    "long history -> short (7 days)": lambda s: s["history_days"] >= 7,
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
    for name, seen in SHIFTS.items():
        fit_on = [i for i in train if seen(i.service)]
        test_on = [i for i in test if not seen(i.service)]
        model = TrainedClassifier(fit_classifier([i.features for i in fit_on], [i.cause for i in fit_on]),
                                  playbook)
        truths = [i.cause for i in test_on]
        decisions = model.diagnose_many([i.features for i in test_on])
        ours = evaluate("model", truths, [d.cause for d in decisions], playbook)
        base = evaluate("rules", truths, [rules.diagnose(i.features).root_cause for i in test_on], playbook)
        rows.append([name, len(fit_on), len(test_on), f"{ours.accuracy:.2%}", f"{ours.macro_f1:.3f}",
                     ours.harmful, ours.unknown, f"{base.accuracy:.2%}", base.harmful])
    print(tabulate(rows, headers=["trained on -> tested on", "train", "test", "accuracy", "macro-F1",
                                  "harmful", "unknown", "rules accuracy", "rules harmful"]))


if __name__ == "__main__":
    main()
