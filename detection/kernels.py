"""Compiled loops (numba) for the few steps of fleet scoring that numpy can only do by gathers.

Walking a hundred isolation trees, counting how many of a series' 30 days of channel values
reach a new one, and finding a value's place among a calibrator's quantiles are each a small
loop per value. In numpy every step of such a loop is a pass of gathers over a temporary the
size of the whole batch; here each is a plain loop over the arrays the scorer already holds.
Each kernel does exactly the arithmetic of the numpy code it replaces, in the same order
(``tests/unit/test_kernels.py`` checks them against numpy, value for value).

Compiled on first use and cached beside this file (numba's ``cache=True``; elsewhere when that
folder is read-only), so only the first process on a machine pays for the compilation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_LN10 = math.log(10)   # what the numpy code divides by (math.log(10))


# ------------------------------------------------------------ numpy's steps on one float
_BIG = np.finfo(np.float64).max   # what np.nan_to_num makes of +inf


@njit(cache=True, nogil=True, inline="always")
def _maximum(a: float, b: float) -> float:
    """``np.maximum`` of two floats: NaN if either is."""
    if np.isnan(a):
        return a
    if np.isnan(b):
        return b
    return a if a >= b else b


@njit(cache=True, nogil=True, inline="always")
def _nan_to_num(v: float) -> float:
    """``np.nan_to_num`` of one float: NaN 0, the infinities the largest finite floats."""
    if np.isnan(v):
        return 0.0
    return _BIG if v == np.inf else (-_BIG if v == -np.inf else v)


@njit(cache=True, nogil=True, inline="always")
def _directed(z: float, direction: int) -> float:
    """``by_directions`` of one value: NaN kept; up (1), down (2) or either way."""
    if np.isnan(z):
        return z
    if direction == 1:
        return z if z > 0.0 else 0.0
    if direction == 2:
        return -z if -z > 0.0 else 0.0
    return abs(z)


@njit(cache=True, nogil=True, inline="always")
def _outward(z: float, direction: int) -> float:
    """``np.nan_to_num(by_directions(z, direction), nan=0.0)`` of one value: how far ``z`` lies
    the metric's bad way, 0 for NaN."""
    return _nan_to_num(_directed(z, direction))


@njit(cache=True, nogil=True, inline="always")
def _spread_floor(centre: float, spread: float, min_spread: float, count: bool, relative: float) -> float:
    """``baseline.spread_floors(centre, spread, min_spread, count, relative)`` of one value."""
    floor = _maximum(relative * abs(centre), min_spread)
    if count:
        clipped = centre if (np.isnan(centre) or centre > 0.0) else 0.0
        floor = _maximum(floor, np.sqrt(clipped) + 1.0)
    return _maximum(spread, floor)


