"""The streaming detector's state, updated one row at a time: the live path.

``StreamingUnivariateDetector.fit_predict_stream`` scores a whole series at once (vectorised,
for replays and the NAB benchmark). A watcher cannot replay a month of history each minute,
so ``StreamState`` carries what the detector needs from the past (the last ``history`` of
values and timestamps, the last day of residuals, the channels' own histories for the rarity
ranking, the alarm suppression's memory) and ``update(value, timestamp)`` scores one new row
from it and moves it on. Warmed from a batch run (``StreamingUnivariateDetector.stream_state``)
and then fed row by row, it gives the scores the batch run would have given for the longer
series (``tests/unit/test_streaming_state.py``; ``aiops benchmark nab`` checks it on three
files), so what the benchmark measures is what runs live.

The state is plain data: ``to_dict()`` gives JSON-ready settings (``config``), a few
scalars and fixed-length float arrays, oldest row first and padded with NaN at the front while
fewer rows have been seen (``compact=True``: the rows seen only, what a model bundle stores);
``from_dict`` reads either back. No pickle, and series with the same settings and sampling
period have arrays of the same shapes, so states can be stacked.

Cost: one row costs a few dozen numpy calls on arrays of at most ``history`` rows (about 0.1 ms
at 5-minute sampling, 0.3 ms at one-minute). Internally the arrays are rings indexed by row
number; ``to_dict`` unrolls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826
MAX_EXCESS = 1000.0
STEP_ROWS = 25  # the seasonal look-up's tolerance is the median of this many recent steps

# arrays of the state, each with how its length is set (see StreamState.lengths)
ARRAYS = ("x", "seconds", "around", "residuals", "absolute", "z", "shift", "sustained", "surprise")
SCALARS = ("present", "rows", "max_seconds", "since_report", "last_report", "abs_sum", "abs_count",
           "shift_count", "sustained_count")


@dataclass(frozen=True)
class StreamConfig:
    """Every setting ``update`` needs, in rows (the detector's durations at its sampling)."""

    step: float  # the sampling period, seconds
    window: int
    history: int
    shift_windows: tuple[int, ...]
    sustained_window: int
    refractory: int
    warmup: int
    seasonal_half_width: int
    periods: tuple[float, ...]  # seasonal periods, seconds
    cycles: int
    z_clip: float
    range_tolerance: float
    tail_index: float
    min_gain: float
    score_scale: float
    reference_step: float
    min_z: float = 0.0  # states saved before it existed judged every row by its channels alone

    @property
    def unit(self) -> float:
        return self.step / self.reference_step

    @property
    def min_periods(self) -> int:
        return max(3, self.window // 10)

    @property
    def min_reference(self) -> int:
        return max(2, self.warmup // 2)

    @property
    def reach(self) -> int:
        """Rows of values and timestamps kept: the range's history, and every seasonal look-up
        (the longest period times the cycles, with a day's slack for uneven sampling)."""
        seasonal = max((p * self.cycles for p in self.periods), default=0.0)
        return max(self.history, int(math.ceil(seasonal / self.step)) + self.window
                   + 2 * self.seasonal_half_width + STEP_ROWS)

    def lengths(self) -> dict[str, tuple[int, ...]]:
        z = max(max(self.shift_windows), self.sustained_window)
        return {"x": (self.reach,), "seconds": (self.reach,), "around": (self.reach,),
                "residuals": (1 + len(self.periods), self.window), "absolute": (self.history,),
                "z": (z,), "shift": (self.history - 1,), "sustained": (self.history - 1,),
                "surprise": (self.refractory,)}

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "StreamConfig":
        values = dict(data)
        values["shift_windows"] = tuple(sorted(int(k) for k in values["shift_windows"]))
        values["periods"] = tuple(float(p) for p in values["periods"])
        return cls(**values)


@dataclass(frozen=True)
class RowScore:
    """What ``update`` says about one row (the batch run's ``evidence_`` row, and its score)."""

    score: float  # in [0, 1): the reported surprise, scaled (0 where the alarm is suppressed)
    surprise: float  # the largest channel surprise, before suppression
    residual: float  # value minus expectation (NaN for a missing value or no expectation yet)
    z: float  # the standardised residual (NaN in the warm-up)
    range: float
    shift: float
    sustained: float


def _ring_last(ring: np.ndarray, end: int, count: int) -> np.ndarray:
    """The ``count`` entries of a ring (last axis) before row number ``end``, oldest first."""
    size = ring.shape[-1]
    count = min(count, end, size)
    if count <= 0:
        return ring[..., :0]
    start = (end - count) % size
    stop = end % size
    if start < stop or stop == 0:
        return ring[..., start:start + count]
    return np.concatenate([ring[..., start:], ring[..., :stop]], axis=-1)




class StreamState:
    """The detector's memory after some rows; ``update`` scores the next one.

    Build it with ``StreamingUnivariateDetector.stream_state()`` after a batch run, or
    ``StreamState.from_dict`` from stored data.
    """

    def __init__(self, config: StreamConfig, arrays: dict[str, np.ndarray], scalars: dict[str, float],
                 copy: bool = True):
        """``copy=False``: ``arrays`` are float64 rings this state moves in place (the rows of a
        ``detection.streaming_stack.StreamStack``), not oldest-first data to copy."""
        self.config = config
        lengths = config.lengths()
        for name in ARRAYS:
            if arrays[name].shape != lengths[name]:
                raise ValueError(f"state array {name!r} has shape {arrays[name].shape}, "
                                 f"expected {lengths[name]} for these settings")
        self._a = {k: np.array(v, dtype=float) for k, v in arrays.items()} if copy else dict(arrays)
        self.present = int(scalars["present"])  # non-missing rows seen
        self.rows = int(scalars["rows"])  # all rows seen, missing ones too
        self.max_seconds = float(scalars["max_seconds"])
        self.since_report = int(scalars["since_report"])  # rows since the last reported alarm
        self.last_report = float(scalars["last_report"])  # its surprise (-inf: none yet)
        self.abs_sum = float(scalars["abs_sum"])  # running sum and count of |residual| over history
        self.abs_count = int(scalars["abs_count"])
        self.shift_count = int(scalars["shift_count"])  # non-missing channel values held
        self.sustained_count = int(scalars["sustained_count"])
        self._reach = config.reach
        self._z_rows = self._a["z"].shape[0]
        self._range = None  # (high, low) of the last ``history`` values, kept while it can be

    # ----------------------------------------------------------------------------- plain data
    def to_dict(self, compact: bool = False) -> dict:
        """``{"config": {...}, "scalars": {...}, "arrays": {name: ndarray}}``, oldest row first:
        each array at its full length, padded with NaN at the front while fewer rows have been
        seen, or (``compact``) only the rows seen; ``from_dict`` reads either."""
        arrays = {}
        ends = {"x": self.present, "seconds": self.present, "around": self.present, "residuals": self.present,
                "absolute": self.present, "z": self.present, "shift": self.present,
                "sustained": self.present, "surprise": self.rows}
        for name, ring in self._a.items():
            size = ring.shape[-1]
            end = ends[name]
            last = _ring_last(ring, end, size)
            if compact:
                arrays[name] = np.array(last)
                continue
            pad = np.full(ring.shape[:-1] + (size - last.shape[-1],), np.nan)
            arrays[name] = np.concatenate([pad, last], axis=-1)
        scalars = {"present": self.present, "rows": self.rows, "max_seconds": self.max_seconds,
                   "since_report": self.since_report, "last_report": self.last_report,
                   "abs_sum": self.abs_sum, "abs_count": self.abs_count,
                   "shift_count": self.shift_count, "sustained_count": self.sustained_count}
        return {"config": self.config.to_dict(), "scalars": scalars, "arrays": arrays}

    @classmethod
    def from_dict(cls, data: dict) -> "StreamState":
        """The state ``to_dict`` wrote (arrays oldest first: NaN-padded at the front to their
        full length, or ``compact``, the rows seen only)."""
        try:
            config = StreamConfig.from_dict(data["config"])
            scalars = data["scalars"]
            stored = {k: np.asarray(data["arrays"][k], dtype=float) for k in ARRAYS}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a streaming detector state: {exc}") from None
        ends = {k: int(scalars["rows"] if k == "surprise" else scalars["present"]) for k in ARRAYS}
        lengths = config.lengths()
        arrays = {}
        for name, values in stored.items():
            shape = lengths[name]
            size = shape[-1]
            end = ends[name]
            count = max(0, min(end, size))
            if values.shape != shape and values.shape != shape[:-1] + (count,):
                raise ValueError(f"state array {name!r} has shape {values.shape}, expected {shape} "
                                 "for these settings")
            ring = np.full(shape, np.nan)
            if count:
                slots = np.arange(end - count, end) % size
                ring[..., slots] = values[..., values.shape[-1] - count:]
            arrays[name] = ring
        return cls(config, arrays, scalars)

    def copy(self) -> "StreamState":
        return StreamState.from_dict(self.to_dict())

    @property
    def last_seconds(self) -> float:
        """The latest timestamp seen (seconds since the epoch; -inf before any row)."""
        return self.max_seconds

    # ----------------------------------------------------------------------------- one row
    def update(self, value: float, timestamp: pd.Timestamp | float) -> RowScore:
        """Score the next row and remember it. ``timestamp``: a Timestamp or epoch seconds."""
        c = self.config
        seconds = timestamp if isinstance(timestamp, (int, float)) else _epoch_seconds(timestamp)
        if math.isinf(value):
            raise ValueError("value is infinite")
        self.max_seconds = max(self.max_seconds, seconds)
        if math.isnan(value):
            self._report(0.0, present=False)
            return RowScore(0.0, 0.0, math.nan, math.nan, 0.0, 0.0, 0.0)
        a, i = self._a, self.present
        t = self.max_seconds
        x_ring, s_ring = a["x"], a["seconds"]
        mp = c.min_periods

        # 1. expectations: the level (median of the last window) and each seasonal period
        recent = _ring_last(x_ring, i, c.window)
        level = _median(recent) if len(recent) >= mp else math.nan
        tolerance = self._tolerance(t, i) if c.periods else 0.0
        predictions = [level] + [self._seasonal(t, period, i, tolerance) for period in c.periods]
        residuals = np.array([value - p for p in predictions])
        past = _ring_last(a["residuals"], i, c.window)  # (predictors, <= window)
        if len(predictions) == 1:
            best = 0
        else:
            absolute = np.abs(past)
            if past.shape[1] >= mp and not np.isnan(past).any():
                errors = (absolute.sum(axis=1) / past.shape[1]).tolist()
            else:
                ok = ~np.isnan(past)
                counts = ok.sum(axis=1)
                sums = np.where(ok, absolute, 0.0).sum(axis=1)
                errors = [s / n if n >= mp else math.nan
                          for s, n in zip(sums.tolist(), counts.tolist(), strict=True)]
            errors = [math.nan if math.isnan(r) else e
                      for e, r in zip(errors, residuals.tolist(), strict=True)]
            errors = [0.0 if math.isnan(errors[0]) else errors[0]] + \
                [math.inf if math.isnan(e) else e for e in errors[1:]]
            settled = [settle_one(e) for e in errors]
            best = settled.index(min(settled))  # the first smallest, as argmin
        residual = float(residuals[best])
        absolute_past = _ring_last(a["absolute"], i, c.window)
        ok = absolute_past[~np.isnan(absolute_past)]
        spread = math.nan
        if len(ok) >= mp:
            spread = max(MAD_TO_SIGMA * _median(ok), 0.5 * float(ok.sum()) / len(ok))
        if self.abs_count >= mp:
            spread = _fmax(spread, 0.1 * self.abs_sum / self.abs_count)
        spread = _fmax(spread, 1e-9 * (1.0 + (abs(level) if not math.isnan(level) else 0.0)))
        z = min(max(residual / spread, -1e9), 1e9) if not math.isnan(residual) else math.nan
        if i < c.warmup:
            z = math.nan

        # 2. evidence: range, shift, sustained
        range_s = 0.0
        if min(i, c.history) >= c.warmup:
            high, low = self._high_low(i)
            width = high - low
            if width == 0:
                outside = math.inf if value != high else 0.0
            else:
                outside = max(value - high, low - value) / width
            excess = min((outside - c.range_tolerance) / c.range_tolerance, MAX_EXCESS)
            if excess > 0:
                count = min(i + 1, c.history)
                range_s = math.log10(1.0 + (count - 1) * c.unit) + excess / math.log(10)
        shift = sustained = math.nan
        if not math.isnan(z):
            zc = min(max(z, -c.z_clip), c.z_clip)
            z_past = _ring_last(a["z"], i, self._z_rows)  # oldest first
            missing = np.flatnonzero(np.isnan(z_past))
            clean = len(z_past) - (int(missing[-1]) + 1 if len(missing) else 0)  # rows since a NaN
            longest = c.shift_windows[-1]
            if longest - 1 <= clean:
                # sums of the last k - 1 clipped rows, for every k at once
                sums = np.cumsum(np.clip(z_past[len(z_past) - (longest - 1):][::-1], -c.z_clip, c.z_clip)) \
                    if longest > 1 else np.zeros(0)
                sums = [0.0] + sums.tolist()
                shift = max(abs((sums[k - 1] + zc) / k) * math.sqrt(k) for k in c.shift_windows)
            s = c.sustained_window
            if s - 1 <= clean:
                tail = z_past[len(z_past) - (s - 1):] if s > 1 else z_past[:0]
                sustained = _median(np.abs(np.append(tail, z)))
        shift, sustained = settle_one(shift), settle_one(sustained)
        shift_s = self._rarity("shift", shift)
        sustained_s = self._rarity("sustained", sustained)
        surprise = max(range_s, shift_s, sustained_s)
        if c.min_z > 0 and not abs(z) >= c.min_z:  # the channels remember; the row itself must be off
            surprise = 0.0

        # 3. remember the row
        slot = i % self._reach
        if self._range is not None:  # the range of the next row's window, kept if it can be
            high, low = self._range
            leaving = x_ring[slot] if i >= c.history else math.nan
            if leaving == high or leaving == low:
                self._range = None
            else:
                self._range = (max(high, value), min(low, value))
        x_ring[slot], s_ring[slot] = value, t
        hw = c.seasonal_half_width
        if i >= hw:  # the row half a width back now has every neighbour: its "around" median
            j = i - hw
            lo = max(0, j - hw)
            a["around"][j % self._reach] = _median(_ring_last(x_ring, i + 1, i + 1 - lo))
        a["residuals"][:, i % c.window] = residuals
        h = i % c.history
        leaving = a["absolute"][h]
        if i >= c.history and not math.isnan(leaving):
            self.abs_sum -= leaving
            self.abs_count -= 1
        if not math.isnan(residual):
            self.abs_sum += abs(residual)
            self.abs_count += 1
        a["absolute"][h] = abs(residual)
        a["z"][i % self._z_rows] = z
        self._remember("shift", shift)
        self._remember("sustained", sustained)
        self.present = i + 1
        score = self._report(surprise, present=True)
        return RowScore(score, surprise, residual, z, range_s, shift_s, sustained_s)

    # ----------------------------------------------------------------------------- helpers
    def _tolerance(self, t: float, i: int) -> float:
        """The seasonal look-up's tolerance: the median of the recent steps (the series' first
        row has a step of 0)."""
        back = _ring_last(self._a["seconds"], i, STEP_ROWS)
        steps = np.diff(np.append(back, t))
        if i < STEP_ROWS:
            steps = np.append(0.0, steps)
        steps = steps[np.isfinite(steps)]
        return _median(steps) if len(steps) else 0.0

    def _seasonal(self, t: float, period: float, i: int, tolerance: float) -> float:
        """Median over the previous cycles of the values around ``t - c * period`` (each the
        median of the rows within the half width of that instant: the ``around`` ring)."""
        c, a = self.config, self._a
        secs, around = a["seconds"], a["around"]
        hw = c.seasonal_half_width
        found = []
        for k in range(1, c.cycles + 1):
            target = t - k * period
            j = self._last_at_or_before(target, i)
            if j < 0 or target - secs[j % self._reach] > tolerance or j + hw >= i:
                continue
            found.append(float(around[j % self._reach]))
        if not found:
            return math.nan
        found.sort()
        half = len(found) // 2
        return found[half] if len(found) % 2 else (found[half - 1] + found[half]) / 2

    def _high_low(self, i: int) -> tuple[float, float]:
        """Largest and smallest of the ``history`` values before row ``i``."""
        if self._range is None or self._reach != self.config.history:
            window = _ring_last(self._a["x"], i, self.config.history)
            self._range = (float(window.max()), float(window.min()))
        return self._range

    def _last_at_or_before(self, target: float, i: int) -> int:
        """The last row number before ``i`` whose timestamp is <= ``target`` (-1: none kept).

        A binary search over the ring of timestamps, which are non-decreasing by row."""
        secs, size = self._a["seconds"], self._reach
        lo, hi = max(0, i - size), i  # rows kept
        if lo >= hi or secs[lo % size] > target:
            return -1  # none, or (before the rows kept) too old to know: no look-up
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if secs[mid % size] <= target:
                lo = mid
            else:
                hi = mid
        return lo

    def _rarity(self, name: str, u: float) -> float:
        """``-log10`` tail probability of ``u`` among the channel's previous values."""
        c = self.config
        if math.isnan(u):
            return 0.0
        ring = self._a[name]
        held = self.shift_count if name == "shift" else self.sustained_count
        if held + 1 < c.min_reference + 1:
            return 0.0
        at_least = int(np.count_nonzero(ring >= u))  # NaN compares False
        surprise = -math.log10((at_least * c.unit + 1) / (held * c.unit + 1))
        if at_least == 0 and held >= c.min_reference:
            record = float(np.nanmax(ring))
            if record > 0:
                surprise += min(c.tail_index * math.log10(max(u / record, 1.0)), 3.0)
        return surprise if math.isfinite(surprise) else 0.0

    def _remember(self, name: str, u: float) -> None:
        ring = self._a[name]
        slot = self.present % ring.shape[0]
        if self.present >= ring.shape[0] and not math.isnan(ring[slot]):
            if name == "shift":
                self.shift_count -= 1
            else:
                self.sustained_count -= 1
        ring[slot] = u
        if not math.isnan(u):
            if name == "shift":
                self.shift_count += 1
            else:
                self.sustained_count += 1

    def _report(self, surprise: float, present: bool) -> float:
        """The alarm suppression: the reported surprise, scaled to [0, 1)."""
        c, ring = self.config, self._a["surprise"]
        recent = _ring_last(ring, self.rows, c.refractory)
        before = float(recent.max()) if len(recent) else 0.0
        reported = 0.0
        if present and surprise > before and surprise > 0:
            if self.since_report >= c.refractory or surprise > self.last_report + c.min_gain:
                reported = surprise
        ring[self.rows % c.refractory] = surprise
        self.rows += 1
        if reported > 0:
            self.since_report, self.last_report = 1, reported
        else:
            self.since_report += 1
        return reported / (reported + c.score_scale)


SETTLE_BITS = 33  # about 10 significant digits


def settle(values) -> np.ndarray:
    """``values`` rounded to ``SETTLE_BITS`` significant bits (NaN and infinities kept).

    The channels and the predictors' errors are compared (ranked, or the smallest taken), and
    the batch run (pandas' running sums) and ``update`` (numpy over the window) compute them
    with different rounding noise: a tie, common on quantised metrics such as CPU in steps of
    0.002, would break one way in one and the other way in the other. Both round here first
    (``frexp``/``ldexp`` are exact, so ``settle_one`` gives the same bits).
    """
    a = np.asarray(values, dtype=float)
    mantissa, exponent = np.frexp(np.where(np.isfinite(a), a, 0.0))
    rounded = np.ldexp(np.round(np.ldexp(mantissa, SETTLE_BITS)), exponent - SETTLE_BITS)
    return np.where(np.isfinite(a), rounded, a)


def settle_one(value: float) -> float:
    """``settle`` for one float, without numpy's per-call cost."""
    if value == 0 or not math.isfinite(value):
        return value
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(math.ldexp(mantissa, SETTLE_BITS)), exponent - SETTLE_BITS)


def _median(values: np.ndarray) -> float:
    """The median of a 1-D array without NaN (as ``np.median``), cheaply for short ones."""
    n = len(values)
    if n <= 64:
        ordered = sorted(values.tolist())
        half = n // 2
        return ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
    half = n // 2
    if n % 2:
        return float(np.partition(values, half)[half])
    part = np.partition(values, (half - 1, half))
    return float((part[half - 1] + part[half]) / 2)


def _fmax(a: float, b: float) -> float:
    """``np.fmax`` on floats: the larger, ignoring NaN."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def _epoch_seconds(timestamp) -> float:
    """Whole seconds since the epoch (UTC), as the batch run counts them."""
    ts = pd.Timestamp(timestamp)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return float(ts.value // 1_000_000_000)
