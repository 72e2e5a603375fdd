"""``aiops demo`` started at every hour of one day: the scorecard must not depend on the hour.

    python scripts/demo_hours.py                      # 2026-12-01, hours 0-23, 2 at a time
    python scripts/demo_hours.py --day 2026-12-05 --hours 0,6,12,18 --jobs 1

Each start runs the whole demo (15 days of history, the ensemble trained through the nightly
pipeline, the seven faults) in a process of its own, with its own local AWS endpoint and data
folder under ``--data-dir``; prints one line per start (faults handled, false alarms, the
faults that were not handled) and exits 1 if any start is below 7/7.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.demo import run_demo  # noqa: E402
from service.settings import Settings  # noqa: E402


def one_start(start: pd.Timestamp, data_dir: Path, seed: int) -> dict:
    """Run the demo from ``start``; its figures as a dict."""
    logging.getLogger("aiops").setLevel(logging.CRITICAL)
    logging.getLogger("mlflow").setLevel(logging.ERROR)   # one line per start, not MLflow's notes
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    started = time.monotonic()
    result = run_demo(Settings(data_dir=data_dir / f"{start:%Y%m%dT%H%M}"), seed=seed,
                      progress=lambda _: None, start=start)
    wrong = [f"{r.fault} ({r.root_cause}, {r.verification})" for r in result.rows if not r.correct]
    return {"start": start, "handled": sum(r.correct for r in result.rows), "faults": len(result.rows),
            "false_alarms": result.false_alarms, "wrong": wrong,
            "seconds": round(time.monotonic() - started)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", default="2026-12-01", help="the day (UTC) [2026-12-01, a Tuesday]")
    parser.add_argument("--hours", default=",".join(str(h) for h in range(24)),
                        help="comma-separated start hours [0-23]")
    parser.add_argument("--seed", type=int, default=7, help="the demo's seed [7]")
    parser.add_argument("--jobs", type=int, default=2, help="demos run at once [2]")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the runs go [a temporary folder]")
    args = parser.parse_args()
    try:
        day = pd.Timestamp(args.day, tz="UTC").floor("D")
        hours = [int(h) for h in args.hours.split(",")]
    except ValueError as exc:
        parser.error(str(exc))
    if any(not 0 <= h <= 23 for h in hours):
        parser.error("hours must be in 0..23")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="aiops-demo-hours-"))
    starts = [day + pd.Timedelta(hours=h) for h in hours]
    print(f"aiops demo at {len(starts)} start(s) on {day:%Y-%m-%d (%a)}; runs under {data_dir}", flush=True)
    rows = []
    jobs = (delayed(one_start)(s, data_dir, args.seed) for s in starts)
    for row in Parallel(n_jobs=args.jobs, return_as="generator")(jobs):
        rows.append(row)
        print(f"{row['start']:%Y-%m-%d %H:%M} UTC  {row['handled']}/{row['faults']}  "
              f"false alarms {row['false_alarms']}  ({row['seconds']} s)"
              + (f"  not handled: {'; '.join(row['wrong'])}" if row["wrong"] else ""), flush=True)
    full = sum(r["handled"] == r["faults"] for r in rows)
    print(f"{full}/{len(rows)} starts gave {rows[0]['faults']}/{rows[0]['faults']}")
    return 0 if full == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
