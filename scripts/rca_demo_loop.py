"""The trained root-cause classifier inside the whole demo loop, over several seeds.

Each seed runs ``aiops demo``'s scenario (moto as AWS, the simulated ECS service, the watcher
with baseline spreads and ECS context, the remediation, the verification 15 minutes later) with
the trained classifier in place of the rules, and prints one row per fault. The demo's service
and faults are the simulator's fixed defaults, not the randomised ones the classifier was
trained on, so this is a check out of the training distribution.

    python scripts/rca_demo_loop.py --bundle aiops-data/models/rca --seeds 7,11,23,42

About 2 minutes a seed on 2 cores. Without ``--bundle`` a classifier is trained first (2 min).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from tabulate import tabulate

from harness.demo import run_demo
from rca.playbook import load_playbook
from service.diagnose import train_rca
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="A trained classifier bundle.")
    parser.add_argument("--seeds", default="7,11,23,42", help="Comma-separated demo seeds.")
    parser.add_argument("--days", type=int, default=7, help="Days of simulated history.")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep each seed's incident log and reports under this folder.")
    args = parser.parse_args()
    rows, correct, total = [], 0, 0
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        bundle = args.bundle
        if bundle is None:
            settings = Settings(data_dir=Path(tmp) / "train")
            _, _, bundle = train_rca(settings, load_playbook(settings.playbook), progress=print)
        for seed in [int(s) for s in args.seeds.split(",")]:
            data_dir = Path(tmp) / f"seed-{seed}"
            shutil.copytree(bundle, data_dir / "models" / "rca")
            result = run_demo(Settings(data_dir=data_dir), None, seed=seed, history_days=args.days,
                              progress=lambda _: None)
            for r in result.rows:
                rows.append([seed, r.fault, r.expected_cause, r.root_cause, r.action, r.verification])
                correct += r.correct
                total += 1
    print(tabulate(rows, headers=["seed", "fault", "expected", "diagnosed", "action", "verification"]))
    print(f"\n{correct}/{total} faults diagnosed as the playbook says and verified resolved.")


if __name__ == "__main__":
    main()
