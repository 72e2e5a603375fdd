"""A simulated clock: many simulated minutes per wall-clock second."""

from __future__ import annotations

import pandas as pd

# Where simulations start unless told otherwise: a fixed instant, so a run gives the same result
# whatever the date it happens on (a Wednesday 01:00 UTC, after a weekend in a 3-day history).
DEFAULT_START = pd.Timestamp("2026-12-02T01:00:00Z")


class SimClock:
    """Holds simulated 'now' (UTC, whole minutes) and moves it on when told to."""

    def __init__(self, start: pd.Timestamp):
        start = pd.Timestamp(start)
        self.now = (start.tz_localize("UTC") if start.tz is None else start.tz_convert("UTC")).floor("min")

    def advance(self, minutes: int = 1) -> pd.Timestamp:
        self.now = self.now + pd.Timedelta(minutes=minutes)
        return self.now

    def __call__(self) -> pd.Timestamp:
        return self.now
