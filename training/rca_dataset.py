"""Labelled incidents from the simulator's physics, for training and benchmarking the classifier.

Each simulated *service* draws its own shape from wide ranges (peak load from 30 to 50,000
requests a minute, 1 to 32 tasks, CPU and memory levels, service time, utilisation, error
background, noise from a third to three times the default, traffic with its own daily peak
hour, amplitude, second harmonic, weekend share and slow drift, 3 to 14 days of history so
both hour-of-week and cold-start day-type x hour baselines occur). Its baseline detector is
fitted on that history exactly as ``aiops baseline`` does. Then several faults are played on
it, each with its own intensity, onset (sudden or ramped over up to 20 minutes), side
effects, missing metrics, gaps and ECS context, and the incident is opened the way the
watcher opens one (``open_after`` anomalous periods within ``group_window``). Its features are
built in one of four forms: the watcher's window with baseline spreads, the window without
spreads (as the skeleton's watcher passes it), the operator's JSON payload (anomaly strings
and a few metric values), parsed by the same parser the CLI and the API use, or a history and a
window as ``aiops rca --history H --window W`` reads them (``csv``), through the same code.

Domain randomisation, so that nothing is learnt from one simulator's scale, units or sampling:
the csv form samples every 1 s to 5 min (counts per period, noise larger when finer), with 60
to 3,000 rows of history; up to two metrics missing and scattered gaps; co-moving symptoms (a
leak that makes GC burn CPU, memory that jumps with a CPU fault, a slow dependency that lowers
CPU while latency climbs, a bad deploy that is also slower); deployments without errors (a
quarter of the other faults come with an unrelated deployment in the last two hours); and
fault-free stretches (:data:`rca.semantics.NO_FAULT`, truth ``unknown``) as hard negatives:
plain noise, a deployment (memory back down, CPU a little up for a minute or two, no errors),
or a dip in traffic, in the csv form only, kept when an incident opened on it (the hard
ones: a window with nothing lasting is ``unknown`` by the guards before any model; taught as
fault-free too, those quiet windows made weak real faults look fault-free). In the watcher's
forms a fault-free stretch opens an incident only on noise, whose first periods look like a
fault's; labelled fault-free they taught the model to doubt the first periods of real faults
(the demo's memory leak fell below the restart floor).

The truth is the response matrix read on what is observable when the incident opens: the
error-rate row by the count against the boundary, "with errors" by whether errors are above
their baseline, and the recent-deployment guard. A fault whose own signature metric is not
yet outside its baseline when the incident opens is not a fair question and is left out
(counted in ``Generated.skipped``).

Seeds: training draws services from :data:`TRAIN_SEEDS`, the benchmark from
:data:`HOLDOUT_SEEDS`; the two ranges do not overlap, so no held-out service, fault draw or
noise was seen in training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from detection.zscore import RobustZDetector
from rca.features import EcsContext, Features, context_features, incident_features
from rca.payload import PayloadError, parse_payload
from rca.semantics import NO_FAULT, matrix_row, near_oom
from rca.vectorize import CPU, ERRORS, HEALTH_METRICS, LATENCY, MEMORY, MODEL_METRICS
from rca.window import MIN_HISTORY_ROWS, opening, window_features
from simulation.physics import Conditions, ServiceShape, service_metrics

TRAIN_SEEDS = range(1_000_000, 5_000_000)
HOLDOUT_SEEDS = range(9_000_000, 9_500_000)
SCENARIOS = ("load_surge", "cpu_regression", "overload_errors", "memory_leak", "error_trickle",
             "bad_deploy", "slow_dependency", NO_FAULT)
SIGNATURE = {"load_surge": CPU, "cpu_regression": CPU, "overload_errors": CPU, "memory_leak": MEMORY,
             "error_trickle": ERRORS, "bad_deploy": ERRORS, "slow_dependency": LATENCY}
FORMS = ("window", "window_no_spread", "payload", "csv")
FORM_WEIGHTS = (0.3, 0.1, 0.3, 0.3)
SAMPLING_SECONDS = (1, 5, 10, 30, 60, 120, 300)        # the csv form's sampling periods
SAMPLING_WEIGHTS = (0.15, 0.1, 0.1, 0.1, 0.3, 0.05, 0.2)
START = pd.Timestamp("2026-03-02 00:00", tz="UTC")   # a Monday; each service's history ends 0-27 days on
PRE_MINUTES = 20      # normal minutes before the onset, so the feature window starts clean
MAX_WAIT = 60         # minutes after onset within which the incident must open
FEATURE_WINDOW = 15   # minutes of window the watcher hands to the features (plus the current one)
OVERLOAD_SHARE = 1.15
CPU_SCENARIOS = ("load_surge", "cpu_regression", "overload_errors")
CO_MOVING_MEMORY = 0.3   # share of CPU faults whose memory jumps too (domain randomisation)
UNRELATED_DEPLOYMENT = ("load_surge", "cpu_regression", "overload_errors", "memory_leak", "slow_dependency",
                        NO_FAULT)
FAMILY = {"load_surge": "high_cpu", "cpu_regression": "high_cpu", "overload_errors": "high_cpu",
          "memory_leak": "memory_leak", "error_trickle": "error_rate", "bad_deploy": "error_rate",
          "slow_dependency": "slow_response"}


@dataclass(frozen=True)
class LabelledIncident:
    """One simulated incident as a classifier sees it, and the truth."""

    features: Features
    cause: str
    scenario: str
    form: str
    seed: int
    delay_minutes: int
    service: dict = field(default_factory=dict)   # the simulated service's shape, for slicing


@dataclass
class Generated:
    incidents: list[LabelledIncident] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)   # reason -> count


@dataclass(frozen=True)
class Rules:
    """The parts of the playbook and the watcher that define an incident and its truth."""

    error_boundary: int = 10
    recent_deployment_minutes: float = 60.0
    threshold: float = 4.0
    open_after: int = 2
    group_window: int = 3
    scoring_seconds: float = 60.0


@dataclass(frozen=True)
class Traffic:
    """A daily curve with its own peak hour, depth, second harmonic, weekend share and drift."""

    peak_hour: float
    depth: float
    second: float
    second_hour: float
    drift: float

    def load(self, index: pd.DatetimeIndex, shape: ServiceShape, rng: np.random.Generator) -> np.ndarray:
        hours = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
        daily = (1 - self.depth) + self.depth * (0.5 - 0.5 * np.cos(2 * np.pi * (hours - self.peak_hour
                                                                                  + 12) / 24))
        daily = daily * (1 + self.second * np.cos(4 * np.pi * (hours - self.second_hour) / 24))
        weekly = np.where(index.day_of_week.to_numpy() >= 5, shape.weekend_factor, 1.0)
        drift = np.exp(_ar1(len(index), self.drift, 0.999, rng))
        return shape.peak_rpm * np.clip(daily, 0.05, None) * weekly * drift


def _ar1(n: int, sigma: float, phi: float, rng: np.random.Generator) -> np.ndarray:
    """A slow AR(1) wander with stationary standard deviation ``sigma``."""
    if sigma <= 0:
        return np.zeros(n)
    from scipy.signal import lfilter
    shocks = rng.normal(0, sigma * np.sqrt(1 - phi ** 2), n)
    return lfilter([1.0], [1.0, -phi], shocks)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(10 ** rng.uniform(np.log10(low), np.log10(high)))


def random_service(rng: np.random.Generator) -> tuple[ServiceShape, Traffic]:
    """A service drawn from wide ranges, so nothing is tuned to one shape."""
    cpu_idle = rng.uniform(1, 15)
    shape = ServiceShape(
        peak_rpm=_log_uniform(rng, 30, 50_000), nominal_tasks=int(round(_log_uniform(rng, 1, 32))),
        cpu_idle=cpu_idle, cpu_at_peak=rng.uniform(10, min(70, 85 - cpu_idle)),
        memory_base=rng.uniform(15, 70), memory_at_peak=rng.uniform(0, 10),
        service_time=_log_uniform(rng, 0.01, 1.0), utilisation_at_peak=rng.uniform(0.15, 0.7),
        base_error_rate=_log_uniform(rng, 0.01, 3.0), weekend_factor=rng.uniform(0.3, 1.0),
        noise=_log_uniform(rng, 0.3, 3.0))
    traffic = Traffic(peak_hour=rng.uniform(0, 24), depth=rng.uniform(0.1, 0.8),
                      second=rng.uniform(0, 0.25), second_hour=rng.uniform(0, 24),
                      drift=rng.uniform(0, 0.08))
    return shape, traffic


@dataclass
class _Fault:
    """What one fault does to a segment of minutes (onset at ``i0``)."""

    load_factor: np.ndarray
    leaked: np.ndarray
    errors: np.ndarray
    latency_add: np.ndarray
    cpu_factor: np.ndarray
    latency_factor: np.ndarray
    deployed_at: float | None = None  # minutes after the onset a deployment started the fault (0: with it)
    timeouts: float = 0.0            # errors as a fraction of requests (slow dependency)
    tasks: np.ndarray | None = None  # running tasks per minute, when the fault changes them


def _fault(scenario: str, minutes: np.ndarray, shape: ServiceShape, rng: np.random.Generator) -> _Fault:
    """What ``scenario`` does at each point, ``minutes`` after its onset (any sampling period)."""
    n = len(minutes)
    ramp = 0 if rng.random() < 0.5 else int(rng.integers(1, 21))
    prof = np.clip((minutes + 1) / max(ramp, 1), 0, 1) * (minutes >= 0)
    ones, zeros = np.ones(n), np.zeros(n)
    f = _Fault(ones.copy(), zeros.copy(), zeros.copy(), zeros.copy(), ones.copy(), ones.copy())
    if scenario == NO_FAULT:
        _benign(f, minutes, shape, rng)
    elif scenario in ("load_surge", "overload_errors"):
        _more_load_per_task(f, scenario, minutes, prof, shape, rng)
    elif scenario == "cpu_regression":
        g = rng.uniform(0.3, 2.0)
        f.cpu_factor = 1 + g * prof
        f.latency_factor = 1 + rng.uniform(0, 0.5) * g * prof
        if rng.random() < 0.6:
            f.deployed_at = 0.0
    elif scenario == "memory_leak":
        rate = _log_uniform(rng, 0.1, 3.0)
        f.leaked = rate * np.clip(minutes + 1, 0, None)
        if rng.random() < 0.3:  # garbage collection works harder as the heap fills
            f.cpu_factor = 1 + rng.uniform(0.002, 0.02) * f.leaked
            f.latency_factor = 1 + rng.uniform(0, 0.02) * f.leaked
        if rng.random() < 0.25:  # the leak shipped with a deployment
            f.deployed_at = 0.0
    elif scenario == "error_trickle":
        f.errors = _log_uniform(rng, 1, 40) * prof
    elif scenario == "bad_deploy":
        rollout = np.clip((minutes + 1) / max(int(rng.integers(0, 11)), 1), 0, 1) * (minutes >= 0)
        f.errors = _log_uniform(rng, 2, 300) * rollout
        f.deployed_at = 0.0
        if rng.random() < 0.3:  # the new revision is also heavier or slower
            f.cpu_factor = 1 + rng.uniform(0.1, 1.0) * rollout
            f.latency_factor = 1 + rng.uniform(0, 1.0) * rollout
    elif scenario == "slow_dependency":
        base = shape.service_time / (1 - shape.utilisation_at_peak * 0.7)
        f.latency_add = base * _log_uniform(rng, 0.4, 15) * prof
        if rng.random() < 0.25:  # calls to the dependency time out
            f.timeouts = _log_uniform(rng, 0.0005, 0.01)
            f.errors = prof.copy()
        if rng.random() < 0.4:  # threads wait on the dependency: CPU falls a little, not rises
            f.cpu_factor = 1 - rng.uniform(0.05, 0.4) * prof
    else:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    if scenario in CPU_SCENARIOS and rng.random() < CO_MOVING_MEMORY:
        f.leaked = _memory_bump(minutes, rng)
    return f


def _benign(f: _Fault, minutes: np.ndarray, shape: ServiceShape, rng: np.random.Generator) -> None:
    """What a fault-free stretch may hold (hard negatives): nothing but noise, a deployment (new
    tasks: memory back down, CPU a little up for a minute or two, no errors), or a dip in traffic
    (everything falls, which is no symptom).

    A deployment's warm-up is kept small on purpose: a CPU rise that opens an incident looks the
    same whether it will pass or not (a CPU fault on rca-dev whose memory sat below its baseline
    was read as a warm-up when warm-ups of up to +80% CPU were labelled fault-free), so the
    negatives teach what is visibly no fault, not a guess about the future.
    """
    way = rng.choice(["quiet", "deployment", "dip"], p=[0.5, 0.3, 0.2])
    if way == "deployment":
        f.deployed_at = 0.0
        warm = (minutes >= 0) & (minutes < rng.uniform(0.5, 2))
        f.cpu_factor = 1 + rng.uniform(0, 0.25) * warm
        if rng.random() < 0.5:
            f.leaked = -rng.uniform(0, 0.3) * shape.memory_base * (minutes >= 0)
    elif way == "dip":
        f.load_factor = 1 - rng.uniform(0.2, 0.7) * ((minutes >= 0) & (minutes < rng.uniform(3, 30)))


def _memory_bump(minutes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Memory that jumps with a CPU fault (buffers, threads, a JIT) and may fall back: points.

    Real CPU faults move memory too (in the Nezha benchmark memory jumped by 25 to 93 points in
    13 of 16 CPU-contention cases), and none of it is a leak: the jump comes with or just after
    the CPU's, stays flat or falls back, and does not keep climbing.
    """
    lag = int(rng.integers(0, 4))
    size = rng.uniform(5.0, 45.0)
    up = (minutes >= lag).astype(float)
    if rng.random() < 0.5:  # falls back after a few minutes
        up *= (minutes < lag + int(rng.integers(2, 8))).astype(float)
    return size * up


