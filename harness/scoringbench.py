"""``aiops benchmark scoring``: one fleet-wide tick, the ensemble against the baselines, in one run.

N simulated services of 5 metrics each, every one with its own fitted state stacked
(``detection.fleet.FleetScorer``): the ensemble (``ServiceDetector``) and the baselines only
(``RobustZDetector``), each service's tick a 16-minute read window of its own simulated values
(the watcher's window: the level shift and the forest's change feature look back on it) whose
newest minute is scored, as the watcher's tick keeps the anomalies of its newest minutes. Also
timed in the same run: today's path, each service's own ``ServiceDetector.score`` on a sample of
services, and the fleet scorer over the whole window; and every sampled service's scores from
the fleet scorer are checked against its own detector's (the largest difference is printed).

Fitting 2,000 ensembles takes most of an hour on 2 cores, so ``--models`` distinct fits (on
histories of different seeds) are shared round-robin by the N services; the scorer stacks one
copy of the state per service all the same, so the arrays, their size and the work per tick are
those of N distinct models. Each service has its own ``streaming`` member all the same (a
shallow copy: the fitted state is shared, the live stream is its own), and each timed tick
reads a window one minute on from the last, so the member moves its state on by one row per
metric and service, as under ``aiops watch`` (the first tick, from the end of training, is not
timed). CPU time is the process's (``time.process_time``), the figure the machine's other load
bends least; wall time is printed beside it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

END = pd.Timestamp("2026-11-16", tz="UTC")   # a Monday; the tick falls on the day after
WINDOW = 16                                    # minutes the watcher reads per tick


@dataclass(frozen=True)
class ScoringReport:
    services: int
    series: int
    models: int
    ticks: int
    stack_seconds: float
    ensemble_tick_cpu_ms: float
    ensemble_tick_wall_ms: float
    ensemble_tick_max_cpu_ms: float
    robust_z_tick_cpu_ms: float
    robust_z_tick_wall_ms: float
    ensemble_window_cpu_ms: float
    per_service_sample: int
    per_service_cpu_ms: float
    max_difference: float
    rss_mb: float
    member_state_mb: float

    def to_dict(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        per_service_fleet = self.per_service_cpu_ms * self.services
        rows = [
            ("ensemble, fleet scorer (newest minute)", self.ensemble_tick_cpu_ms, self.ensemble_tick_wall_ms),
            ("ensemble, its slowest tick (5-minute buckets close)", self.ensemble_tick_max_cpu_ms,
             float("nan")),
            ("robust_z, fleet scorer (newest minute)", self.robust_z_tick_cpu_ms, self.robust_z_tick_wall_ms),
            ("ensemble, fleet scorer (whole 16-minute window)", self.ensemble_window_cpu_ms, float("nan")),
            (f"ensemble, each service's own score() (x{self.services}, from {self.per_service_sample})",
             per_service_fleet, float("nan")),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{self.services:,} services x 5 metrics = {self.series:,} series per tick "
                 f"({self.models} distinct fitted models shared round-robin; {self.ticks} ticks a minute "
                 f"apart, median and slowest)",
                 f"{'scorer':<{width}}  {'CPU ms/tick':>12}  {'wall ms/tick':>12}"]
        for name, cpu, wall in rows:
            wall_text = "-" if np.isnan(wall) else f"{wall:,.1f}"
            lines.append(f"{name:<{width}}  {cpu:>12,.1f}  {wall_text:>12}")
        ratio = self.ensemble_tick_cpu_ms / max(self.robust_z_tick_cpu_ms, 1e-9)
        lines += [f"ratio ensemble / robust_z (fleet scorer, CPU): {ratio:.1f}x; "
                  f"fleet scorer against each service's own score(): "
                  f"{per_service_fleet / max(self.ensemble_tick_cpu_ms, 1e-9):.0f}x less CPU",
                  f"largest |fleet - own score()| over {self.per_service_sample} services' windows: "
                  f"{self.max_difference:.2e} (target <= 1e-6)",
                  f"target: every tick <= 1,000 ms CPU at 2,000 services: "
                  f"{'met' if self.ensemble_tick_max_cpu_ms * 2000 / self.services <= 1000 else 'NOT met'}"
                  f"{'' if self.services == 2000 else ' (scaled linearly to 2,000)'}",
                  f"stacking the state once (at start-up): {self.stack_seconds:.1f} s; the streaming "
                  f"member's live state: {self.member_state_mb:,.0f} MB "
                  f"({self.member_state_mb * 1e3 / max(self.series, 1):,.0f} kB a series); "
                  f"the process's memory after the ticks: {self.rss_mb:,.0f} MB"]
        return "\n".join(lines)


def _own(detector):
    """``detector`` as one service's: its streaming member a copy of its own (shared fitted
    state, its own live stream), the rest shared."""
    if "streaming" not in getattr(detector, "members_", {}):
        return detector
    mine = copy.copy(detector)
    mine.members_ = {**detector.members_, "streaming": copy.copy(detector.members_["streaming"])}
    return mine


def _median_cpu(run: Callable[[], object], ticks: int) -> tuple[float, float, float]:
    """Median CPU and wall ms of ``ticks`` runs, and the largest CPU ms."""
    cpu, wall = [], []
    for _ in range(ticks):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)) * 1e3, float(np.median(wall)) * 1e3, float(np.max(cpu)) * 1e3


def run_scoring_benchmark(services: int, models: int = 4, ticks: int = 10, sample: int = 20,
                          seed: int = 7, progress: Callable[[str], None] = lambda _: None) -> ScoringReport:
    """Fit, stack, score and compare (see the module docstring)."""
    from detection.ensemble import ServiceDetector
    from detection.fleet import FleetScorer
    from detection.zscore import RobustZDetector
    from models.codec import decode, encode
    from simulation.physics import ServiceShape, history

    progress(f"fitting {models} ensemble(s) and baselines on 14 days of simulated history ...")
    ensembles, baselines = [], []
    for i in range(models):
        past = history(END, 14, ServiceShape(), np.random.default_rng(seed + i))
        # as a service loads it: from its stored bundle state (the forest as node arrays)
        ensembles.append(decode(encode(ServiceDetector().fit(past))))
        baselines.append(RobustZDetector().fit(past))
    names = [f"bench--svc-{i:05d}" for i in range(services)]
    progress(f"stacking {services:,} services' state ...")
    started = time.process_time()
    fleet = FleetScorer({n: _own(ensembles[i % models]) for i, n in enumerate(names)})
    stack_seconds = time.process_time() - started
    tables = FleetScorer({n: baselines[i % models] for i, n in enumerate(names)})
    rng = np.random.default_rng(seed)
    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), rng)
    start = int(rng.integers(0, len(day) - WINDOW - ticks - 1))
    span = day.iloc[start:start + WINDOW + ticks]
    noise = rng.uniform(0.97, 1.03, size=(services, len(span), span.shape[1]))
    values = span.to_numpy() * noise
    for i in range(0, services, 50):  # some services are in trouble: a surge on the last minutes
        values[i, -4:, 0] *= 2.0

    def frames_at(tick: int) -> dict[str, pd.DataFrame]:
        """Every service's read window at ``tick`` (each tick one minute on)."""
        rows = slice(tick, tick + WINDOW)
        return {n: pd.DataFrame(values[i, rows], index=span.index[rows], columns=span.columns)
                for i, n in enumerate(names)}

    windows = [frames_at(t) for t in range(ticks + 1)]
    frames = windows[-1]
    progress(f"scoring {ticks} ticks of {services:,} services ...")
    fleet.score_stacked(windows[0], newest=1)  # the first tick after training (not timed)
    moving = iter(windows[1:])
    ens_cpu, ens_wall, ens_max = _median_cpu(lambda: fleet.score_stacked(next(moving), newest=1), ticks)
    rz_cpu, rz_wall, _ = _median_cpu(lambda: tables.score_stacked(frames, newest=1), ticks)
    whole_cpu, _, _ = _median_cpu(lambda: fleet.score_stacked(frames), max(1, ticks // 2))
    chosen = names[:: max(1, services // sample)][:sample]
    started = time.process_time()
    own = {n: fleet.detectors[n].score(frames[n]) for n in chosen}
    per_service = (time.process_time() - started) / len(chosen) * 1e3
    together = fleet.score({n: frames[n] for n in chosen})
    difference = max(float(np.nanmax(np.abs(together[n].to_numpy() - own[n].to_numpy())))
                     for n in chosen)
    import psutil

    rss = psutil.Process().memory_info().rss / 2**20
    return ScoringReport(services, services * 5, models, ticks, stack_seconds, ens_cpu, ens_wall, ens_max,
                         rz_cpu, rz_wall, whole_cpu, len(chosen), per_service, difference, rss,
                         _member_state_mb(fleet))


def _member_state_mb(fleet) -> float:
    """Megabytes of the streaming members' live state (their stacks' arrays)."""
    from detection.streaming import stacked_state_bytes

    return stacked_state_bytes() / 1e6
