"""``aiops benchmark oom``: how far ahead, and how well, the time-to-OOM forecast sees an OOM.

Simulated leaks on the simulator's physics (:mod:`simulation.physics`: the daily load, memory's
load term, its noise), each followed minute by minute until the first minute its noise-free
memory reaches the limit (the truth). At each horizon (say 30 minutes before that minute) the
forecast is made from the history up to then, and its error is ``|forecast - horizon| / horizon``.

Three shapes of leak, one third each, at rates from 0.02 to 1.5 points a minute (the demo's
fault) and starts spread over a week:

``running``   a leak that begins in the running tasks (flat, then a climb: a hockey stick);
``sawtooth``  a leak in the code: memory climbs from each task's start, and a deploy or restart
              some hours back (or less) dropped it, with an earlier tooth before that;
``rolling``   the same, the last replacement a rolling restart (half the tasks, then the rest,
              a minute apart): the mean falls in two steps.

The peer is Prometheus' ``predict_linear(memory[1h], t)``: an ordinary least-squares line through
the last hour (``scipy.stats.linregress``), extrapolated to the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import linregress

from detection.forecast import DEFAULT_LIMIT, time_to_limit
from simulation.clock import DEFAULT_START
from simulation.physics import Conditions, ServiceShape, normal_load, service_metrics

HORIZONS = (15, 30, 60, 120)
SHAPES = ("running", "sawtooth", "rolling")
MIN_RATE, MAX_RATE = 0.02, 1.5
PEER = "predict_linear (OLS, last 1 h)"


@dataclass(frozen=True)
class LeakCase:
    """One simulated leak: its memory series and the minute it reaches the limit."""

    shape: str
    rate: float
    memory: pd.Series        # observed (noisy) memory utilisation, one point a minute
    oom_at: pd.Timestamp     # first minute the noise-free memory reaches the limit


def leak_case(seed: int, shape: str, limit: float = DEFAULT_LIMIT,
              start: pd.Timestamp = DEFAULT_START) -> LeakCase:
    """One leak of ``shape`` drawn from ``seed``, with enough history before it for any horizon."""
    rng = np.random.default_rng(seed)
    model = ServiceShape()
    rate = float(np.exp(rng.uniform(np.log(MIN_RATE), np.log(MAX_RATE))))
    climb = (limit - model.memory_base) / rate   # minutes from 0 to the limit, at the least load
    before = int(max(HORIZONS) + 240)
    onset_offset = before + int(rng.integers(0, 7 * 1440))
    total = onset_offset + int(climb) + 30
    index = pd.date_range(start, periods=total, freq="1min")
    minutes = np.arange(total, dtype=float)
    onset = float(onset_offset)
    if shape == "running":
        leaked = rate * np.clip(minutes - onset, 0, None)
    else:
        # the previous tooth: a deploy `gap` minutes before the last replacement (a leak in the
        # code climbs from each task's start)
        gap = float(rng.uniform(0.3, 0.9)) * climb
        previous = rate * np.clip(minutes - (onset - gap), 0, None)
        leaked = np.where(minutes < onset, previous, rate * (minutes - onset))
        if shape == "rolling":  # half the tasks replaced a minute before the other half
            half = (minutes >= onset - 1) & (minutes < onset)
            leaked = np.where(half, 0.5 * (rate * (minutes - (onset - gap))), leaked)
    load = normal_load(index, model)
    cond = Conditions(load=load, tasks=np.full(total, model.nominal_tasks), leaked_memory=leaked)
    observed = service_metrics(index, cond, model, rng)["memory_utilization"]
    quiet = model.__class__(**{**model.__dict__, "noise": 0.0})
    truth = service_metrics(index, cond, quiet, np.random.default_rng(0))["memory_utilization"]
    over = np.flatnonzero((truth.to_numpy() >= limit) & (minutes >= onset))
    if not len(over):
        raise ValueError(f"leak case {seed} never reaches the limit")
    oom_at = index[over[0]]
    return LeakCase(shape, rate, observed[index < oom_at], oom_at)


def predict_linear(memory: pd.Series, limit: float, window_minutes: int = 60) -> float | None:
    """Prometheus' predict_linear over the last hour: minutes until an OLS line reaches ``limit``."""
    end = memory.index[-1]
    recent = memory[memory.index > end - pd.Timedelta(minutes=window_minutes)]
    x = (recent.index - end).total_seconds().to_numpy() / 60
    fit = linregress(x, recent.to_numpy())
    if fit.slope <= 0:
        return None
    return max(0.0, (limit - fit.intercept) / fit.slope)


def evaluate(cases: int = 90, seed: int = 0, limit: float = DEFAULT_LIMIT) -> dict:
    """Forecast every case at every horizon; the errors by horizon for ours and the peer."""
    rows = []
    for i in range(cases):
        case = leak_case(seed * 100_000 + i, SHAPES[i % len(SHAPES)], limit)
        for horizon in HORIZONS:
            cut = case.oom_at - pd.Timedelta(minutes=horizon)
            history = case.memory[case.memory.index <= cut]
            ours = time_to_limit(history, limit)
            peer = predict_linear(history, limit)
            rows.append({"shape": case.shape, "rate": case.rate, "horizon": horizon,
                         "forecast": None if ours is None else ours.minutes,
                         "low": None if ours is None else ours.low,
                         "high": None if ours is None else ours.high,
                         "peer": peer})
    frame = pd.DataFrame(rows)
    return {"cases": cases, "seed": seed, "limit": limit, "rows": frame,
            "by_horizon": summarise(frame)}


def _relative_error(forecast: pd.Series, horizon: pd.Series) -> pd.Series:
    """|forecast - truth| / truth; a missing forecast counts as a miss (error 1, i.e. 100%)."""
    return ((forecast.astype(float) - horizon).abs() / horizon).fillna(1.0)


def summarise(frame: pd.DataFrame) -> list[dict]:
    """Per horizon: median and 90th percentile relative error, misses, interval coverage; peer too."""
    out = []
    for horizon, group in frame.groupby("horizon"):
        ours = _relative_error(group["forecast"], group["horizon"])
        peer = _relative_error(group["peer"], group["horizon"])
        high = group["high"].astype(float).fillna(np.inf)
        covered = (group["low"].astype(float) <= horizon) & (high >= horizon)
        out.append({"horizon_min": int(horizon), "median_error": float(ours.median()),
                    "p90_error": float(ours.quantile(0.9)),
                    "no_forecast": int(group["forecast"].isna().sum()),
                    "interval_coverage": float(covered.mean()),
                    "peer_median_error": float(peer.median()),
                    "peer_p90_error": float(peer.quantile(0.9)),
                    "by_shape": {shape: float(_relative_error(g["forecast"], g["horizon"]).median())
                                 for shape, g in group.groupby("shape")}})
    return out
