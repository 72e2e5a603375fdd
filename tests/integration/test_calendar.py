"""The calendar sweep's fast form: the matrix faults on a thin (3-day) history at the starts that
broke before (a Monday morning after a weekend, a Sunday night, a Wednesday afternoon), with the
per-metric baselines; and results that do not move with the date the suite runs on.

``aiops benchmark calendar`` plays the full sweep (7 weekdays x 4 hours x 3, 7, 14 days).
"""

from __future__ import annotations

import pandas as pd
import pytest
import time_machine
from botocore.retries.standard import ExponentialBackoff

from harness.calendarbench import Cell, run_calendar
from harness.faultbench import run_fault_benchmark
from simulation.faults import FAULTS

pytestmark = pytest.mark.integration
CELLS = [Cell(0, 7, 3), Cell(6, 22, 3), Cell(2, 14, 3)]   # Mon 07:00, Sun 22:00, Wed 14:00


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch) -> None:
    """botocore's backoff shortened; its attempts and decisions unchanged."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    try:
        return run_calendar(tmp_path_factory.mktemp("calendar"), CELLS, detector="robust_z",
                            quiet_minutes=60, n_jobs=2, progress=lambda _: None)
    finally:
        patch.undo()


def test_every_fault_is_handled_on_a_thin_history_whatever_the_weekday_and_hour(report) -> None:
    for cell in report.cells:
        outcomes = {s.fault: (s.root_cause, s.outcome) for s in cell.scenarios}
        assert cell.lost == 0 and cell.handled == len(FAULTS), (cell.weekday, cell.hour, outcomes)
    assert report.failures == []


def test_quiet_hours_raise_no_false_alarm(report) -> None:
    assert [c.false_alarms for c in report.cells] == [0, 0, 0]
    assert report.totals()[3]["false_alarms_per_day"] == 0


@pytest.mark.parametrize("wall", ["2026-11-27T09:00:00Z", "2027-06-13T23:30:00Z"])
def test_a_run_gives_the_same_result_whatever_the_date_it_happens_on(tmp_path, wall) -> None:
    """The fault benchmark with the wall clock frozen on another day and hour: same incidents."""
    pairs = [("throttling", "load_surge"), ("server_error", "error_trickle")]
    start = pd.Timestamp("2026-12-02T01:00:00Z")
    with time_machine.travel(pd.Timestamp(wall).to_pydatetime(), tick=True):
        moved = run_fault_benchmark(tmp_path / "moved", rate=0.0, pairs=pairs, start=start,
                                    progress=lambda _: None)
    again = run_fault_benchmark(tmp_path / "now", rate=0.0, pairs=pairs, start=start,
                                progress=lambda _: None)
    assert moved.scenarios == again.scenarios
    assert [s.outcome for s in again.scenarios] == ["remediated", "remediated"]
