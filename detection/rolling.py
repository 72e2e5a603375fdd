"""Rolling medians (and maxima, minima, counts) by bottleneck, as pandas' ``rolling(...)`` gives them.

pandas keeps each window in a skiplist, which costs 0.1-0.5 us a row even for a window of 3:
the streaming member's five rolling medians per metric and the level shift's two took about
40 ms of the 0.57 s of CPU an ensemble fit takes (14 days x 5 metrics). bottleneck's two heaps
give the same figures 6-15 times faster on these windows (3 to 288 rows). The values are the
same bit for bit: both take the middle non-missing value of the window, or the mean of the
middle two (a sum halved, exact either way), and both leave NaN where fewer than
``min_periods`` values are present (``tests/unit/test_rolling.py``). Maxima, minima and counts
are exact in any order, so bottleneck's are pandas' figures too; they spare the streaming
detector pandas' ~60 us a call (five calls a metric, on 4,032 5-minute means).
"""

from __future__ import annotations

import bottleneck as bn
import numpy as np
import pandas as pd


def rolling_median(values: np.ndarray, window: int, min_periods: int, center: bool = False) -> np.ndarray:
    """``pd.Series(values).rolling(window, min_periods=min_periods, center=center).median()``
    as an array (NaN is missing; a window counts its non-missing values only)."""
    x = np.asarray(values, dtype=np.float64)
    if window < 1 or not 0 <= min_periods <= window:
        raise ValueError(f"need 1 <= window and 0 <= min_periods <= window; got {window}, {min_periods}")
    # pandas centres a window of w rows on row i as the one ending at row i + (w - 1) // 2
    ahead = (window - 1) // 2 if center else 0
    padded = np.concatenate([x, np.full(ahead, np.nan)]) if ahead else x
    if len(padded) == 0:
        return np.empty(0)
    # a window longer than the series holds what one as long as the series does
    width = min(window, len(padded))
    if min_periods > width:
        return np.full(len(x), np.nan)
    return bn.move_median(padded, width, min_count=max(min_periods, 1))[ahead:]


def _moving(move, values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """bottleneck's ``move`` over ``values`` with pandas' window rules (see ``rolling_max``)."""
    x = np.asarray(values, dtype=np.float64)
    if window < 1 or not 0 <= min_periods <= window:
        raise ValueError(f"need 1 <= window and 0 <= min_periods <= window; got {window}, {min_periods}")
    if len(x) == 0:
        return np.empty(0)
    width = min(window, len(x))  # a window longer than the series holds what one as long does
    if min_periods > width:
        return np.full(len(x), np.nan)
    return move(x, width, min_count=max(min_periods, 1))


def rolling_max(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """``pd.Series(values).rolling(window, min_periods=min_periods).max()`` as an array, by
    bottleneck's ``move_max``: a maximum is one of the values, so both give the same figures
    (NaN is missing; NaN where fewer than ``min_periods`` values are present), at a tenth of
    pandas' cost on the streaming detector's 5-minute series (pandas' call alone is ~60 us)."""
    return _moving(bn.move_max, values, window, min_periods)


def rolling_min(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """``pd.Series(values).rolling(window, min_periods=min_periods).min()``: see ``rolling_max``."""
    return _moving(bn.move_min, values, window, min_periods)


def rolling_count(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """``pd.Series(values).rolling(window, min_periods=min_periods).count()``: the non-missing
    values in each window, as floats. pandas sums a 0/1 mask, so ``min_periods`` counts rows
    here, missing or not: NaN only while the window holds fewer rows than that."""
    present = (~np.isnan(np.asarray(values, dtype=np.float64))).astype(np.float64)
    return _moving(bn.move_sum, present, window, min_periods)  # sums of 0s and 1s: exact


def rolling_median_over(values: pd.Series, span: pd.Timedelta) -> np.ndarray:
    """``values.rolling(span, min_periods=1).median()`` (a time window ``(t - span, t]``) as an
    array: by ``rolling_median`` over a row count where the index is a regular grid (every
    step the same, so the window is the last ``ceil(span / step)`` rows), else by pandas."""
    if not isinstance(values.index, pd.DatetimeIndex):  # pandas says what is wrong with it
        return values.rolling(span, min_periods=1).median().to_numpy()
    steps = np.diff(values.index.as_unit("ns").asi8)
    if len(steps) and steps[0] > 0 and (steps == steps[0]).all():
        rows = -(-int(pd.Timedelta(span).value) // int(steps[0]))
        return rolling_median(values.to_numpy(dtype=np.float64), max(rows, 1), 1)
    return values.rolling(span, min_periods=1).median().to_numpy()
