"""A simulated clock: many simulated minutes per wall-clock second."""

from __future__ import annotations

import pandas as pd


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