# ------------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def forest_depths(feature: np.ndarray, right: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
                  leaves: np.ndarray, services: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per row of ``X`` (batch, rows, features; float32), the sum over its service's trees of
    the path length of the leaf it reaches. Trees in pre-order as node arrays (services, trees,
    nodes; C-contiguous): the split ``feature`` (-1 at a leaf), the ``right`` child (the left
    one is the next node; at a leaf, its place in ``leaves``), the float32 ``threshold`` and
    whether a missing value goes left; ``leaves`` (services, trees, leaves) the path lengths.
    Batch item ``k`` is scored by the trees of service ``services[k]``. Sums tree by tree in
    order, as numpy's sum over the trees axis does.

    A tree walks all the rows of its batch item before the next tree (its nodes are fetched
    from memory once, not once a row), and nodes are addressed by one unsigned offset into the
    flat arrays (no per-axis index arithmetic or negative-index check on the walk)."""
    batch, rows = X.shape[0], X.shape[1]
    trees, nodes = np.uint64(feature.shape[1]), np.uint64(feature.shape[2])
    n_leaves = np.uint64(leaves.shape[2])
    feature, right, threshold = feature.ravel(), right.ravel(), threshold.ravel()
    missing_left, leaves = missing_left.ravel(), leaves.ravel()
    one = np.uint64(1)
    out = np.zeros((batch, rows))
    for k in range(batch):
        first_tree = np.uint64(services[k]) * trees
        for t in range(trees):
            tree = first_tree + np.uint64(t)
            root, leaf_base = tree * nodes, tree * n_leaves
            for r in range(rows):
                x_row = X[k, r]
                node = root
                split = feature[node]
                while split >= 0:
                    x = x_row[np.uint64(split)]
                    go_left = missing_left[node] if np.isnan(x) else x <= threshold[node]
                    node = node + one if go_left else root + np.uint64(right[node])
                    split = feature[node]
                out[k, r] += leaves[leaf_base + np.uint64(right[node])]
    return out


@njit(cache=True, nogil=True, error_model="numpy")   # x / 0 is inf or NaN, as in numpy
def forest_features(values: np.ndarray, centre: np.ndarray, tolerant_z: np.ndarray, past: np.ndarray,
                    feature_centre: np.ndarray, feature_scale: np.ndarray, direction: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The isolation forest's features of rows (services, rows, metrics) and each row's
    culprit metric, as ``IsolationForestDetector`` makes and attributes them.

    Per metric three features: the value (the baseline's centre where it is missing), its
    tolerant z (0 where missing) and its change from the ``past`` mean (0 where NaN, as
    np.nan_to_num). The culprit is the metric whose z or change feature lies furthest from
    its training centre in ``feature_scale``s (numpy's argmax: the first NaN, else the first
    largest), named only when it lies that far the metric's bad way (``direction``, as
    ``by_directions``); else -1. Returns the features (services, rows, 3 x metrics) as
    float32, what the forest walks, and the culprits."""
    services, rows, metrics = values.shape
    features = np.empty((services, rows, 3 * metrics), dtype=np.float32)
    culprit = np.empty((services, rows), dtype=np.int64)
    either = np.empty(metrics)
    bad = np.empty(metrics)
    for s in range(services):
        for r in range(rows):
            for m in range(metrics):
                v = values[s, r, m]
                missing = np.isnan(v)
                change = _nan_to_num(v - past[s, r, m])
                z = 0.0 if missing else tolerant_z[s, r, m]
                features[s, r, 3 * m] = centre[s, r, m] if missing else v
                features[s, r, 3 * m + 1] = z
                features[s, r, 3 * m + 2] = change
                dev_z = (z - feature_centre[s, 3 * m + 1]) / feature_scale[s, 3 * m + 1]
                dev_change = (change - feature_centre[s, 3 * m + 2]) / feature_scale[s, 3 * m + 2]
                either[m] = _maximum(abs(dev_z), abs(dev_change))
                bad[m] = _maximum(_directed(dev_z, direction[s, m]), _directed(dev_change, direction[s, m]))
            top = 0
            for m in range(metrics):
                if np.isnan(either[m]):
                    top = m
                    break
                if either[m] > either[top]:
                    top = m
            pick, best = bad[top], either[top]
            culprit[s, r] = top if (pick > 0 and pick >= best * (1 - 1e-9)) else -1
    return features, culprit


