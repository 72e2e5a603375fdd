"""Evaluation on a held-back tail with injected anomalies, the same for every model compared.

The tail is the newest stretch of history, never fitted on. Into a copy of it go anomalies of
three shapes on the health metrics, each in the metric's bad direction: short spikes, level
shifts (a slow dependency, an overload) and ramps (a leak). Their size is a multiple of the
metric's own noise in the training part, so the set is equally hard for every service. The
injections depend only on the tail, the training part and the seed: the challenger and the
champion meet exactly the same set.

A model is judged on what an operator sees: an injected event counts as found when some health
metric is flagged inside it (or within ``grace`` after it); every flag outside the events is a
false alarm (consecutive flagged minutes count once). ``f1`` is the harmonic mean of the event
recall and the precision of flagged minutes; it is the figure promotion compares.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from detection.metrics import MetricSpec, spec_for

SHAPES = ("spike", "shift", "ramp")
EVENT_GAP = pd.Timedelta(minutes=45)
GRACE = pd.Timedelta(minutes=5)
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class InjectedEvent:
    """One anomaly put into the evaluation tail."""

    metric: str
    shape: str
    start: pd.Timestamp
    end: pd.Timestamp   # inclusive: the last minute that carries the anomaly
    size: float         # the peak change, in the metric's unit

    def to_dict(self) -> dict:
        out = asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


@dataclass(frozen=True)
class EvaluationSet:
    """The tail with anomalies in it, and where they are."""

    frame: pd.DataFrame
    events: list[InjectedEvent]
    seed: int

    @property
    def days(self) -> float:
        return (self.frame.index[-1] - self.frame.index[0]) / pd.Timedelta(days=1) or 1 / 1440


def noise_scale(values: pd.Series, spec: MetricSpec) -> float:
    """A metric's point-to-point noise (robust), floored so flat or sparse series still get a size."""
    clean = values.dropna().to_numpy()
    if len(clean) < 3:
        return max(spec.min_spread, 1.0)
    diffs = np.diff(clean)
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2)
    level = float(np.median(np.abs(clean)))
    scale = max(sigma, spec.min_spread, 0.02 * level)
    if spec.count:
        scale = max(scale, float(np.sqrt(max(level, 0.0))) + 1.0)
    return scale


