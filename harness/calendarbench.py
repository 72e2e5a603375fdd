"""The calendar sweep: every matrix fault at start times over the whole week, on thin and full
histories, so no result depends on the day or hour a run happens on.

Each cell of the sweep is a start time (a weekday and an hour of one fixed week) and a history
length. A cell is one :class:`~harness.faultbench.FaultEnvironment` of its own: the simulated
service writes ``history_days`` of history ending at the start, the detector is trained on it
through the nightly pipeline, the service runs quiet for ``quiet_minutes`` (incidents opened
then are false alarms; a person closes them afterwards), and then each fault is played as the
fault benchmark plays it, while the platform's AWS calls fail the way one of the fault
benchmark's API fault plans says (the plans rotate over faults and cells, so every fault meets
every plan somewhere in the sweep).

A fault is *handled* when its incident names the expected root cause and ends remediated or
escalated to a person; *lost* when no incident of its own took it, or it never ended;
*misdiagnosed* when an incident took it with another cause. False alarms are incidents opened
in quiet minutes (the opening quiet spell and the short spell before each fault), reported per
simulated quiet day.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from tabulate import tabulate

from harness.faultbench import PLANS, QUIET_MINUTES, ApiFaultPlan, FaultEnvironment, ScenarioResult
from simulation.faults import FAULTS

WEEK_OF = pd.Timestamp("2026-11-30T00:00:00Z")   # a Monday: the sweep's week
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DEFAULT_HOURS = (1, 7, 13, 19)
DEFAULT_DAYS = (3, 7, 14)
DEFAULT_QUIET_MINUTES = 120
NO_API_FAULTS = ApiFaultPlan("none", "throttling", rate=0.0)
API_MODES = ("rotate", "none")


@dataclass(frozen=True)
class Cell:
    """One start time of the sweep and the history behind it."""

    weekday: int          # 0 = Monday
    hour: int
    history_days: int

    @property
    def start(self) -> pd.Timestamp:
        return WEEK_OF + pd.Timedelta(days=self.weekday, hours=self.hour)

    @property
    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:00, {self.history_days} d"


@dataclass(frozen=True)
class CellResult:
    """What one cell's faults came to."""

    weekday: str
    hour: int
    history_days: int
    start: str
    scenarios: list[ScenarioResult]
    false_alarms: int
    quiet_minutes: int
    seconds: float

    @property
    def handled(self) -> int:
        return sum(_handled(s) for s in self.scenarios)

    @property
    def lost(self) -> int:
        return sum(s.outcome == "lost" for s in self.scenarios)

    @property
    def misdiagnosed(self) -> int:
        return sum(s.outcome != "lost" and not _handled(s) for s in self.scenarios)

    def to_dict(self) -> dict:
        return asdict(self) | {"handled": self.handled, "lost": self.lost,
                               "misdiagnosed": self.misdiagnosed}


def _handled(s: ScenarioResult) -> bool:
    return s.outcome in ("remediated", "escalated") and s.root_cause == FAULTS[s.fault].expected_cause


@dataclass
class CalendarReport:
    cells: list[CellResult]
    detector: str
    api_faults: str
    seconds: float
    details: dict = field(default_factory=dict)

    def totals(self) -> dict[int, dict]:
        """Per history length: faults, handled, lost, misdiagnosed, false alarms per quiet day."""
        out: dict[int, dict] = {}
        for days in sorted({c.history_days for c in self.cells}):
            cells = [c for c in self.cells if c.history_days == days]
            quiet_days = sum(c.quiet_minutes for c in cells) / 1440
            alarms = sum(c.false_alarms for c in cells)
            out[days] = {"cells": len(cells), "faults": sum(len(c.scenarios) for c in cells),
                         "handled": sum(c.handled for c in cells), "lost": sum(c.lost for c in cells),
                         "misdiagnosed": sum(c.misdiagnosed for c in cells), "false_alarms": alarms,
                         "false_alarms_per_day": round(alarms / quiet_days, 2) if quiet_days else None}
        return out

    @property
    def failures(self) -> list[str]:
        """Cells that miss the bar: any fault lost or not handled, with 3 or more days of history."""
        return [f"{c.weekday} {c.hour:02d}:00, {c.history_days} d" for c in self.cells
                if c.history_days >= 3 and (c.lost or c.handled < len(c.scenarios))]

    def to_dict(self) -> dict:
        return {"detector": self.detector, "api_faults": self.api_faults, "seconds": self.seconds,
                "cells": [c.to_dict() for c in self.cells],
                "totals": {str(k): v for k, v in self.totals().items()}, "failures": self.failures,
                **self.details}


def sweep(weekdays: Iterable[int] = range(7), hours: Iterable[int] = DEFAULT_HOURS,
          history_days: Iterable[int] = DEFAULT_DAYS) -> list[Cell]:
    """Every (weekday, hour, history length) cell, in calendar order."""
    cells = [Cell(w, h, d) for d in history_days for w in weekdays for h in hours]
    for cell in cells:
        if not 0 <= cell.weekday <= 6 or not 0 <= cell.hour <= 23 or cell.history_days < 1:
            raise ValueError(f"bad cell {cell}: weekday 0-6, hour 0-23, history of at least a day")
    return cells


