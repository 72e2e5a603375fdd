"""Time to OOM: when will a rising memory metric reach its limit, with an interval. Pure.

A leak shows as memory climbing in a straight-ish line from the last time the tasks were
replaced; a restart or a deploy drops it back (a sawtooth), and a leak that began in running
tasks bends a flat line upwards (a hockey stick). The forecast therefore

1. keeps the recent window (``lookback`` minutes) and cuts it after its last **drop**: a fall
   between two minutes larger than ``min_drop`` points and than 5 robust standard deviations of
   the minute-to-minute changes (a restart or deploy replaced tasks; what came before says
   nothing about the tasks running now);
2. finds where the **climb began** in that segment: the breakpoint of a one-break segmented
   (hinge) regression, ``memory = a + b * max(0, t - onset)``, chosen by least squares over every
   candidate onset that leaves ``min_points`` minutes after it;
3. fits the climb since the onset with the **Theil-Sen** estimator (``scipy.stats.theilslopes``:
   the median of pairwise slopes, robust to spikes and to a minute or two of a half-finished
   restart), with its confidence interval on the slope;
4. extrapolates the fitted level *now* to ``limit``: ``minutes = (limit - level) / slope``; the
   interval comes from the slope's interval (the steepest plausible slope gives the earliest
   time, the shallowest the latest; a shallowest slope at or below zero leaves the latest time
   unbounded).

No forecast is made (None) when the segment is too short or memory is not rising
(the slope's whole interval is not above zero): a flat service never gets a time to OOM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

DEFAULT_LIMIT = 100.0
DEFAULT_LOOKBACK_MINUTES = 180
DEFAULT_CONFIDENCE = 0.9
MIN_POINTS = 5
MIN_DROP = 2.0   # percentage points: a smaller fall is noise, not tasks being replaced


@dataclass(frozen=True)
class OomForecast:
    """When memory reaches ``limit`` at the current trend, and the interval around it.

    ``minutes`` is from ``at`` (the newest observation); ``low``/``high`` bound it at the
    ``confidence`` level of the slope's interval (``high`` None: the slowest plausible trend never
    gets there). ``since`` is when the fitted climb began, ``points`` how many minutes were fitted.
    """

    at: pd.Timestamp
    level: float
    limit: float
    slope_per_minute: float
    minutes: float
    low: float
    high: float | None
    since: pd.Timestamp
    points: int
    confidence: float

    @property
    def reaches_at(self) -> pd.Timestamp:
        return self.at + pd.Timedelta(minutes=self.minutes)

    def within(self, horizon_minutes: float) -> bool:
        """Whether the limit is reached within the horizon even at the slowest plausible trend."""
        return self.high is not None and self.high <= horizon_minutes

    def summary(self) -> str:
        """``memory 62% rising 1.5 points/min since 10:03: 100% in 25 min (21-31 min, 90%)``."""
        high = "unbounded" if self.high is None else f"{self.high:.0f}"
        return (f"memory {self.level:.0f}% rising {self.slope_per_minute:.2g} points/min since "
                f"{self.since:%H:%M}: {self.limit:.0f}% in {self.minutes:.0f} min "
                f"({self.low:.0f}-{high} min, {self.confidence:.0%} interval)")

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("at", "since"):
            out[key] = out[key].isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "OomForecast":
        """The forecast as stored (``to_dict``); ValueError naming a missing field."""
        try:
            return cls(pd.Timestamp(data["at"]), float(data["level"]), float(data["limit"]),
                       float(data["slope_per_minute"]), float(data["minutes"]), float(data["low"]),
                       None if data.get("high") is None else float(data["high"]),
                       pd.Timestamp(data["since"]), int(data["points"]), float(data["confidence"]))
        except KeyError as exc:
            raise ValueError(f"a time-to-OOM forecast needs {exc.args[0]}") from None


def last_drop(values: np.ndarray, min_drop: float = MIN_DROP) -> int:
    """Index of the first point after the last drop (0 when there is none).

    A drop is a fall between consecutive points larger than ``min_drop`` and than 5 robust
    standard deviations (1.4826 MAD) of the series' consecutive changes.
    """
    if len(values) < 3:
        return 0
    diffs = np.diff(values)
    spread = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs))))
    falls = np.flatnonzero(diffs < -max(min_drop, 5 * spread))
    return int(falls[-1]) + 1 if len(falls) else 0


def climb_onset(x: np.ndarray, y: np.ndarray, min_points: int = MIN_POINTS) -> int:
    """Index where the climb began: the least-squares breakpoint of ``y = a + b*max(0, x - x[k])``.

    Every candidate ``k`` that leaves ``min_points`` points from it is fitted at once (simple
    regression of ``y`` on the hinge, closed form); the one with the smallest residual sum of
    squares wins. ``k = 0`` is a straight line through the whole segment.
    """
    n = len(x)
    last = n - min_points
    if last <= 0:
        return 0
    onsets = x[: last + 1, None]
    hinge = np.maximum(0.0, x[None, :] - onsets)              # (candidates, n)
    h = hinge - hinge.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    var = (h * h).sum(axis=1)
    cov = (h * yc).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = np.where(var > 0, cov * cov / var, 0.0)
    return int(np.argmax(explained))   # smallest SSR = largest explained sum of squares


def time_to_limit(series: pd.Series, limit: float = DEFAULT_LIMIT,
                  lookback_minutes: float = DEFAULT_LOOKBACK_MINUTES,
                  confidence: float = DEFAULT_CONFIDENCE, min_points: int = MIN_POINTS,
                  min_drop: float = MIN_DROP) -> OomForecast | None:
    """The time until ``series`` (a memory utilisation in %, datetime-indexed) reaches ``limit``.

    Parameters
    ----------
    series : observations, oldest first; NaN are ignored.
    limit : the level at which tasks are killed (100% of the task's memory).
    lookback_minutes : how much of the newest history is looked at.
    confidence : level of the slope's (and so the time's) interval.
    min_points : fewest minutes of climb fitted.
    min_drop : smallest fall, in points, that counts as tasks being replaced.

    Returns None when there is too little data or no significant upward trend.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if min_points < 3:
        raise ValueError(f"min_points must be at least 3, got {min_points}")
    values = series.to_numpy(dtype=float)
    stamps = pd.DatetimeIndex(series.index)
    keep = ~np.isnan(values)
    if not keep.any():
        return None
    values, stamps = values[keep], stamps[keep]
    end = stamps[-1]
    minutes = ((stamps - end) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)   # before the newest
    recent = minutes > -lookback_minutes
    if recent.sum() < min_points:
        return None
    y_all, x_all = values[recent], minutes[recent]
    first = int(np.flatnonzero(recent)[0])
    start = last_drop(y_all, min_drop)
    x, y = x_all[start:], y_all[start:]
    if len(x) < min_points:
        return None
    onset = climb_onset(x, y, min_points)
    x, y = x[onset:], y[onset:]
    # SciPy when a forecast is made, not with the module: the OomForecast type travels with every
    # diagnosis, and the rollback Lambda's package (which never forecasts) does not carry SciPy
    from scipy.stats import norm, theilslopes

    fit = theilslopes(y, x, alpha=confidence)
    if not fit.slope > 0 or not fit.low_slope > 0:
        return None
    level = float(fit.intercept)              # x = 0 is the newest observation
    remaining = max(0.0, limit - level)
    # the level wanders around the line too (load, noise): widen by the residuals' robust spread
    residuals = y - (fit.intercept + fit.slope * x)
    wander = norm.ppf(0.5 + confidence / 2) * 1.4826 * float(np.median(np.abs(residuals)))
    high = (remaining + wander) / fit.low_slope
    return OomForecast(at=pd.Timestamp(end), level=level, limit=float(limit),
                       slope_per_minute=float(fit.slope), minutes=remaining / fit.slope,
                       low=max(0.0, remaining - wander) / fit.high_slope,
                       high=float(high) if np.isfinite(high) else None,
                       since=pd.Timestamp(stamps[first + start + onset]), points=len(x),
                       confidence=confidence)