def make_evaluation_set(tail: pd.DataFrame, reference: pd.DataFrame, *, seed: int = 0,
                        events_per_day: float = 8, specs: dict[str, MetricSpec] | None = None,
                        gap: pd.Timedelta = EVENT_GAP) -> EvaluationSet:
    """Copy ``tail`` and inject anomalies into its health metrics.

    Parameters
    ----------
    tail : the held-back history (regular grid).
    reference : the training part; each metric's noise is measured there.
    seed : with the tail's first timestamp, fixes every injection.
    events_per_day : how many events (at least one) the tail gets per day.
    specs : metric specs: which metrics are health metrics and which way is bad.
    gap : quiet time kept between events, so each is judged on its own.
    """
    metrics = [m for m in tail.columns if spec_for(m, specs).health and tail[m].notna().any()]
    frame = tail.copy()
    if not metrics or len(tail) < 30:
        return EvaluationSet(frame, [], seed)
    start_minute = int(tail.index[0].value // 60_000_000_000)
    rng = np.random.default_rng([seed, start_minute % (2**32)])
    step = tail.index[1] - tail.index[0]
    days = len(tail) * step / pd.Timedelta(days=1)
    wanted = max(1, int(round(events_per_day * days)))
    slot = len(tail) // wanted
    gap_points = max(1, int(gap / step))
    events = []
    for i in range(wanted):
        metric = metrics[int(rng.integers(len(metrics)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        length = {"spike": int(rng.integers(1, 4)), "shift": int(rng.integers(15, 46)),
                  "ramp": int(rng.integers(30, 61))}[shape]
        length = max(1, min(length, slot - gap_points))
        first = i * slot + int(rng.integers(0, max(1, slot - length - gap_points)))
        spec = spec_for(metric, specs)
        factor = {"spike": rng.uniform(6, 12), "shift": rng.uniform(4, 8),
                  "ramp": rng.uniform(8, 14)}[shape]
        size = float(factor * noise_scale(reference[metric] if metric in reference else tail[metric], spec))
        profile = np.linspace(1 / length, 1, length) if shape == "ramp" else np.ones(length)
        sign = -1.0 if spec.direction == "down" else 1.0
        col = frame.columns.get_loc(metric)
        values = frame.iloc[first:first + length, col].to_numpy(dtype=float)
        changed = values + sign * size * profile
        if spec.unit == "%":
            changed = np.clip(changed, 0, 100)
        if spec.count:
            changed = np.rint(np.clip(changed, 0, None))
        frame.iloc[first:first + length, col] = changed
        events.append(InjectedEvent(metric, shape, frame.index[first], frame.index[first + length - 1],
                                    size))
    return EvaluationSet(frame, events, seed)


def flagged_minutes(detector: Any, frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The timestamps at which the detector flags at least one health metric of ``frame``."""
    known = list(getattr(detector, "metrics_", frame.columns))
    usable = frame[[m for m in frame.columns if m in known]]
    if usable.shape[1] == 0:
        raise ValueError("the model scores none of the evaluation metrics "
                         f"({', '.join(frame.columns)}); it knows {', '.join(known)}")
    specs = getattr(detector, "specs", None)
    stamps = sorted({a.timestamp for a in detector.detect(usable) if spec_for(a.metric, specs).health})
    index = pd.DatetimeIndex(stamps)
    return index.tz_localize(frame.index.tz) if index.tz is None else index


def evaluate(detector: Any, evalset: EvaluationSet,
             grace: pd.Timedelta = GRACE) -> dict[str, float]:
    """How well ``detector`` finds the injected events, and what it flags besides.

    Returns ``events``, ``found``, ``recall``, ``precision``, ``f1``, ``false_alarms``,
    ``false_alarms_per_day`` and ``mean_delay_min`` (minutes from an event's start to its
    first flag, over the events found; NaN when none was).
    """
    flags = flagged_minutes(detector, evalset.frame)
    in_event = np.zeros(len(flags), dtype=bool)
    found, delays = 0, []
    for event in evalset.events:
        hit = (flags >= event.start) & (flags <= event.end + grace)
        in_event |= hit
        if hit.any():
            found += 1
            delays.append((flags[hit][0] - event.start) / pd.Timedelta(minutes=1))
    n_events = len(evalset.events)
    recall = found / n_events if n_events else float("nan")
    precision = float(in_event.mean()) if len(flags) else (1.0 if n_events else float("nan"))
    f1 = (2 * precision * recall / (precision + recall)) if (precision + recall) > 0 else 0.0
    stray = flags[~in_event]
    step = evalset.frame.index[1] - evalset.frame.index[0] if len(evalset.frame) > 1 else pd.Timedelta("1min")
    alarms = int(((stray[1:] - stray[:-1]) > step).sum() + 1) if len(stray) else 0
    return {"events": float(n_events), "found": float(found), "recall": float(recall),
            "precision": float(precision), "f1": float(f1), "false_alarms": float(alarms),
            "false_alarms_per_day": float(alarms / evalset.days),
            "mean_delay_min": float(np.mean(delays)) if delays else float("nan")}


def not_worse(challenger: dict[str, float], champion: dict[str, float],
              tolerance: float = 0.0) -> tuple[bool, str]:
    """Whether the challenger may replace the champion, and why, from figures on one evaluation.

    Not worse means an F1 at least the champion's (less ``tolerance``); on equal F1, no more
    false alarms a day.
    """
    ours, theirs = challenger["f1"], champion["f1"]
    if np.isnan(theirs):
        return True, "the champion could not be scored on this evaluation"
    if ours < theirs - tolerance:
        return False, f"F1 {ours:.3f} is below the champion's {theirs:.3f} on the same evaluation"
    if ours <= theirs + 1e-12 and challenger["false_alarms_per_day"] > champion["false_alarms_per_day"]:
        return False, (f"same F1 ({ours:.3f}) but {challenger['false_alarms_per_day']:.1f} false alarms "
                       f"a day against the champion's {champion['false_alarms_per_day']:.1f}")
    return True, f"F1 {ours:.3f} against the champion's {theirs:.3f} on the same evaluation"
