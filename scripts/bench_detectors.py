"""Benchmark the platform's detectors on the simulated ECS service; prints its figures.

Two parts, both on 14 days of one-minute history for the 5 canonical metrics from
``simulation.physics.history``:

1. Speed: fit time on the history, score time for one day (1,440 minutes), and one live tick
   (scoring the 16-minute read window, as the watcher does), for every detector.
2. Faults: each fault of ``simulation.faults`` is played through ``service_metrics`` with
   ``Conditions`` (nominal tasks, nobody remediating) at 14 start times (every day of the week
   after the history, at 04:00 and 15:00 UTC: the load's trough and peak). Each detector's
   per-point decisions on the health metrics are grouped by the watcher's rule (2 anomalous
   minutes within 3 minutes open an alarm; 15 minutes of quiet close it). Delay is minutes
   from the fault's first minute to the alarm. False alarms are the alarms raised on 7 normal
   days after the history (the same week, no faults).

Every scenario is scored on its own: the streaming member's live state starts again from the
end of training for each (``reset``), as if that scenario followed the history directly.

Usage: ``python scripts/bench_detectors.py [--seed N] [--variants] [--stl]``. ``--variants``
adds the ensemble with one member at a time and the ``mean`` combiner; ``--stl`` times the STL
set-ups weighed for the seasonal model (robust STL at period 1440 is left out: over 2 minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection.ensemble import EnsembleConfig, ServiceDetector  # noqa: E402
from detection.iforest import IsolationForestDetector  # noqa: E402
from detection.metrics import spec_for  # noqa: E402
from detection.postprocess import AlarmGrouper, GroupingConfig  # noqa: E402
from detection.seasonal import SeasonalResidualDetector  # noqa: E402
from detection.zscore import RobustZDetector  # noqa: E402
from simulation.faults import FAULTS, Fault  # noqa: E402
from simulation.physics import Conditions, ServiceShape, history, normal_load, service_metrics  # noqa: E402
from simulation.simulator import OVERLOAD_SHARE  # noqa: E402

END = pd.Timestamp("2026-11-16", tz="UTC")  # a Monday: the history covers two full weeks
WATCHER_RULE = GroupingConfig(min_points=2, window="3min", cooldown="15min")
LEAD = pd.Timedelta(hours=2)
OPEN_ENDED = 60  # minutes a fault with no duration is watched
TICK_ROWS = 16   # the watcher's read window: 15 minutes and the current one


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class Flags:
    """Per-point decisions of one detector on a frame: scores above its threshold."""

    def __init__(self, name: str, make):
        self.name, self.make = name, make

    def fit(self, hist: pd.DataFrame) -> float:
        self.model, seconds = timed(lambda: self.make().fit(hist))
        return seconds

    def scores(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
        """Scores of an independent scenario: a stateful member starts again from training."""
        if hasattr(self.model, "reset"):
            self.model.reset()
        return self.model.score(frame), self.model.threshold

    def alarms(self, frame: pd.DataFrame):
        scores, threshold = self.scores(frame)
        health = [m for m in scores.columns if spec_for(m).health]
        return AlarmGrouper(WATCHER_RULE).group(scores[health], threshold)


def scaled(fault: Fault, magnitude: float) -> Fault:
    """``fault`` with every effect multiplied by ``magnitude`` (1 = as the simulator plays it)."""
    return replace(fault, load_factor=1 + (fault.load_factor - 1) * magnitude,
                   overload_errors=fault.overload_errors * magnitude,
                   leak_per_minute=fault.leak_per_minute * magnitude,
                   extra_errors=fault.extra_errors * magnitude,
                   deploy_errors=fault.deploy_errors * magnitude,
                   latency_add=fault.latency_add * magnitude)


def fault_frame(fault: Fault, start: pd.Timestamp, rng: np.random.Generator,
                shape: ServiceShape) -> tuple[pd.DataFrame, int]:
    """Metrics from ``LEAD`` before ``start`` to the fault's end, with the fault applied.

    Tasks stay nominal (nobody remediates). Overload errors use the simulator's rule with the
    unscaled fault's full overload (a third of the traffic surge still times requests out).
    """
    minutes = fault.duration or OPEN_ENDED
    index = pd.date_range(start - LEAD, start + pd.Timedelta(minutes=minutes - 1), freq="1min")
    on = (index >= start).astype(float)
    since = np.maximum((index - start) / pd.Timedelta(minutes=1) + 1, 0) * on
    load = normal_load(index, shape) * (1 + (fault.load_factor - 1) * on)
    share = 1 + (fault.load_factor - 1) * on
    span = max(fault.load_factor - OVERLOAD_SHARE, 1e-9)
    overload = fault.overload_errors * np.clip((share - OVERLOAD_SHARE) / span, 0, 1)
    cond = Conditions(load=load, tasks=np.full(len(index), shape.nominal_tasks),
                      leaked_memory=fault.leak_per_minute * since,
                      fault_errors=(fault.extra_errors + fault.deploy_errors) * on + overload,
                      latency_add=fault.latency_add * on)
    return service_metrics(index, cond, shape, rng), minutes


def stl_options(hist: pd.DataFrame) -> list[list]:
    """Fit time of the STL set-ups weighed for SeasonalResidualDetector, on one metric."""
    import warnings

    from statsmodels.tsa.seasonal import MSTL, STL

    one = hist["cpu_utilization"].to_numpy()
    five = hist["cpu_utilization"].resample("5min").mean().to_numpy()
    jumps = {"seasonal_jump": 5, "trend_jump": 50, "low_pass_jump": 50}
    options = [
        ("STL 1-min, period 1440, robust, jumps 5/100/100",
         lambda: STL(one, period=1440, robust=True, seasonal_jump=5, trend_jump=100,
                     low_pass_jump=100).fit()),
        ("STL 5-min, period 288", lambda: STL(five, period=288).fit()),
        ("STL 5-min, period 288, robust", lambda: STL(five, period=288, robust=True).fit()),
        ("STL 5-min, period 288, robust, jumps 5/50/50 (chosen)",
         lambda: STL(five, period=288, robust=True, **jumps).fit()),
        ("MSTL 5-min, periods 288 + 2016 (weekly dropped)", lambda: MSTL(five, periods=(288, 2016)).fit()),
    ]
    rows = []
    for name, fit in options:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, seconds = timed(fit)
        rows.append([name, f"{seconds:.2f}"])
    return rows


def speed(detectors: list[Flags], hist: pd.DataFrame, day: pd.DataFrame) -> list[list]:
    """Fit, one day scored at once, and 30 watcher ticks in a row (each read window one minute
    on from the last, as ``aiops watch`` reads them)."""
    rows = []
    for det in detectors:
        fit_s = det.fit(hist)
        _, score_s = timed(lambda det=det: det.scores(day))
        det.scores(day.iloc[:TICK_ROWS])  # the first tick after training
        ticks = [timed(lambda i=i, det=det: det.model.score(day.iloc[i:i + TICK_ROWS]))[1]
                 for i in range(1, 31)]
        rows.append([det.name, f"{fit_s:.2f}", f"{score_s:.3f}", f"{1000 * np.median(ticks):.0f}"])
    return rows


def faults_table(detectors: list[Flags], seed: int, shape: ServiceShape,
                 magnitude: float) -> tuple[list[list], dict]:
    starts = [END + pd.Timedelta(days=d, hours=h) for d in range(7) for h in (4, 15)]
    rng = np.random.default_rng(seed + 1)
    faults = [scaled(f, magnitude) for f in FAULTS.values()]
    played = [(fault, start, *fault_frame(fault, start, rng, shape))
              for fault in faults for start in starts]
    rows, early = [], {d.name: 0 for d in detectors}
    for fault in faults:
        row = [fault.name]
        for det in detectors:
            delays = []
            for f, start, frame, minutes in played:
                if f is not fault:
                    continue
                alarms = det.alarms(frame)
                early[det.name] += sum(a.opened_at < start for a in alarms)
                hit = [a for a in alarms if start <= a.opened_at < start + pd.Timedelta(minutes=minutes)]
                if hit:
                    delays.append((hit[0].opened_at - start) / pd.Timedelta(minutes=1))
            found = f"{len(delays)}/{len(starts)}"
            row.append(f"{found}, {np.median(delays):.0f} min" if delays else f"{found}, -")
        rows.append(row)
    return rows, early


def quiet_alarms(detectors: list[Flags], seed: int, shape: ServiceShape) -> list:
    week = history(END + pd.Timedelta(days=7), 7, shape, np.random.default_rng(seed + 2))
    return [len(det.alarms(week)) for det in detectors]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stl", action="store_true",
                        help="also time the STL set-ups weighed for the seasonal model")
    parser.add_argument("--variants", action="store_true",
                        help="also run the ensemble with one member at a time and the mean combiner")
    args = parser.parse_args(argv)
    shape = ServiceShape()
    hist = history(END, 14, shape, np.random.default_rng(args.seed))
    day = history(END + pd.Timedelta(days=1), 1, shape, np.random.default_rng(args.seed + 3))

    members = [Flags("SeasonalResidualDetector", SeasonalResidualDetector),
               Flags("IsolationForestDetector", IsolationForestDetector)]
    without = {m: w for m, w in EnsembleConfig().members.items() if m != "streaming"}
    compared = [Flags("RobustZDetector (z > 4)", RobustZDetector),
                Flags("ServiceDetector, streaming member off", lambda: ServiceDetector({"members": without})),
                Flags("ServiceDetector (default)", ServiceDetector)]
    if args.variants:
        for name, config in (("ensemble, zscore only", {"members": {"zscore": 1.0}}),
                             ("ensemble, seasonal only", {"members": {"seasonal": 1.0}}),
                             ("ensemble, iforest only", {"members": {"iforest": 1.0}}),
                             ("ensemble, streaming only", {"members": {"streaming": 1.0}}),
                             ("ensemble, mean combiner", {"combiner": "mean"})):
            compared.append(Flags(name, lambda config=config: ServiceDetector(config)))

    print(f"history: {len(hist):,} one-minute points x {hist.shape[1]} metrics "
          f"({hist.index[0]:%Y-%m-%d} to {hist.index[-1]:%Y-%m-%d}), seed {args.seed}\n")
    if args.stl:
        print("STL set-ups on one metric (seconds)")
        print(tabulate(stl_options(hist), headers=["set-up", "fit"], tablefmt="github"))
        print()
    print(f"Speed (seconds; tick = score the {TICK_ROWS}-minute read window, median of 30, in ms)")
    print(tabulate(speed(members[:1] + members[1:] + compared, hist, day),
                   headers=["detector", "fit 14 d", "score 1 d", "tick ms"], tablefmt="github"))
    print()
    headers = ["fault"] + [d.name for d in compared]
    quiet = quiet_alarms(compared, args.seed, shape)
    rows = [["false alarms, 7 normal days"] + [str(q) for q in quiet]]
    for magnitude in (1.0, 1 / 3):
        found, early = faults_table(compared, args.seed, shape, magnitude)
        rows += [[f"{r[0]} x{magnitude:.2g}"] + r[1:] for r in found]
        rows.append([f"false alarms, 2 h before each fault x{magnitude:.2g} (84 windows)"]
                    + [str(early[d.name]) for d in compared])
    print("Faults at full and a third of their effect: detected/played, median delay in minutes "
          "to the alarm (2 anomalous minutes within 3)")
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    main()