@njit(cache=True, nogil=True)
def count_at_least(ring: np.ndarray, rows: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ``k``: how many entries of ``ring[rows[k]]`` are >= ``u[k]`` (NaN entries never are),
    and the largest entry (-inf when every entry is NaN)."""
    n = len(rows)
    count = np.zeros(n)
    largest = np.full(n, -np.inf)
    for k in range(n):
        row = ring[rows[k]]
        threshold = u[k]
        c = 0
        top = -np.inf
        for v in row:
            if v >= threshold:
                c += 1
            if v > top:
                top = v
        count[k] = c
        largest[k] = top
    return count, largest


@njit(cache=True, nogil=True, inline="always")
def _interp_one(v: float, grid: np.ndarray, fp: np.ndarray, mirrored: bool = False) -> float:
    """``np.interp(v, grid, fp)`` for one value: numpy's own steps (the last grid point at most
    the value by a binary search, the slope of that segment, the value at an exact grid point,
    the ends held, NaN kept). ``mirrored``: on ``-grid[::-1]`` and ``-fp[::-1]`` (read in
    place, negation is exact)."""
    if np.isnan(v):
        return v
    n = len(grid)
    sign = -1.0 if mirrored else 1.0
    lo, hi = 0, n   # the number of grid points <= v (NaN points compare False)
    while lo < hi:
        mid = (lo + hi) // 2
        if v >= sign * grid[n - 1 - mid if mirrored else mid]:
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    g_last = sign * grid[0 if mirrored else n - 1]
    if v > g_last or j >= n - 1:
        return sign * fp[0 if mirrored else n - 1]
    if j < 0:
        return sign * fp[n - 1 if mirrored else 0]
    a, b = (n - 1 - j, n - 2 - j) if mirrored else (j, j + 1)
    return _on_segment(v, sign * grid[a], sign * grid[b], sign * fp[a], sign * fp[b])


@njit(cache=True, nogil=True, inline="always")
def _on_segment(v: float, x0: float, x1: float, f0: float, f1: float) -> float:
    """``np.interp``'s value at ``v`` between grid points ``x0 <= v < x1`` holding ``f0``,
    ``f1``: the grid point itself, the slope from the left, from the right when that is NaN
    (an infinite value), ``f0`` when both are and the segment is flat."""
    if v == x0:
        return f0
    slope = (f1 - f0) / (x1 - x0)
    result = slope * (v - x0) + f0
    if np.isnan(result):
        result = slope * (v - x1) + f1
        if np.isnan(result) and f0 == f1:
            result = f0
    return result


@njit(cache=True, nogil=True)
def calibrate(x: np.ndarray, quantiles: np.ndarray, references: np.ndarray, rows: np.ndarray,
              start: np.ndarray, scale: np.ndarray, level: np.ndarray, surprise: bool) -> np.ndarray:
    """``TailCalibrator.surprise`` (or ``transform``) of x (services, rows, columns), each
    column ``(s, c)`` by its quantile table ``rows[s, c]`` and its tail (``start``, ``scale``,
    ``level``, each (services, columns)): scikit-learn's QuantileTransformer (the mean of the
    interpolations up and down the table, 1 at its top and 0 at its bottom), capped at the
    tail's level, and the exponential tail beyond its start."""
    services, points, columns = x.shape
    n = quantiles.shape[1]
    out = np.empty(x.shape)
    for s in range(services):
        for c in range(columns):
            row = rows[s, c]
            table = quantiles[row]
            lvl, first, top = level[s, c], table[0], table[n - 1]
            for p in range(points):
                v = x[s, p, c]
                if np.isnan(v):
                    out[s, p, c] = v
                    continue
                forward = _interp_one(v, table, references)
                backward = _interp_one(-v, table, references, True)
                q = 0.5 * (forward - backward)
                if v == top:
                    q = 1.0
                if v == first:
                    q = 0.0
                body = q if q <= lvl else lvl          # numpy's minimum (q is not NaN here)
                if v > start[s, c]:
                    above = (v - start[s, c]) / scale[s, c]
                    if surprise:
                        out[s, p, c] = -np.log1p(-lvl) + above
                    else:
                        tail = lvl + (1.0 - lvl) * (-np.expm1(-above))
                        out[s, p, c] = tail if (tail >= lvl or np.isnan(tail)) else lvl
                else:
                    out[s, p, c] = -np.log1p(-body) if surprise else body
    return out


@njit(cache=True, nogil=True, inline="always")
def _settle(value: float, bits: int) -> float:
    """``streaming_state.settle`` of one float (frexp and ldexp are exact; round half to even)."""
    if value == 0.0 or not np.isfinite(value):
        return value
    mantissa, exponent = math.frexp(value)
    return math.ldexp(np.rint(math.ldexp(mantissa, bits)), exponent - bits)


@njit(cache=True, nogil=True, inline="always")
def _rarity_one(ring: np.ndarray, valid: int, held: float, u: float, unit: float, min_reference: float,
                tail_index: float) -> float:
    """``StreamStack._rarity`` of one value among its series' sorted ring."""
    if np.isnan(u) or held < min_reference:
        return 0.0
    lo, hi = 0, valid
    while lo < hi:
        mid = (lo + hi) // 2
        if ring[mid] >= u:
            hi = mid
        else:
            lo = mid + 1
    at_least = float(valid - lo)
    surprise = -np.log10((at_least * unit + 1) / (held * unit + 1))
    if at_least == 0 and valid > 0:
        record = ring[valid - 1]
        if record > 0:
            surprise += min(tail_index * np.log10(max(u / record, 1.0)), 3.0)
    return surprise if np.isfinite(surprise) else 0.0


