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

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def forest_depths(left: np.ndarray, right: np.ndarray, feature: np.ndarray, value: np.ndarray,
                  missing_left: np.ndarray, services: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per row of ``X`` (batch, rows, features), the sum over its service's trees of the path
    length of the leaf it reaches. Trees are node arrays (services, trees, nodes): ``left`` and
    ``right`` children (-1 at a leaf), the split ``feature``, ``value`` (a split's threshold, a
    leaf's path length) and whether a missing value goes left; batch item ``k`` is scored by the
    trees of service ``services[k]``. Sums tree by tree in order, as numpy's sum over the trees
    axis does."""
    batch, rows = X.shape[0], X.shape[1]
    trees = left.shape[1]
    out = np.zeros((batch, rows))
    for k in range(batch):
        s = services[k]
        for r in range(rows):
            total = 0.0
            for t in range(trees):
                node = 0
                while left[s, t, node] >= 0:
                    x = X[k, r, feature[s, t, node]]
                    if np.isnan(x):
                        go_left = missing_left[s, t, node]
                    else:
                        go_left = x <= value[s, t, node]
                    node = left[s, t, node] if go_left else right[s, t, node]
                total += value[s, t, node]
            out[k, r] = total
    return out


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


@njit(cache=True, nogil=True)
def count_at_least_sorted(rings: np.ndarray, valid: np.ndarray, rows: np.ndarray,
                          u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``count_at_least`` on rings sorted ascending with their ``valid`` values first: a
    binary search for the first value >= ``u[k]`` (none for a NaN ``u``)."""
    n = len(rows)
    count = np.zeros(n)
    largest = np.full(n, -np.inf)
    for k in range(n):
        row = rings[rows[k]]
        m = valid[rows[k]]
        if m > 0:
            largest[k] = row[m - 1]
        threshold = u[k]
        if np.isnan(threshold):
            continue
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi) // 2
            if row[mid] >= threshold:
                hi = mid
            else:
                lo = mid + 1
        count[k] = m - lo
    return count, largest


@njit(cache=True, nogil=True)
def interp_rows(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.interp(x[k], xp[rows[k]], fp)`` for every row ``k`` of ``x`` (rows, points); ``xp``
    ascending per row (NaN last), ``fp`` one table shared by all rows. numpy's own steps: the
    last grid point at most the value (a binary search), the slope of that segment, the value
    at an exact grid point, the ends held, NaN kept."""
    n_rows, points = x.shape
    n = xp.shape[1]
    out = np.empty((n_rows, points))
    for k in range(n_rows):
        grid = xp[rows[k]]
        for p in range(points):
            v = x[k, p]
            if np.isnan(v):
                out[k, p] = v
                continue
            lo, hi = 0, n   # the number of grid points <= v (NaN points compare False)
            while lo < hi:
                mid = (lo + hi) // 2
                if v >= grid[mid]:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo - 1
            if v > grid[n - 1] or j >= n - 1:
                out[k, p] = fp[n - 1]
            elif j < 0:
                out[k, p] = fp[0]
            elif v == grid[j]:
                out[k, p] = fp[j]
            else:
                slope = (fp[j + 1] - fp[j]) / (grid[j + 1] - grid[j])
                result = slope * (v - grid[j]) + fp[j]
                if np.isnan(result):
                    result = slope * (v - grid[j + 1]) + fp[j + 1]
                    if np.isnan(result) and fp[j] == fp[j + 1]:
                        result = fp[j]
                out[k, p] = result
    return out
