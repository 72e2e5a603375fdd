"""The one clock production code reads "now" from.

Every door (CLI, HTTP API, Lambda handlers, watcher) takes its time from a :class:`Clock` made
here, never from ``datetime.now`` or ``Timestamp.now`` itself, so tests and simulations can
hand in their own (``simulation.clock.SimClock`` is one) and no result depends on the date or
hour a run happens on.

``SystemClock`` is the wall clock in UTC, optionally shifted by a fixed offset: a live
simulator started at another instant (``aiops simulate run --start``) prints the offset, and
every command run with ``AIOPS_CLOCK_OFFSET_SECONDS`` set to it agrees with the simulator
about what time it is.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd


class Clock(Protocol):
    """Anything that answers "what time is it?" as an aware UTC timestamp."""

    def __call__(self) -> pd.Timestamp: ...


class SystemClock:
    """The wall clock in UTC, shifted by ``offset`` (zero by default)."""

    def __init__(self, offset: pd.Timedelta | float = 0.0):
        self.offset = offset if isinstance(offset, pd.Timedelta) else pd.Timedelta(seconds=offset)

    def __call__(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC") + self.offset

    def __repr__(self) -> str:
        return f"SystemClock(offset={self.offset})"


def utc(value: str | pd.Timestamp) -> pd.Timestamp:
    """``value`` (ISO 8601 text or a timestamp) as an aware UTC timestamp; naive means UTC.

    Raises ValueError naming the value when it is not a time.
    """
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an ISO 8601 time: {value!r} ({exc})") from None
    if ts is pd.NaT:
        raise ValueError(f"not an ISO 8601 time: {value!r}")
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