@njit(cache=True, nogil=True, inline="always")
def _median_in_place(a: np.ndarray) -> float:
    """``np.median`` of a NaN-free 1-D array, reordering it: the middle value(s) by selection
    (Hoare's quickselect, then the largest below it for an even count) rather than a full sort:
    the same values, so the same bits, for the one window per series a trial judges."""
    m = len(a)
    half = m // 2
    lo, hi = 0, m - 1
    while hi > lo:   # a[half] ends up the value a sort would put there, none larger before it
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if half <= j:
            hi = j
        elif half >= i:
            lo = i
        else:
            break
    upper = a[half]
    if m % 2:
        return upper
    lower = a[0]
    for j in range(1, half):
        lower = max(lower, a[j])
    return (lower + upper) / 2


@njit(cache=True, nogil=True)
def judge_trials(values: np.ndarray, predictions: np.ndarray, best: np.ndarray, spread: np.ndarray,
                 sums: np.ndarray, tail: np.ndarray, seen: np.ndarray, high: np.ndarray, low: np.ndarray,
                 shift_rings: np.ndarray, shift_valid: np.ndarray, shift_held: np.ndarray,
                 sustained_rings: np.ndarray, sustained_valid: np.ndarray, sustained_held: np.ndarray,
                 rows: np.ndarray, windows: np.ndarray, params: np.ndarray, bits: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``StreamStack._judge`` of what-if values (surprise, residual), one series at a time:
    ``rows[k]``'s expectation (``predictions``, ``best``, ``spread``, the shift windows'
    ``sums`` and the sustained window's ``tail``, its rows ``seen``), its range (``high``,
    ``low``) and its channels' rings sorted with their counts. ``params``: z_clip,
    range_tolerance, max_excess, history, unit, min_reference, tail_index, min_z."""
    z_clip, tolerance, max_excess, history = params[0], params[1], params[2], params[3]
    unit, min_reference, tail_index, min_z = params[4], params[5], params[6], params[7]
    n = len(values)
    surprise = np.zeros(n)
    residual = np.empty(n)
    width_tail = tail.shape[1]
    window = np.empty(width_tail + 1)
    for k in range(n):
        row, value = rows[k], values[k]
        r = value - predictions[k, best[k]]
        residual[k] = r
        z = r / spread[k]
        if z < -1e9:
            z = -1e9
        elif z > 1e9:
            z = 1e9
        # the range channel
        width, above, below = high[row] - low[row], value - high[row], low[row] - value
        if width == 0:
            outside = np.inf if value != high[row] else 0.0
        elif np.isnan(above) or np.isnan(below):   # numpy's maximum keeps NaN
            outside = np.nan
        else:
            outside = max(above, below) / width
        excess = min((outside - tolerance) / tolerance, max_excess) if not np.isnan(outside) else np.nan
        count = min(seen[k] + 1.0, history)
        range_s = np.log10(1.0 + (count - 1) * unit) + excess / _LN10 if excess > 0 else 0.0
        # the shift and sustained channels
        zc = min(max(z, -z_clip), z_clip) if not np.isnan(z) else z
        shift = -np.inf
        for j in range(len(windows)):
            w = windows[j]
            shift = _maximum(shift, abs((sums[k, j] + zc) / w) * np.sqrt(w))
        missing = np.isnan(z)
        for j in range(width_tail):
            window[j] = abs(tail[k, j])
            missing = missing or np.isnan(window[j])
        window[width_tail] = abs(z)
        sustained = np.nan if missing else _median_in_place(window)
        shift_s = _rarity_one(shift_rings[row], shift_valid[row], shift_held[row], _settle(shift, bits),
                              unit, min_reference, tail_index)
        sustained_s = _rarity_one(sustained_rings[row], sustained_valid[row], sustained_held[row],
                                  _settle(sustained, bits), unit, min_reference, tail_index)
        s = max(max(range_s, shift_s), sustained_s)
        if min_z > 0 and not abs(z) >= min_z:
            s = 0.0
        surprise[k] = s
    return surprise, residual


@njit(cache=True, nogil=True, inline="always")
def _numpy_sum(a: np.ndarray) -> float:
    """``np.add.reduce`` of a short contiguous 1-D float array, in numpy's order (a plain loop
    under 8 values; eight running sums, paired, up to 128): the same bits."""
    n = len(a)
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - (n % 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@njit(cache=True, nogil=True, inline="always")
def _interp_at(x: float, j: int, xp: np.ndarray, fp: np.ndarray) -> float:
    """``np.interp(x, xp, fp)`` given ``j``, the value's place in the grid
    (``searchsorted(xp, x, "right") - 1``, found once for every row ``fp`` on that grid):
    numpy's arithmetic, its exact grid points and held ends, NaN kept."""
    n = len(xp)
    if np.isnan(x):
        return x
    if x > xp[n - 1] or j >= n - 1:
        return fp[n - 1]
    if j < 0:
        return fp[0]
    return _on_segment(x, xp[j], xp[j + 1], fp[j], fp[j + 1])


