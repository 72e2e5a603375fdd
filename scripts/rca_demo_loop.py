"""The root-cause model inside the whole demo loop, over several seeds.

Each seed runs ``aiops demo``'s scenario (moto as AWS, the simulated ECS service, the watcher
with baseline spreads and ECS context, the remediation, the verification 15 minutes later) with
the root-cause model every door uses: the one shipped with the package, or ``--model`` (a
``model-linear.json`` written by ``aiops train-rca``), copied where the data dir's retrained
model goes. It prints one row per fault. The demo's service and faults are the simulator's
fixed defaults, not the randomised ones the model was trained on, so this is a check out of
the training distribution.

    python scripts/rca_demo_loop.py [--model aiops-data/models/rca/model-linear.json] --seeds 7,11,23,42

About 2 minutes a seed on 2 cores. Nothing is trained.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from tabulate import tabulate

from harness.demo import run_demo
from service.diagnose import LINEAR_FILE, rca_bundle_dir
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="A linear model file (aiops train-rca); default: the shipped model.")
    parser.add_argument("--seeds", default="7,11,23,42", help="Comma-separated demo seeds.")
    parser.add_argument("--days", type=int, default=7, help="Days of simulated history.")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep each seed's incident log and reports under this folder.")
    args = parser.parse_args()
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    rows, correct, total, source = [], 0, 0, "shipped model"
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        for seed in [int(s) for s in args.seeds.split(",")]:
            settings = Settings(data_dir=Path(tmp) / f"seed-{seed}")
            if args.model is not None:
                rca_bundle_dir(settings).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.model, rca_bundle_dir(settings) / LINEAR_FILE)
                source = str(args.model)
            result = run_demo(settings, None, seed=seed, history_days=args.days, progress=lambda _: None)
            for r in result.rows:
                rows.append([seed, r.fault, r.expected_cause, r.root_cause, r.action, r.verification])
                correct += r.correct
                total += 1
    print(f"root-cause model: {source}")
    print(tabulate(rows, headers=["seed", "fault", "expected", "diagnosed", "action", "verification"]))
    print(f"\n{correct}/{total} faults diagnosed as the playbook says and verified resolved.")


if __name__ == "__main__":
    main()
