"""The service's physics: what its metrics are, given load, tasks and faults. Pure numpy.

Per-task CPU and latency fall as tasks are added (the load is shared); memory carries what a
leak added to the tasks that were running when it began; errors come from faults. Noise is
drawn from the generator handed in, so a seed fixes a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ServiceShape:
    """The simulated service's normal behaviour.

    Load peaks at ``peak_rpm`` requests a minute at 16:00 UTC on weekdays, falls to about 40%
    at 04:00, and weekends carry ``weekend_factor`` of weekday traffic. With ``nominal_tasks``
    tasks, CPU runs from about 20% to 44% and latency from 0.12 s to 0.2 s.
    """

    peak_rpm: float = 6000.0
    nominal_tasks: int = 2
    cpu_idle: float = 4.0
    cpu_at_peak: float = 40.0
    memory_base: float = 42.0
    memory_at_peak: float = 3.0
    service_time: float = 0.1
    utilisation_at_peak: float = 0.5
    base_error_rate: float = 0.3
    weekend_factor: float = 0.75
    noise: float = 1.0


def normal_load(index: pd.DatetimeIndex, shape: ServiceShape) -> np.ndarray:
    """Requests a minute the service normally gets at ``index`` (no noise, no faults)."""
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
    daily = 0.55 + 0.45 * (0.5 - 0.5 * np.cos(2 * np.pi * (hours - 4.0) / 24.0))
    weekly = np.where(index.day_of_week.to_numpy() >= 5, shape.weekend_factor, 1.0)
    return shape.peak_rpm * daily * weekly


@dataclass
class Conditions:
    """Everything besides time that sets the metrics, one value (or array) per minute."""

    load: np.ndarray
    tasks: np.ndarray
    leaked_memory: np.ndarray | float = 0.0
    fault_errors: np.ndarray | float = 0.0
    latency_add: np.ndarray | float = 0.0


def service_metrics(index: pd.DatetimeIndex, cond: Conditions, shape: ServiceShape,
                    rng: np.random.Generator) -> pd.DataFrame:
    """The canonical metrics at ``index`` under ``cond``, with noise."""
    n = len(index)
    tasks = np.maximum(np.asarray(cond.tasks, dtype=float), 1.0)
    share = (cond.load / shape.peak_rpm) * (shape.nominal_tasks / tasks)
    cpu = shape.cpu_idle + shape.cpu_at_peak * share + rng.normal(0, shape.noise, n)
    memory = (shape.memory_base + shape.memory_at_peak * share + cond.leaked_memory
              + rng.normal(0, 0.7 * shape.noise, n))
    rho = np.clip(shape.utilisation_at_peak * share, 0.0, 0.95)
    latency = (shape.service_time / (1.0 - rho) + cond.latency_add) * rng.lognormal(0, 0.03, n)
    fault_errors = np.asarray(cond.fault_errors, dtype=float) * np.ones(n)
    errors = rng.poisson(shape.base_error_rate, n) + np.rint(
        np.clip(rng.normal(fault_errors, 0.15 * fault_errors), 0, None))
    requests = np.rint(cond.load * rng.normal(1.0, 0.02, n))
    return pd.DataFrame({
        "cpu_utilization": np.clip(cpu, 0, 100),
        "memory_utilization": np.clip(memory, 0, 100),
        "error_count": errors,
        "response_time": latency,
        "request_count": np.clip(requests, 0, None),
    }, index=index)


def history(end: pd.Timestamp, days: int, shape: ServiceShape, rng: np.random.Generator,
            freq: str = "1min") -> pd.DataFrame:
    """``days`` of normal one-minute metrics ending just before ``end``, with nominal tasks."""
    index = pd.date_range(end=pd.Timestamp(end) - pd.Timedelta(freq), periods=days * 1440, freq=freq)
    load = normal_load(index, shape)
    cond = Conditions(load=load, tasks=np.full(len(index), shape.nominal_tasks))
    return service_metrics(index, cond, shape, rng)