@njit(cache=True, nogil=True)
def seasonal_centres(t: np.ndarray, at: np.ndarray, use: np.ndarray, xp: np.ndarray,
                     curves: np.ndarray) -> np.ndarray:
    """The seasonal member's expected value (series, rows): per row of ``t``, the mean of each
    series' curve ``curves[c]`` (on the grid ``xp``) at the cycles ``at[r, k]`` that ``use``
    marks, summed in numpy's order, or the curve at ``t`` itself when none is used
    (``_Group._seasonal``'s numpy, value for value)."""
    series, rows, cycles = curves.shape[0], at.shape[0], at.shape[1]
    j_at = np.searchsorted(xp, at.ravel(), side="right").reshape(rows, cycles) - 1
    j_t = np.searchsorted(xp, t, side="right") - 1
    out = np.empty((series, rows))
    terms = np.empty(cycles)
    for c in range(series):
        fp = curves[c]
        for r in range(rows):
            count = 0
            for k in range(cycles):
                value = _interp_at(at[r, k], j_at[r, k], xp, fp)
                terms[k] = value * use[r, k]
                count += use[r, k]
            if count > 0:
                out[c, r] = 1.0 * _numpy_sum(terms) / max(count, 1)
            else:
                out[c, r] = _interp_at(t[r], j_t[r], xp, fp)
    return out


@njit(cache=True, nogil=True, error_model="numpy")   # x / 0 is inf or NaN, as in numpy
def seasonal_deviation(centre: np.ndarray, values: np.ndarray, spread: np.ndarray, hour: np.ndarray,
                       min_spread: np.ndarray, count: np.ndarray, relative_floor: np.ndarray,
                       direction: np.ndarray) -> np.ndarray:
    """The seasonal member's score (services, rows, metrics) of ``values`` against its expected
    value ``centre`` (services x metrics, rows: ``seasonal_centres``' answer): the spread of the
    row's UTC ``hour`` (``spread``: services, metrics, 24) floored as ``baseline.spread_floors``
    does (``relative_floor`` per service, the spec's ``min_spread`` and Poisson floor for
    counts), the residual zeroed within 1e-9 of the centre, in spreads, the metric's bad way
    (``by_directions``): ``_Group._seasonal``'s numpy steps, value for value."""
    services, rows, metrics = values.shape
    out = np.empty(values.shape)
    for s in range(services):
        for r in range(rows):
            for m in range(metrics):
                c = centre[s * metrics + m, r]
                width = _spread_floor(c, spread[s, m, hour[r]], min_spread[s, m], count[s, m],
                                      relative_floor[s])
                resid = values[s, r, m] - c
                if abs(resid) <= 1e-9 * _maximum(1.0, abs(c)):
                    resid = 0.0
                size = _maximum(abs(resid) - 0.0 * abs(c), 0.0)
                sign = 1.0 if resid > 0.0 else (-1.0 if resid < 0.0 else (resid if np.isnan(resid) else 0.0))
                out[s, r, m] = _directed(sign * size / width, direction[s, m])
    return out