def _more_load_per_task(f: _Fault, scenario: str, minutes: np.ndarray, prof: np.ndarray,
                        shape: ServiceShape, rng: np.random.Generator) -> None:
    """More requests per task than the tasks are sized for, in one of three ways.

    - a surge of traffic (ramped or sudden);
    - a surge that began up to 19 minutes earlier while extra tasks absorbed it, which are
      then lost (a scale-in, a crash), so CPU and errors rise long after the requests did;
    - a capacity loss with no surge: some tasks die and the rest carry their share.

    Overload errors grow as each task's share passes 115% of its usual one (the simulator's rule).
    """
    nominal = shape.nominal_tasks
    way = rng.choice(["surge", "absorbed", "lost"], p=[0.5, 0.3, 0.2]) if nominal >= 2 else "surge"
    tasks = np.full(len(minutes), float(nominal))
    if way == "surge":
        factor = 1 + (_log_uniform(rng, 0.2, 2.5) if scenario == "load_surge" else rng.uniform(0.35, 2.5))
        f.load_factor = 1 + (factor - 1) * prof
    elif way == "absorbed":
        lead = int(rng.integers(2, PRE_MINUTES))
        extra = int(rng.integers(1, nominal + 1))
        factor = 1 + rng.uniform(0.35, 2.0)
        f.load_factor = np.where(minutes >= -lead, factor, 1.0)
        tasks = np.where(minutes >= 0, nominal, nominal + extra).astype(float)
    else:
        lost = int(rng.integers(1, max(nominal // 2, 1) + 1))
        tasks = np.where(minutes >= 0, nominal - lost, nominal).astype(float)
    f.tasks = tasks
    share = f.load_factor * nominal / tasks
    if scenario == "overload_errors":
        peak = max(float(share.max()), OVERLOAD_SHARE + 0.2)
        over = np.clip((share - OVERLOAD_SHARE) / (peak - OVERLOAD_SHARE), 0, 1)
        f.errors = _log_uniform(rng, 3, 200) * over


class _Service:
    """One simulated service with its fitted detector, ready to play faults."""

    def __init__(self, seed: int, rules: Rules, start: pd.Timestamp = START):
        self.seed = seed
        self.rules = rules
        self.rng = np.random.default_rng(seed)
        self.shape, self.traffic = random_service(self.rng)
        days = int(self.rng.integers(3, 15))
        self.history_end = start + pd.Timedelta(days=int(self.rng.integers(0, 28)))
        self.index = pd.date_range(self.history_end - pd.Timedelta(days=days), periods=(days + 3) * 1440,
                                   freq="1min")
        self.load = self.traffic.load(self.index, self.shape, self.rng)
        self.n_history = days * 1440
        history = self._metrics(self.index[:self.n_history], self.load[:self.n_history])
        self.detector = RobustZDetector(threshold=rules.threshold).fit(history)

    def _metrics(self, index: pd.DatetimeIndex, normal: np.ndarray, fault: _Fault | None = None,
                 period_minutes: float = 1.0, noise: float = 1.0) -> pd.DataFrame:
        """The metrics at ``index`` (any sampling period) under ``fault``, with noise.

        The physics speaks per minute; at another period the counts are per period (requests
        scaled, errors drawn as an overdispersed Poisson count of the period's expected errors)
        and the noise is ``noise`` times the service's (finer sampling averages over less).
        """
        n = len(index)
        shape = self.shape if noise == 1.0 else replace(self.shape, noise=self.shape.noise * noise)
        tasks = np.full(n, self.shape.nominal_tasks)
        fault_errors: np.ndarray | float = 0.0
        if fault is None:
            frame = service_metrics(index, Conditions(load=normal, tasks=tasks), shape, self.rng)
        else:
            load = normal * fault.load_factor
            fault_errors = fault.errors * (load * fault.timeouts if fault.timeouts else 1.0)
            tasks = tasks if fault.tasks is None else fault.tasks
            cond = Conditions(load=load, tasks=tasks, leaked_memory=fault.leaked, fault_errors=fault_errors,
                              latency_add=fault.latency_add)
            frame = service_metrics(index, cond, shape, self.rng)
            idle = self.shape.cpu_idle
            cpu = idle + (frame["cpu_utilization"] - idle) * fault.cpu_factor
            frame["cpu_utilization"] = np.clip(cpu, 0, 100)
            frame["response_time"] = frame["response_time"] * fault.latency_factor
        if period_minutes != 1.0:
            rng = self.rng
            expected = (self.shape.base_error_rate + np.clip(fault_errors, 0, None)) * period_minutes
            frame["error_count"] = rng.poisson(expected * rng.gamma(4.0, 0.25, n)).astype(float)
            frame["request_count"] = np.rint(frame["request_count"] * period_minutes)
            if noise > 1.0:
                frame["response_time"] *= rng.lognormal(0, 0.05 * (noise - 1.0), n)
        return frame

    def play(self, scenario: str) -> tuple[LabelledIncident | None, str]:
        """One fault (or a fault-free stretch) on this service, in one input form; the
        incident, or None and why it was left out."""
        rng = self.rng
        forms = ["csv"] if scenario == NO_FAULT else list(FORMS)
        weights = np.array([FORM_WEIGHTS[FORMS.index(f)] for f in forms])
        form = forms[int(rng.choice(len(forms), p=weights / weights.sum()))]
        if form == "csv":
            return self._play_sampled(scenario)
        return self._play_watched(scenario, form)

    def _service_info(self, period: float = 60.0) -> dict:
        return {"peak_rpm": self.shape.peak_rpm, "nominal_tasks": self.shape.nominal_tasks,
                "noise": self.shape.noise, "service_time": self.shape.service_time,
                "history_days": self.n_history // 1440, "period_seconds": period}

    def _play_watched(self, scenario: str, form: str) -> tuple[LabelledIncident | None, str]:
        """As the watcher sees it: one-minute metrics, the detector fitted on days of history
        (faults only: a fault-free stretch is played in the csv form)."""
        rng, rules = self.rng, self.rules
        start = self.n_history + int(rng.integers(PRE_MINUTES, 3 * 1440 - MAX_WAIT - 1))
        where = slice(start - PRE_MINUTES, start + MAX_WAIT)
        minutes = np.arange(where.stop - where.start, dtype=float) - PRE_MINUTES
        fault = _fault(scenario, minutes, self.shape, rng)
        frame = self._metrics(self.index[where], self.load[where], fault)
        frame = self._degrade(frame, scenario)
        scores = self.detector.score(frame)
        health = [m for m in HEALTH_METRICS if m in scores.columns]
        hot = (scores[health] > rules.threshold).any(axis=1).to_numpy().astype(int)
        opened = np.convolve(hot, np.ones(rules.group_window, dtype=int))[:len(hot)] >= rules.open_after
        candidates = np.flatnonzero(opened[PRE_MINUTES:])
        if len(candidates) == 0:
            return None, "not detected within an hour"
        at = PRE_MINUTES + int(candidates[0])
        recent = frame.iloc[at - rules.group_window + 1:at + 1]
        anomalies = self.detector.detect(recent)
        if scenario != NO_FAULT and not any(a.metric == SIGNATURE[scenario] for a in anomalies):
            return None, "signature not visible when the incident opened"
        window = frame.iloc[at - FEATURE_WINDOW:at + 1]
        context = self._context(scenario, fault, float(minutes[at]), at)
        if form == "payload":
            features = self._payload(anomalies, window, context)
        else:
            columns = list(window.columns)
            expected = self.detector.expected_frame(window.index, columns)
            spread = None if form == "window_no_spread" else pd.DataFrame(
                {m: self.detector.baseline_.expected(m, window.index).spread for m in columns},
                index=window.index)
            features = incident_features(anomalies, window, expected, list(MODEL_METRICS),
                                         spread=spread, context=context, timeline=True)
        return self._labelled(scenario, features, form, int(minutes[at]), self._service_info())

    def _labelled(self, scenario: str, features: Features, form: str, delay: int,
                  service: dict) -> tuple[LabelledIncident | None, str]:
        if scenario == NO_FAULT:
            if near_oom(features):
                return None, "fault-free but memory near its limit"
            return LabelledIncident(features, "unknown", scenario, form, self.seed, delay, service), ""
        cause = self._truth(scenario, features)
        if cause == "unknown":
            return None, "error count not known"
        return LabelledIncident(features, cause, scenario, form, self.seed, delay, service), ""

    def _play_sampled(self, scenario: str) -> tuple[LabelledIncident | None, str]:
        """As ``aiops rca --history H --window W`` sees it: a history and a window sampled every
        1 s to 5 min, the history a few dozen to a few thousand rows right before the window,
        the window starting 2 to 10 periods before the onset; features through
        :func:`rca.window.window_features`, the very code the CLI runs."""
        rng, rules = self.rng, self.rules
        period = int(rng.choice(SAMPLING_SECONDS, p=SAMPLING_WEIGHTS))
        per_minute = period / 60.0
        noise = float(np.clip(per_minute ** -rng.uniform(0.0, 0.35), 0.4, 4.0))
        n_history = min(int(round(_log_uniform(rng, MIN_HISTORY_ROWS, 3000))), 14 * 86_400 // period)
        n_pre = int(rng.integers(2, 11))
        n_post = int(min(np.ceil(MAX_WAIT / per_minute), 3600))
        step = pd.Timedelta(seconds=period)
        onset = self.history_end + pd.Timedelta(minutes=float(rng.uniform(0, 3 * 1440 - MAX_WAIT)))
        onset = onset.floor(step)
        index = pd.date_range(onset - (n_history + n_pre) * step, periods=n_history + n_pre + n_post,
                              freq=step)
        minutes = (index - onset).total_seconds().to_numpy() / 60.0
        fault = _fault(scenario, minutes, self.shape, rng)
        frame = self._metrics(index, self.traffic.load(index, self.shape, rng), fault, per_minute, noise)
        frame = self._degrade(frame, scenario)
        history, window = frame.iloc[:n_history], frame.iloc[n_history:]
        detector = RobustZDetector(threshold=rules.threshold).fit(history)
        window = window.iloc[:max(self._cut(detector, window), n_pre + rules.group_window)]
        try:
            found = window_features(history, window, rules.threshold, rules.group_window,
                                    open_after=rules.open_after, scoring_seconds=rules.scoring_seconds,
                                    detector=detector)
        except PayloadError as exc:   # gaps left too few rows: aiops rca would refuse it too
            return None, f"refused as aiops rca would: {exc.field}"
        opened = opening(found.anomalies, window.index, rules.open_after, rules.group_window)
        if scenario == NO_FAULT and opened is None:
            return None, "fault-free: no incident opened"
        if scenario != NO_FAULT:
            if opened is None:
                return None, "not detected within an hour"
            if opened < onset:
                return None, "opened before the fault (noise)"
            recent = window.index[(window.index <= opened)][-rules.group_window:]
            if not any(a.metric == SIGNATURE[scenario] and a.timestamp in recent for a in found.anomalies):
                return None, "signature not visible when the incident opened"
        when = opened if opened is not None else window.index[-1]
        at = float((when - onset).total_seconds() / 60)
        features = dict(found.features)
        point = n_history + window.index.get_loc(when)
        features.update(context_features(self._context(scenario, fault, at, point)))
        return self._labelled(scenario, features, "csv", int(max(at, 0)), self._service_info(period))

    def _cut(self, detector: RobustZDetector, window: pd.DataFrame) -> int:
        """Rows of the window to keep: up to 0-5 periods past the first moment the watcher would
        open an incident (the features are read there anyway), all of them if it never opens."""
        rules = self.rules
        scores = detector.score(window)
        health = [m for m in HEALTH_METRICS if m in scores.columns]
        hot = (scores[health] > rules.threshold).any(axis=1).to_numpy().astype(int)
        opened = np.flatnonzero(np.convolve(hot, np.ones(rules.group_window, dtype=int))[:len(hot)]
                                >= rules.open_after)
        return len(window) if len(opened) == 0 else int(opened[0]) + 1 + int(self.rng.integers(0, 6))

    def _degrade(self, frame: pd.DataFrame, scenario: str) -> pd.DataFrame:
        """Metrics missing altogether (never the fault's own signature) and scattered gaps."""
        rng = self.rng
        optional = [m for m in frame.columns if m != SIGNATURE.get(scenario)]
        drop = int(rng.choice([0, 1, 2], p=[0.65, 0.25, 0.1]))
        frame = frame.drop(columns=list(rng.choice(optional, size=drop, replace=False)))
        if rng.random() < 0.2:
            gaps = rng.random(frame.shape) < rng.uniform(0.02, 0.1)
            frame = frame.mask(gaps)
        return frame

    def _context(self, scenario: str, fault: _Fault, at_minutes: float, at: int) -> EcsContext | None:
        """What ECS would say ``at_minutes`` after the onset (point ``at``), or None (not known, 40%).

        Deployments without errors: a quarter of the faults that are not the errors' own come
        with an unrelated deployment in the last two hours (what a rollback must not be read from).
        """
        rng = self.rng
        if rng.random() < 0.4:
            return None
        if fault.deployed_at is not None:
            minutes = max(at_minutes - fault.deployed_at, 0.0)
        elif rng.random() < 0.25 and scenario in UNRELATED_DEPLOYMENT:
            minutes = rng.uniform(2, 120)
        else:
            minutes = _log_uniform(rng, self.rules.recent_deployment_minutes + 1, 60 * 24 * 60)
        oom = int(rng.integers(1, self.shape.nominal_tasks + 1)) \
            if scenario == "memory_leak" and rng.random() < 0.3 else 0
        running = self.shape.nominal_tasks if fault.tasks is None else int(fault.tasks[at])
        return EcsContext(minutes_since_deployment=minutes, oom_stopped_tasks=oom,
                          running_tasks=running, desired_tasks=self.shape.nominal_tasks)

    def _truth(self, scenario: str, features: Features) -> str:
        """The matrix row (:func:`rca.semantics.matrix_row`) of the fault's symptom family, read on
        what the incident shows when it opens (its features), after the recent-deployment guard."""
        rules = self.rules
        errors = features.get("errors_in_period", np.nan)
        minutes = features.get("minutes_since_deployment", np.nan)
        recent = np.isfinite(minutes) and minutes <= rules.recent_deployment_minutes
        if features.get(f"{ERRORS}_anomalous", 0.0) >= 1 and errors > rules.error_boundary and recent:
            return "error_rate_high"
        return matrix_row(FAMILY[scenario], features, rules.error_boundary)

    def _payload(self, anomalies, window: pd.DataFrame, context: EcsContext | None) -> Features:
        """The incident as an operator's payload, through the same parser the CLI and API use."""
        rng = self.rng
        latest = {a.metric: a for a in anomalies}
        texts, flagged = [], set(latest)
        for anomaly in latest.values():
            if rng.random() < 0.2:
                texts.append({"metric": anomaly.metric, "value": anomaly.value, "expected": anomaly.expected})
            else:
                texts.append(anomaly.render())
        last = window.iloc[-1]
        metrics = {m: float(last[m]) for m in window.columns if np.isfinite(last[m])
                   and rng.random() < (0.8 if m in flagged else 0.4)}
        payload = {"anomalies": texts, "metrics": metrics}
        if context is not None and rng.random() < 0.5:
            payload["context"] = {k: v for k, v in vars(context).items() if v is not None}
        return parse_payload(payload).features(list(MODEL_METRICS))


def _service_batch(seeds: list[int], per_service: int, rules: Rules, start: pd.Timestamp) -> Generated:
    out = Generated()
    for seed in seeds:
        service = _Service(seed, rules, start)
        order = service.rng.permutation(SCENARIOS)
        for k in range(per_service):
            incident, why = service.play(str(order[k % len(order)]))
            if incident is None:
                out.skipped[why] += 1
            else:
                out.incidents.append(incident)
    return out


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def generate_incidents(n_services: int, seeds: range = TRAIN_SEEDS, first: int = 0,
                       per_service: int = len(SCENARIOS), rules: Rules | None = None, n_jobs: int = 1,
                       start: pd.Timestamp = START) -> Generated:
    """Simulate ``n_services`` services (seeds ``seeds[first:first + n_services]``), each
    playing ``per_service`` scenarios (each of the seven faults and a fault-free stretch once per
    eight), and label the incidents.

    Parameters
    ----------
    n_services : how many simulated services.
    seeds : the seed range: :data:`TRAIN_SEEDS` for training, :data:`HOLDOUT_SEEDS` for benchmarks.
    first : offset into ``seeds`` (to draw a fresh, disjoint batch from the same range).
    per_service : faults played on each service.
    rules : the boundary, the guards and the watcher's grouping that define the truth.
    n_jobs : processes for joblib (services are independent).
    start : the simulated calendar's origin; each service's history ends 0-27 days after it, so
        every weekday and hour occurs (the same seeds give the same incidents for one start).
    """
    if n_services < 1 or per_service < 1:
        raise ValueError("n_services and per_service must be at least 1")
    if first + n_services > len(seeds):
        raise ValueError(f"only {len(seeds)} seeds in {seeds}; asked for {first + n_services}")
    rules = rules or Rules()
    chosen = list(seeds[first:first + n_services])
    size = max(1, len(chosen) // (4 * max(n_jobs, 1)))
    parts = Parallel(n_jobs=n_jobs)(delayed(_service_batch)(chunk, per_service, rules, start)
                                    for chunk in _chunks(chosen, size))
    out = Generated()
    for part in parts:
        out.incidents.extend(part.incidents)
        out.skipped.update(part.skipped)
    return out
