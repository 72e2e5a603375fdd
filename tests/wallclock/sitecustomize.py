"""Moves the wall clock of every Python process of a test run to another date (scripts/test_dates.sh).

Python imports ``sitecustomize`` at start-up from any folder on ``PYTHONPATH``, so with this
folder there and ``AIOPS_TEST_WALL_CLOCK_SHIFT`` set (seconds, may be negative), pytest, every
``aiops`` command a test starts, moto and the notebooks' kernels all see the same shifted date,
ticking on at real speed. time-machine moves only the wall clock (``time.time``, ``datetime.now``,
``Timestamp.now``, ...): monotonic clocks, lock timeouts and sleeps stay real, which libfaketime
could not promise (under it Python's lock timeouts never return and uvicorn never starts).
"""

from __future__ import annotations

import os

_SHIFT = os.environ.get("AIOPS_TEST_WALL_CLOCK_SHIFT")

if _SHIFT:
    import datetime as _dt

    import time_machine as _tm

    _destination = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=float(_SHIFT))
    _tm.travel(_destination, tick=True).start()
