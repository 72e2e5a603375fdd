"""What the harness's commands share: ``--start``, the simulated instant a run begins at."""

from __future__ import annotations

import click
import pandas as pd

from service.cli.common import UtcTime
from simulation.clock import DEFAULT_START


def start_option(default: pd.Timestamp = DEFAULT_START,
                 help: str = "Simulated start (ISO 8601; UTC when it has no offset): the history "
                             "ends and the faults begin here, so a run gives the same result "
                             "whatever the date it happens on."):
    """``--start``: the simulated instant a simulation, benchmark or demo begins at."""
    return click.option("--start", type=UtcTime(), default=default.isoformat(), show_default=True,
                        help=help)