def play_cell(cell: Cell, index: int, data_dir: Path, detector: str, faults: Sequence[str],
              api_faults: str, rate: float, quiet_minutes: int, seed: int,
              log_level: int = logging.NOTSET) -> CellResult:
    """Play one cell in its own environment (and its own incident log under ``data_dir``).

    ``log_level``: the platform's log level in this (worker) process, the caller's by default.
    """
    logging.getLogger("aiops").setLevel(log_level)
    started = time.monotonic()
    plans = list(PLANS.values())
    folder = data_dir / f"{WEEKDAYS[cell.weekday]}-{cell.hour:02d}h-{cell.history_days}d"
    with FaultEnvironment(folder, cell.start, seed + index, cell.history_days,
                          detector=detector) as env:
        env.quiet(quiet_minutes)
        env.close_open()   # a person looks at the quiet spell's pages before the faults come
        rows = []
        for i, fault in enumerate(faults):
            plan = plans[(index + i) % len(plans)] if api_faults == "rotate" else NO_API_FAULTS
            rows.append(env.play(plan, fault, rate))
        return CellResult(WEEKDAYS[cell.weekday], cell.hour, cell.history_days, cell.start.isoformat(),
                          rows, env.false_alarms, quiet_minutes + QUIET_MINUTES * len(faults),
                          round(time.monotonic() - started, 1))


def run_calendar(data_dir: Path, cells: Sequence[Cell], detector: str = "ensemble",
                 faults: Sequence[str] = tuple(FAULTS), api_faults: str = "rotate", rate: float = 0.2,
                 quiet_minutes: int = DEFAULT_QUIET_MINUTES, seed: int = 11, n_jobs: int = 1,
                 progress: Callable[[str], None] = print) -> CalendarReport:
    """Play every cell (``n_jobs`` at a time, each in a process of its own) and collect them."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    if api_faults not in API_MODES:
        raise ValueError(f"api_faults must be one of {', '.join(API_MODES)}, got {api_faults!r}")
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if quiet_minutes < 0:
        raise ValueError(f"quiet_minutes cannot be negative, got {quiet_minutes}")
    started = time.monotonic()
    level = logging.getLogger("aiops").level   # worker processes start with logging's defaults
    jobs = (delayed(play_cell)(cell, i, data_dir, detector, tuple(faults), api_faults, rate,
                               quiet_minutes, seed, level) for i, cell in enumerate(cells))
    results = []
    for done in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
        results.append(done)
        progress(f"[{len(results)}/{len(cells)}] {done.weekday} {done.hour:02d}:00, "
                 f"{done.history_days} d: handled {done.handled}/{len(done.scenarios)}, lost {done.lost}, "
                 f"false alarms {done.false_alarms} ({done.seconds:.0f} s)")
    order = {(c.weekday, c.hour, c.history_days): i for i, c in enumerate(cells)}
    results.sort(key=lambda r: order[(WEEKDAYS.index(r.weekday), r.hour, r.history_days)])
    return CalendarReport(results, detector, api_faults, round(time.monotonic() - started, 1),
                          {"rate": rate, "quiet_minutes": quiet_minutes, "seed": seed,
                           "week_of": WEEK_OF.isoformat(), "log": str(data_dir)})


def render(report: CalendarReport) -> str:
    """One row per cell, then the totals per history length, as a person reads them."""
    out = io.StringIO()
    days = sorted({c.history_days for c in report.cells})
    by_slot: dict[tuple[str, int], dict[int, CellResult]] = {}
    for c in report.cells:
        by_slot.setdefault((c.weekday, c.hour), {})[c.history_days] = c
    rows = [[weekday, f"{hour:02d}:00", *[_cell_text(slot.get(d)) for d in days]]
            for (weekday, hour), slot in by_slot.items()]
    out.write(f"Calendar sweep: {report.detector} detector, API faults {report.api_faults}; each cell "
              "'handled/faults, lost, false alarms'\n")
    out.write(tabulate(rows, headers=["weekday", "start", *[f"{d} d of history" for d in days]],
                       tablefmt="simple") + "\n\n")
    totals = [[d, t["cells"], f"{t['handled']}/{t['faults']}", f"{t['handled'] / t['faults']:.0%}",
               t["lost"], t["misdiagnosed"], t["false_alarms"], t["false_alarms_per_day"]]
              for d, t in report.totals().items()]
    out.write(tabulate(totals, headers=["history (d)", "cells", "handled", "share", "lost", "misdiagnosed",
                                        "false alarms", "per quiet day"], tablefmt="simple") + "\n")
    out.write(f"{len(report.cells)} cells in {report.seconds:.0f} s\n")
    return out.getvalue()


def _cell_text(cell: CellResult | None) -> str:
    if cell is None:
        return "-"
    return f"{cell.handled}/{len(cell.scenarios)}, {cell.lost}, {cell.false_alarms}"
