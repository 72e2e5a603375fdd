"""Many streaming states moved on together: what a fleet's tick costs.

``StreamState.update`` moves one series by one row in a few dozen numpy calls, so ten thousand
series would spend seconds a bucket on call overhead alone. ``StreamStack`` holds the states of
many series that share one ``StreamConfig`` as stacked rings (series x ring) and moves any subset
of them by one row each in one pass of array operations: the same arithmetic, step for step, as
``StreamState.update`` (equal scores: ``tests/unit/test_streaming_stack.py``).

A series that is not yet mature (fewer rows than its windows, or a missing value still inside
them) is moved by ``StreamState.update`` on a view of its rows (``state(n)``, then ``put``), so
the two paths share one memory. Its live rings are the stack's only copy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detection.streaming_state import (
    MAD_TO_SIGMA,
    MAX_EXCESS,
    SCALARS,
    SETTLE_BITS,
    STEP_ROWS,
    StreamConfig,
    StreamState,
    settle,
)

CHUNK = 1024  # series per block when a whole history ring is compared (bounds the temporaries)


class StreamStack:
    """The live states of many series with one ``StreamConfig``, moved one row at a time."""

    def __init__(self, config: StreamConfig, size: int):
        """An empty stack of ``size`` series; ``fill`` each with its state."""
        if size < 1:
            raise ValueError("a stack needs at least one series")
        self.config = config
        self.arrays = {name: np.full((size,) + shape, np.nan) for name, shape in config.lengths().items()}
        self.scalars = {name: np.zeros(size) for name in SCALARS}
        n = size
        self.high, self.low = np.full(n, np.nan), np.full(n, np.nan)
        self.known = np.zeros(n, dtype=bool)  # high/low hold the range of the last ``history`` values
        c = self.config
        self._reach = c.reach
        self._z_rows = self.arrays["z"].shape[1]
        self._mature = max(c.window, STEP_ROWS, c.warmup, self._z_rows, 2 * c.seasonal_half_width)
        self._fast = bool(c.periods) and self._reach == c.history
        # trials (``trial``): each bucket's expectations, for the state they were found in
        # each series' version: it moves with every change of the series' state (``restore``
        # puts it back), so what trials keep of a state is used only while it holds
        self._version = np.zeros(size, dtype=np.int64)
        self._moves = 0
        self._expected: dict[float, _ExpectationTable] = {}
        self._sorted: dict[str, _SortedRings] = {}

    @classmethod
    def of(cls, states: Sequence[StreamState]) -> "StreamStack":
        """The given states, stacked (copied) in order."""
        if not states:
            raise ValueError("a stack needs at least one state")
        stack = cls(states[0].config, len(states))
        for n, state in enumerate(states):
            stack.fill(n, state)
        return stack

    def fill(self, n: int, state: StreamState) -> None:
        """Copy ``state`` into series ``n``."""
        if state.config != self.config:
            raise ValueError("states with different settings or sampling cannot be stacked")
        self._moved(n)
        for name, ring in self.arrays.items():
            ring[n] = state._a[name]
        self.put(n, state)

    def __len__(self) -> int:
        return len(self.scalars["present"])

    def state(self, n: int) -> StreamState:
        """Series ``n``'s state: views of its rings (they move with it); ``put`` its scalars back."""
        self._moved(n)
        return StreamState(self.config, {name: ring[n] for name, ring in self.arrays.items()},
                           {name: values[n] for name, values in self.scalars.items()}, copy=False)

    def put(self, n: int, state: StreamState) -> None:
        """Write back the scalars of a state ``state(n)`` gave, after it moved."""
        self._moved(n)
        for name in SCALARS:
            self.scalars[name][n] = getattr(state, name)
        self.known[n] = False

    def mark(self, series: np.ndarray) -> dict:
        """What the next ``update`` of ``series`` will overwrite, to put back with ``restore``
        (a trial: judge rows without keeping them, at the cost of the slots they touch)."""
        c, sc = self.config, self.scalars
        series = np.asarray(series, dtype=np.intp)
        self._know_range(series)   # else every trial would find the range again, and forget it
        i, done = sc["present"][series].astype(np.intp), sc["rows"][series].astype(np.intp)
        slots = {"x": i % self._reach, "seconds": i % self._reach,
                 "around": (i - c.seasonal_half_width) % self._reach, "residuals": i % c.window,
                 "absolute": i % c.history, "z": i % self._z_rows,
                 "shift": i % self.arrays["shift"].shape[1],
                 "sustained": i % self.arrays["sustained"].shape[1],
                 "surprise": done % c.refractory}
        return {"series": series, "slots": slots, "version": self._version[series].copy(),
                "rings": {name: self.arrays[name][series, ..., slot].copy() for name, slot in slots.items()},
                "scalars": {name: values[series].copy() for name, values in sc.items()},
                "range": (self.high[series].copy(), self.low[series].copy(), self.known[series].copy())}

    def restore(self, mark: dict) -> None:
        """Put back what ``mark`` saved (marks of several updates: the latest first)."""
        series = mark["series"]
        for name, slot in mark["slots"].items():
            self.arrays[name][series, ..., slot] = mark["rings"][name]
        for name, values in mark["scalars"].items():
            self.scalars[name][series] = values
        self.high[series], self.low[series], self.known[series] = mark["range"]
        self._version[series] = mark["version"]

    def _moved(self, series: np.ndarray | int) -> None:
        """These series' states change: what trials kept of them no longer holds."""
        self._moves += 1
        self._version[series] = self._moves

    def last_seconds(self) -> np.ndarray:
        """Each series' latest timestamp (seconds since the epoch; -inf before any row)."""
        return self.scalars["max_seconds"]

    # ----------------------------------------------------------------------------- many rows
    def update(self, series: np.ndarray, values: np.ndarray, seconds: np.ndarray | float
               ) -> tuple[np.ndarray, np.ndarray]:
        """Score the next row of each of ``series`` (distinct positions) and remember it.

        Returns each row's surprise (the largest channel's, before suppression) and residual
        (NaN for a missing value), as ``StreamState.update``'s ``RowScore`` would."""
        series = np.asarray(series, dtype=np.intp)
        values = np.asarray(values, dtype=float)
        seconds = np.broadcast_to(np.asarray(seconds, dtype=float), series.shape)
        if np.isinf(values).any():
            raise ValueError("value is infinite")
        self._moved(series)
        surprise, residual = np.zeros(len(series)), np.full(len(series), np.nan)
        sc = self.scalars
        present = ~np.isnan(values)
        missing = series[~present]
        if len(missing):  # a missing row: counted, scored 0, nothing learnt
            sc["max_seconds"][missing] = np.fmax(sc["max_seconds"][missing], seconds[~present])
            self._report(missing, np.zeros(len(missing)), present=False)
        i = sc["present"][series].astype(np.intp)
        mature = present & (i >= self._mature) & (sc["rows"][series] >= self.config.refractory)
        if self._fast and mature.any():
            fast = np.flatnonzero(mature)
            ok, s_fast, r_fast = self._update_mature(series[fast], values[fast], seconds[fast])
            surprise[fast[ok]], residual[fast[ok]] = s_fast, r_fast
            mature[fast[~ok]] = False
        for k in np.flatnonzero(present & ~mature):  # one at a time, on views of the same rings
            n = int(series[k])
            state = self.state(n)
            row = state.update(float(values[k]), float(seconds[k]))
            self.put(n, state)
            surprise[k], residual[k] = row.surprise, row.residual
        return surprise, residual

    def _last(self, name: str, rows: np.ndarray, end: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` ring entries before row numbers ``end`` of each of ``rows``, oldest first.

        Series moved together mostly sit at a few ring positions: each position's series are
        copied as one slice (a gather of every entry costs several times more)."""
        ring = self.arrays[name]
        size = ring.shape[-1]
        start = (end - count) % size
        out = np.empty((len(rows),) + ring.shape[1:-1] + (count,))
        positions, which = np.unique(start, return_inverse=True)
        for p, first in enumerate(positions.tolist()):
            chosen = which == p if len(positions) > 1 else slice(None)
            picked = rows[chosen]
            if first + count <= size:
                out[chosen] = ring[picked, ..., first:first + count]
            else:
                wrapped = first + count - size
                parts = [ring[picked, ..., first:], ring[picked, ..., :wrapped]]
                out[chosen] = np.concatenate(parts, axis=-1)
        return out

    def trial(self, series: np.ndarray, values: np.ndarray, seconds: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What ``update(series, values, seconds)`` would return, without moving anything.

        A what-if window asks this of the same state again and again, bucket after bucket and
        request after request: what the state decides before a value is seen (``_expect``) is
        kept per bucket for as long as the state does not move, so a trial only judges its
        values. Returns (surprise, residual, done): ``done`` marks the series answered (present
        values of mature series); the others need ``mark``, ``update``, ``restore``."""
        series = np.asarray(series, dtype=np.intp)
        values = np.asarray(values, dtype=float)
        surprise, residual = np.zeros(len(series)), np.full(len(series), np.nan)
        sc = self.scalars
        done = (~np.isnan(values) & ~np.isinf(values) & (sc["present"][series] >= self._mature)
                & (sc["rows"][series] >= self.config.refractory))
        if not self._fast or not done.any():
            return surprise, residual, np.zeros(len(series), dtype=bool)
        table = self._expectations(float(seconds))
        asked = series[done]
        todo = asked[table.version[asked] != self._version[asked]]
        if len(todo):
            table.put(todo, self._expect(todo, np.full(len(todo), float(seconds))), self._version[todo])
        e = table.get(asked)
        done[done] = e.ok
        surprise[done], residual[done] = self._judge_trials(e, values[done])
        return surprise, residual, done

    def _judge_trials(self, e: "_Expectation", value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``_judge(e, value)``'s surprise and residual in one compiled loop
        (``kernels.judge_trials``: the same steps, series by series; the channels' rarity by a
        binary search of their rings sorted, kept while the series' state holds: a what-if asks
        the same rings again and again, and a count would read all 30 days of them)."""
        from detection.kernels import judge_trials

        c, sc = self.config, self.scalars
        self._know_range(e.rows)
        rings = []
        for name in ("shift", "sustained"):
            ring = self._sorted.get(name)
            if ring is None:
                ring = self._sorted[name] = _SortedRings(self.arrays[name].shape)
            ring.refresh(self.arrays[name], e.rows, self._version)
            rings += [ring.values, ring.valid, sc[f"{name}_count"]]
        params = np.array([c.z_clip, c.range_tolerance, MAX_EXCESS, c.history, c.unit, c.min_reference,
                           c.tail_index, c.min_z], dtype=float)
        return judge_trials(np.ascontiguousarray(value, dtype=float), e.predictions, e.best, e.spread,
                            e.sums, e.tail, e.i.astype(float), self.high, self.low, *rings, e.rows,
                            np.asarray(c.shift_windows, dtype=np.int64), params, SETTLE_BITS)

    def _expectations(self, seconds: float) -> "_ExpectationTable":
        table = self._expected.get(seconds)
        if table is None:
            while len(self._expected) >= _ExpectationTable.KEPT:   # the oldest go first
                del self._expected[next(iter(self._expected))]
            table = self._expected[seconds] = _ExpectationTable(len(self), len(self.config.periods) + 1,
                                                            len(self.config.shift_windows),
                                                            max(self.config.sustained_window - 1, 0))
        return table

    def _update_mature(self, rows: np.ndarray, value: np.ndarray, seconds: np.ndarray):
        """``StreamState.update`` for series past every warm-up, vectorised. Returns which of
        them it moved (those without a missing value left in their windows) and their scores."""
        e = self._expect(rows, seconds)
        if not e.ok.all():
            rows, value = rows[e.ok], value[e.ok]
        if not len(rows):
            return e.ok, np.zeros(0), np.zeros(0)
        self.scalars["max_seconds"][rows] = e.t
        judged = self._judge(e, value)
        self._keep(e, value, judged)
        return e.ok, judged.surprise, judged.residual

    def _expect(self, rows: np.ndarray, seconds: np.ndarray) -> "_Expectation":
        """Everything of a row's judgement that the state decides before its value is known
        (steps 1 and 2 of ``StreamState.update`` up to the value): the predictors' expectations
        and which of them is trusted, the spread, the channels' recent z-scores. For the series
        ``ok`` only (no missing value left in their windows); the others are not mature."""
        c, sc = self.config, self.scalars
        i = sc["present"][rows].astype(np.intp)
        absolute_past = self._last("absolute", rows, i, c.window)
        z_past = self._last("z", rows, i, self._z_rows)
        ok = ~(np.isnan(absolute_past).any(axis=1) | np.isnan(z_past).any(axis=1))
        if not ok.all():
            rows, seconds, i = rows[ok], seconds[ok], i[ok]
            absolute_past, z_past = absolute_past[ok], z_past[ok]
        t = np.fmax(sc["max_seconds"][rows], seconds)

        # 1. expectations: the level and each seasonal period; the predictor with the smallest error
        level = np.median(self._last("x", rows, i, c.window), axis=1)
        back = self._last("seconds", rows, i, STEP_ROWS)
        tolerance = np.median(np.diff(np.concatenate([back, t[:, None]], axis=1), axis=1), axis=1)
        predictions = np.stack([level] + [self._seasonal(rows, i, t, period, tolerance)
                                          for period in c.periods], axis=1)
        past = self._last("residuals", rows, i, c.window)  # (series, predictors, window)
        held = ~np.isnan(past)
        absolute = np.abs(past)
        clean = held.all(axis=(1, 2))
        counts = held.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            errors = np.where(clean[:, None], absolute.sum(axis=2) / past.shape[2],
                              np.where(held, absolute, 0.0).sum(axis=2) / counts)
        errors = np.where(clean[:, None] | (counts >= c.min_periods), errors, np.nan)
        errors = np.where(np.isnan(predictions), np.nan, errors)  # the residual's NaN: a value is present
        errors[:, 0] = np.where(np.isnan(errors[:, 0]), 0.0, errors[:, 0])
        errors[:, 1:] = np.where(np.isnan(errors[:, 1:]), np.inf, errors[:, 1:])
        best = np.argmin(settle(errors), axis=1)
        spread = np.maximum(MAD_TO_SIGMA * np.median(absolute_past, axis=1),
                            0.5 * absolute_past.sum(axis=1) / c.window)
        count = sc["abs_count"][rows]
        enough = count >= c.min_periods
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = np.where(enough, np.fmax(spread, 0.1 * sc["abs_sum"][rows] / count), spread)
        spread = np.fmax(spread, 1e-9 * (1.0 + np.abs(level)))

        # 2. the channels' memory of recent z-scores
        longest = c.shift_windows[-1]
        if longest > 1:
            recent = np.clip(z_past[:, self._z_rows - (longest - 1):][:, ::-1], -c.z_clip, c.z_clip)
            sums = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(recent, axis=1)], axis=1)
        else:
            sums = np.zeros((len(rows), 1))
        sums = sums[:, [k - 1 for k in c.shift_windows]]
        s = c.sustained_window
        tail = z_past[:, self._z_rows - (s - 1):] if s > 1 else z_past[:, :0]
        return _Expectation(rows, ok, i, t, predictions, best, spread, sums, tail)

    def _judge(self, e: "_Expectation", value: np.ndarray) -> "_Judged":
        """The row's residual, z-score, channels and surprise, given its expectation (step 2 of
        ``StreamState.update``). Reads the state, writes nothing but the range's cache."""
        c = self.config
        residuals = value[:, None] - e.predictions
        residual = residuals[np.arange(len(value)), e.best]
        z = np.clip(residual / e.spread, -1e9, 1e9)
        range_s = self._range_surprise(e.rows, e.i, value)
        zc = np.clip(z, -c.z_clip, c.z_clip)
        shift = np.max(np.stack([np.abs((e.sums[:, j] + zc) / k) * math.sqrt(k)
                                 for j, k in enumerate(c.shift_windows)], axis=1), axis=1)
        sustained = np.median(np.abs(np.concatenate([e.tail, z[:, None]], axis=1)), axis=1)
        shift, sustained = settle(shift), settle(sustained)
        shift_s = self._rarity("shift", e.rows, shift)
        sustained_s = self._rarity("sustained", e.rows, sustained)
        surprise = np.maximum(np.maximum(range_s, shift_s), sustained_s)
        if c.min_z > 0:  # the row itself must be off (StreamState.update)
            surprise = np.where(np.abs(z) >= c.min_z, surprise, 0.0)
        return _Judged(residuals, residual, z, shift, sustained, surprise)

    def _keep(self, e: "_Expectation", value: np.ndarray, judged: "_Judged") -> None:
        """Remember the judged row (step 3 of ``StreamState.update``)."""
        c, a, sc = self.config, self.arrays, self.scalars
        rows, i, t = e.rows, e.i, e.t
        reach, hw = self._reach, c.seasonal_half_width
        slot = i % reach
        self._move_range(rows, i, value, slot)
        a["x"][rows, slot], a["seconds"][rows, slot] = value, t
        a["around"][rows, (i - hw) % reach] = np.median(self._last("x", rows, i + 1, 2 * hw + 1), axis=1)
        a["residuals"][rows, :, i % c.window] = judged.residuals
        h = i % c.history
        leaving = a["absolute"][rows, h]
        out = (i >= c.history) & ~np.isnan(leaving)
        total = sc["abs_sum"][rows]
        sc["abs_sum"][rows] = np.where(out, total - leaving, total) + np.abs(judged.residual)
        sc["abs_count"][rows] += 1.0 - out
        a["absolute"][rows, h] = np.abs(judged.residual)
        a["z"][rows, i % self._z_rows] = judged.z
        self._remember("shift", rows, i, judged.shift)
        self._remember("sustained", rows, i, judged.sustained)
        sc["present"][rows] = i + 1
        self._report(rows, judged.surprise, present=True)

    def _seasonal(self, rows: np.ndarray, i: np.ndarray, t: np.ndarray, period: float,
                  tolerance: np.ndarray) -> np.ndarray:
        """``StreamState._seasonal`` for many series: the median over the previous cycles of the
        "around" value at ``t - cycle * period`` (a binary search of each ring's timestamps)."""
        c, reach, hw = self.config, self._reach, self.config.seasonal_half_width
        secs, around = self.arrays["seconds"], self.arrays["around"]
        found = np.full((len(rows), c.cycles), np.nan)
        for k in range(1, c.cycles + 1):
            target = t - k * period
            lo, hi = np.maximum(0, i - reach), i.copy()
            none = (lo >= hi) | (secs[rows, lo % reach] > target)
            while True:
                open_ = (hi - lo > 1) & ~none
                if not open_.any():
                    break
                mid = (lo + hi) // 2
                below = secs[rows, mid % reach] <= target
                lo = np.where(open_ & below, mid, lo)
                hi = np.where(open_ & ~below, mid, hi)
            use = ~none & (target - secs[rows, lo % reach] <= tolerance) & (lo + hw < i)
            found[:, k - 1] = np.where(use, around[rows, lo % reach], np.nan)
        found.sort(axis=1)  # NaN last
        n = (~np.isnan(found)).sum(axis=1)
        half = n // 2
        k_rows = np.arange(len(rows))
        upper = found[k_rows, np.minimum(half, c.cycles - 1)]
        lower = found[k_rows, np.maximum(half - 1, 0)]
        return np.where(n == 0, np.nan, np.where(n % 2 == 1, upper, (lower + upper) / 2))

    def _range_surprise(self, rows: np.ndarray, i: np.ndarray, value: np.ndarray) -> np.ndarray:
        """The range channel: how far beyond the last ``history`` values' range the row lies."""
        c = self.config
        self._know_range(rows)
        high, low = self.high[rows], self.low[rows]
        width = high - low
        with np.errstate(invalid="ignore", divide="ignore"):
            outside = np.where(width == 0, np.where(value != high, np.inf, 0.0),
                               np.maximum(value - high, low - value) / width)
        excess = np.minimum((outside - c.range_tolerance) / c.range_tolerance, MAX_EXCESS)
        count = np.minimum(i + 1, c.history)
        with np.errstate(invalid="ignore"):
            gain = np.log10(1.0 + (count - 1) * c.unit) + excess / math.log(10)
        return np.where(excess > 0, gain, 0.0)

    def _know_range(self, rows: np.ndarray) -> None:
        """Find the range of the last ``history`` values of the series not known."""
        unknown = rows[~self.known[rows]]
        for start in range(0, len(unknown), CHUNK):  # the whole ring, unwritten slots are NaN
            block = unknown[start:start + CHUNK]
            ring = self.arrays["x"][block]
            with warnings.catch_warnings():   # a ring with no value yet has no range (NaN)
                warnings.simplefilter("ignore", RuntimeWarning)
                self.high[block], self.low[block] = np.nanmax(ring, axis=1), np.nanmin(ring, axis=1)
            self.known[block] = True

    def _move_range(self, rows: np.ndarray, i: np.ndarray, value: np.ndarray, slot: np.ndarray) -> None:
        """Keep the range of the next row's window, unless the value leaving it was an end."""
        leaving = np.where(i >= self.config.history, self.arrays["x"][rows, slot], np.nan)
        high, low = self.high[rows], self.low[rows]
        lost = (leaving == high) | (leaving == low)
        self.known[rows[lost]] = False
        self.high[rows] = np.where(lost, high, np.maximum(high, value))
        self.low[rows] = np.where(lost, low, np.minimum(low, value))

    def _rarity(self, name: str, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``-log10`` tail probability of ``u`` among each series' previous channel values
        (a what-if's trial does the same in ``kernels.judge_trials``, on the rings sorted)."""
        from detection.kernels import count_at_least

        c = self.config
        held = self.scalars[f"{name}_count"][rows]
        at_least, largest = count_at_least(self.arrays[name], rows, u)  # NaN entries never count
        with np.errstate(divide="ignore", invalid="ignore"):
            surprise = -np.log10((at_least * c.unit + 1) / (held * c.unit + 1))
        for k in np.flatnonzero((at_least == 0) & (held >= c.min_reference)):
            record = float(largest[k])
            if record > 0:
                surprise[k] += min(c.tail_index * math.log10(max(u[k] / record, 1.0)), 3.0)
        surprise = np.where(np.isfinite(surprise), surprise, 0.0)
        return np.where(np.isnan(u) | (held < c.min_reference), 0.0, surprise)

    def _remember(self, name: str, rows: np.ndarray, i: np.ndarray, u: np.ndarray) -> None:
        ring, counts = self.arrays[name], self.scalars[f"{name}_count"]
        slot = i % ring.shape[1]
        leaving = ring[rows, slot]
        counts[rows] -= (i >= ring.shape[1]) & ~np.isnan(leaving)
        ring[rows, slot] = u
        counts[rows] += ~np.isnan(u)

    def _report(self, rows: np.ndarray, surprise: np.ndarray, present: bool) -> None:
        """The alarm suppression's memory (``StreamState._report``); the reported value itself
        is not needed by the member, which scores the surprise."""
        c, sc, ring = self.config, self.scalars, self.arrays["surprise"]
        done = sc["rows"][rows].astype(np.intp)
        recent = self._last("surprise", rows, done, c.refractory)
        before = np.where(done >= c.refractory, recent.max(axis=1), 0.0) if c.refractory else 0.0
        reported = np.zeros(len(rows))
        if present:
            gain = surprise > sc["last_report"][rows] + c.min_gain
            again = (sc["since_report"][rows] >= c.refractory) | gain
            reported = np.where((surprise > before) & (surprise > 0) & again, surprise, 0.0)
        ring[rows, done % c.refractory] = surprise
        sc["rows"][rows] = done + 1
        fired = reported > 0
        sc["since_report"][rows] = np.where(fired, 1, sc["since_report"][rows] + 1)
        sc["last_report"][rows] = np.where(fired, reported, sc["last_report"][rows])


@dataclass(frozen=True)
class _Expectation:
    """What the state decides about the next row of each of ``rows`` before its value is seen
    (``StreamStack._expect``); every array is per series of ``rows``."""

    rows: np.ndarray
    ok: np.ndarray            # of the series asked for: which are mature (the others are left out)
    i: np.ndarray             # rows seen
    t: np.ndarray             # the row's time
    predictions: np.ndarray   # (series, predictors)
    best: np.ndarray          # the trusted predictor
    spread: np.ndarray
    sums: np.ndarray          # (series, shift windows): recent clipped z-scores summed
    tail: np.ndarray          # (series, sustained window - 1): recent z-scores


@dataclass(frozen=True)
class _Judged:
    """A row judged (``StreamStack._judge``)."""

    residuals: np.ndarray     # (series, predictors)
    residual: np.ndarray
    z: np.ndarray
    shift: np.ndarray
    sustained: np.ndarray
    surprise: np.ndarray


class _ExpectationTable:
    """``_Expectation``s of one bucket for any of a stack's series, found as they are asked for."""

    KEPT = 8   # buckets (or states) kept per stack
    FIELDS = ("i", "t", "predictions", "best", "spread", "sums", "tail")   # of an _Expectation

    def __init__(self, size: int, predictors: int, windows: int, tail: int):
        self.version = np.full(size, -1, dtype=np.int64)   # of the state each series' was found in
        self.ok = np.zeros(size, dtype=bool)
        self.i = np.zeros(size, dtype=np.intp)
        self.best = np.zeros(size, dtype=np.intp)
        self.t, self.spread = np.empty(size), np.empty(size)
        self.predictions = np.empty((size, predictors))
        self.sums = np.empty((size, windows))
        self.tail = np.empty((size, tail))

    def put(self, asked: np.ndarray, e: _Expectation, version: np.ndarray) -> None:
        self.version[asked] = version
        self.ok[asked] = e.ok
        for name in self.FIELDS:
            getattr(self, name)[e.rows] = getattr(e, name)

    def get(self, asked: np.ndarray) -> _Expectation:
        ok = self.ok[asked]
        rows = asked[ok]
        return _Expectation(rows, ok, **{name: getattr(self, name)[rows] for name in self.FIELDS})


class _SortedRings:
    """A channel's rings sorted (NaN last), series by series as trials ask for them; the rows
    are allocated untouched, so only the series asked for take memory."""

    def __init__(self, shape: tuple[int, int]):
        self.values = np.empty(shape)
        self.valid = np.zeros(shape[0], dtype=np.int64)     # values that are not NaN
        self.version = np.full(shape[0], -1, dtype=np.int64)

    def refresh(self, rings: np.ndarray, rows: np.ndarray, version: np.ndarray) -> None:
        stale = rows[self.version[rows] != version[rows]]
        if len(stale):
            ordered = np.sort(rings[stale], axis=1)
            self.values[stale] = ordered
            self.valid[stale] = (~np.isnan(ordered)).sum(axis=1)
            self.version[stale] = version[stale]
