"""A series' timestamps with what scoring reads of them, worked out once per distinct list.

A ``POST /v1/score`` of 20 services x 5 metrics carries 100 timestamp lists, and usually one
or 20 distinct ones (a service's metrics share their minutes; a fleet's services their tick).
Parsing each list again, converting it to epoch seconds and building its DatetimeIndex was the
largest share of checking a request. ``remembered`` keeps the parsed lists of short windows
(the ones a request carries many of) by their text, so the same text gets the same
``Timestamps``: parsed, converted and indexed once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

REMEMBER_POINTS = 60     # lists this long at most are remembered (a long series pays once anyway)
REMEMBER_LISTS = 4_096   # distinct lists kept; the oldest one goes first


def seconds_of(timestamps: Sequence[datetime]) -> np.ndarray:
    """Aware timestamps as epoch seconds."""
    return np.fromiter((t.timestamp() for t in timestamps), dtype=float, count=len(timestamps))


class Timestamps(tuple):
    """Aware datetimes (immutable, so one object can serve every series and request that sends
    them) with their epoch seconds, whether they strictly increase, and their DatetimeIndex."""

    seconds: np.ndarray
    increasing: bool

    def __new__(cls, stamps: Iterable[datetime]) -> "Timestamps":
        self = super().__new__(cls, stamps)
        seconds = seconds_of(self)
        seconds.flags.writeable = False
        self.seconds = seconds
        self.increasing = bool((np.diff(seconds) > 0).all())
        return self

    @functools.cached_property
    def key(self) -> tuple[bytes, tuple]:
        """Equal for lists of the same instants written with the same UTC offsets (equal
        datetimes at other offsets are other text and another index)."""
        return self.seconds.tobytes(), tuple(t.utcoffset() for t in self)

    @functools.cached_property
    def index(self) -> pd.DatetimeIndex:
        """The timestamps as a DatetimeIndex (in their own time zone), made on first use."""
        return pd.DatetimeIndex(list(self))


_KNOWN: dict[tuple[str, ...], Timestamps] = {}
_KNOWN_LOCK = threading.Lock()


def as_timestamps(stamps: Iterable[datetime]) -> Timestamps:
    """``stamps`` as ``Timestamps`` (themselves when they already are)."""
    return stamps if isinstance(stamps, Timestamps) else Timestamps(stamps)


def remembered(value: Any, parse: Callable[[Any], list[datetime]]) -> Timestamps:
    """``Timestamps(parse(value))``, the same object again for the same short list of strings.

    ``parse`` (pydantic's own validation of the field) runs only for a list not seen before;
    what it refuses is never remembered."""
    if not (isinstance(value, list) and len(value) <= REMEMBER_POINTS
            and all(type(v) is str for v in value)):
        return Timestamps(parse(value))
    key = tuple(value)
    known = _KNOWN.get(key)
    if known is None:
        known = Timestamps(parse(value))
        with _KNOWN_LOCK:
            if len(_KNOWN) >= REMEMBER_LISTS:
                _KNOWN.pop(next(iter(_KNOWN)), None)
            _KNOWN[key] = known
    return known
