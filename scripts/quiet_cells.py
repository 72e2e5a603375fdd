"""Anomalies the ensemble finds in quiet hours after a history ending at each start of the week.

For every weekday and hour of the calendar sweep's week (2026-11-30), the simulated service
writes ``--days`` of history ending at that start, ``ServiceDetector`` is fitted on it, and the
next four quiet hours are scored: a quiet service should give no anomaly. Says whether the
streaming member is in the ensemble (it needs 8 days) and which metrics were flagged.

    python scripts/quiet_cells.py --days 8     # the member's least history: 28 of 28 quiet

(Before the member needed 8 days, 7 days ending Monday 13:00 gave 173 anomalies here: the member
judged a normal Monday by the weekend.)
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from detection.ensemble import ServiceDetector
from harness.calendarbench import DEFAULT_HOURS, WEEK_OF, WEEKDAYS
from simulation.physics import Conditions, ServiceShape, history, normal_load, service_metrics


def quiet_anomalies(start: pd.Timestamp, days: int, seed: int) -> tuple[bool, list]:
    """(member on, anomalies in the four quiet hours after ``start``)."""
    shape, rng = ServiceShape(), np.random.default_rng(seed)
    past = history(start, days, shape, rng)
    index = pd.date_range(start, periods=240, freq="min")
    cond = Conditions(load=normal_load(index, shape), tasks=np.full(len(index), shape.nominal_tasks))
    quiet = service_metrics(index, cond, shape, rng)
    detector = ServiceDetector().fit(past)
    found = [a for a in detector.detect(pd.concat([past.iloc[-15:], quiet])) if a.timestamp >= start]
    return "streaming" in detector.members_, found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    quiet = 0
    for w, day in enumerate(WEEKDAYS):
        for hour in DEFAULT_HOURS:
            member, found = quiet_anomalies(WEEK_OF + pd.Timedelta(days=w, hours=hour), args.days, args.seed)
            quiet += not found
            print(f"{day} {hour:02d}:00, {args.days} d, member {'on' if member else 'off'}: "
                  f"{len(found)} anomalies {sorted({a.metric for a in found})}", flush=True)
    print(f"{quiet} of {len(WEEKDAYS) * len(DEFAULT_HOURS)} starts quiet")


if __name__ == "__main__":
    main()