@njit(cache=True, nogil=True)
def streaming_gate(x: np.ndarray, carried: np.ndarray, expected: np.ndarray, level: np.ndarray,
                   direction: np.ndarray, min_spread: np.ndarray, count: np.ndarray,
                   share: float) -> np.ndarray:
    """``StreamingMember._gate_rows`` of x (rows, columns), row ``k``'s metric spec given by
    ``direction[k]``, ``min_spread[k]``, ``count[k]``: the carried bucket score where the
    minute is off its expectation the bad way beyond the floor and by ``share`` of the
    bucket's own excess, 0 where it is not (NaN where nothing is carried or x is missing)."""
    rows, columns = x.shape
    out = np.empty(x.shape)
    for k in range(rows):
        d, ms, c = direction[k], min_spread[k], count[k]
        for j in range(columns):
            e = expected[k, j]
            if np.isnan(x[k, j]):
                out[k, j] = np.nan
                continue
            outward = _outward(x[k, j] - e, d)
            shows = (outward > _spread_floor(_nan_to_num(e), 0.0, ms, c, 0.0)
                     and outward >= share * _outward(level[k, j] - e, d))
            value = carried[k, j]
            out[k, j] = value if shows else (value if np.isnan(value) else 0.0)
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def streaming_raw(x: np.ndarray, residual: np.ndarray, surprise: np.ndarray, direction: np.ndarray,
                  min_spread: np.ndarray, count: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """``StreamingMember._raw_rows`` (one value a row, row ``k``'s spec as in
    ``streaming_gate``, ``minutes[k]`` the minutes a bucket's mean stands for): the surprise
    where the residual lies the bad way beyond the floor of the expectation, else 0."""
    out = np.empty(len(x))
    for k in range(len(x)):
        if np.isnan(x[k]):
            out[k] = np.nan
            continue
        expected = (x[k] - residual[k]) * minutes[k]
        floor = _spread_floor(expected, 0.0, min_spread[k], count[k], 0.0) / minutes[k]
        out[k] = surprise[k] if _outward(residual[k], direction[k]) > floor else 0.0
    return out


def warm() -> None:
    """Load every kernel (from numba's cache, or compile it) on tiny inputs of the types the
    scorers pass, so the first real call does not pay for it."""
    one = np.zeros((1, 1, 1))
    forest_depths(np.full((1, 1, 1), -1, dtype=np.int8), np.zeros((1, 1, 1), dtype=np.int16),
                  np.zeros((1, 1, 1), dtype=np.float32), np.zeros((1, 1, 1), dtype=bool),
                  one, np.zeros(1, dtype=np.intp), np.zeros((1, 1, 1), dtype=np.float32))
    rows, u = np.zeros(1, dtype=np.intp), np.zeros(1)
    count_at_least(np.zeros((1, 1)), rows, u)
    f1, f2, i1 = np.zeros(1), np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    judge_trials(f1, f2, i1, np.ones(1), f2, f2, f1, f1, f1, f2, i1, f1, f2, i1, f1, i1,
                 np.ones(1, dtype=np.int64), np.ones(8), 33)
    seasonal_centres(f1, f2, np.ones((1, 1), dtype=bool), np.array([0.0, 1.0]), np.zeros((1, 2)))
    seasonal_deviation(f2, one, np.ones((1, 1, 24)), np.zeros(1, dtype=np.int64), f2,
                       np.zeros((1, 1), dtype=bool), f1, np.zeros((1, 1), dtype=np.int64))
    codes, spreads, counts = np.zeros(1, dtype=np.int8), np.zeros(1), np.zeros(1, dtype=bool)
    streaming_gate(f2, f2, f2, f2, codes, spreads, counts, 0.5)
    streaming_raw(f1, f1, f1, codes, spreads, counts, np.ones(1))
    forest_features(one, one, one, one, np.ones((1, 3)), np.ones((1, 3)), np.zeros((1, 1), dtype=np.int64))
    table = np.zeros((1, 2))
    for surprise in (True, False):
        calibrate(one, table, np.array([0.0, 1.0]), np.zeros((1, 1), dtype=np.intp), np.zeros((1, 1)),
                  np.ones((1, 1)), np.full((1, 1), 0.5), surprise)

