"""The training-scale benchmark: many one-minute series fitted at once, against naive STL.

``run_fit_benchmark`` simulates ``services`` services of the five canonical metrics (1,000
series by default: 200 services x 5 metrics, 14 days of one-minute points each, 20.16 M points),
fits them through the pipeline's own parallel engine (``training.parallel.fit_all``, one job
per service, every core), and measures in the same run the naive baseline the issue names:
statsmodels ``STL(period=1440)`` on a sample of the same series, its mean time per series
extrapolated to all of them (serially, and divided by the cores for a fair parallel figure).
The fit is timed until every service's fitted state (the ``state.npz`` bytes its bundle
stores, encoded in the worker that fitted it) is back in this process; decoding a state back
into a model is left to whoever needs the model (``Fitted.model``: the pipeline, to evaluate).

Peak memory is the largest sum of resident memory of this process and its worker processes,
sampled every 0.1 s while fitting; the fit's CPU time is theirs over the same span. The load
average is printed beside the figures because the machine may be shared: a busy neighbour
slows both sides of the ratio, not only ours, and stretches the wall time far more than the
CPU time (which, divided by the cores, is the wall time the fit takes with the cores to itself).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from simulation.physics import ServiceShape, history
from training.detectors import detector_config
from training.parallel import FitJob, effective_jobs, iter_fits

POINTS_PER_DAY = 1440
END = pd.Timestamp("2026-11-16", tz="UTC")


@dataclass(frozen=True)
class FitBenchmarkReport:
    """The figures of one benchmark run."""

    detector: str
    services: int
    series: int
    days: int
    points: int
    cores: int
    n_jobs: int
    backend: str
    fit_seconds: float
    fit_cpu_seconds: float
    points_per_second: float
    peak_memory_gb: float
    stl_sample: int
    stl_seconds_per_series: float
    stl_serial_estimate_s: float
    stl_parallel_estimate_s: float
    speedup: float
    load_before: float
    load_after: float
    target_seconds: float = 60.0
    memory_limit_gb: float = 4.0

    @property
    def within_target(self) -> bool:
        return self.fit_seconds <= self.target_seconds and self.peak_memory_gb < self.memory_limit_gb

    def to_dict(self) -> dict:
        return {**asdict(self), "within_target": self.within_target}

    def render(self) -> str:
        rows = [
            ("detector fitted", self.detector),
            ("series (services x metrics)",
             f"{self.series:,} ({self.services} x {self.series // self.services})"),
            ("points", f"{self.points:,} ({self.days} days of one-minute points each)"),
            ("workers", f"{self.n_jobs} ({self.backend}) on {self.cores} cores"),
            ("fit wall time", f"{self.fit_seconds:.1f} s (target <= {self.target_seconds:.0f} s)"),
            ("fit CPU time (process + workers)",
             f"{self.fit_cpu_seconds:.1f} s, {self.fit_cpu_seconds / self.services:.2f} s per service "
             f"({self.fit_cpu_seconds / self.cores:.1f} s on {self.cores} free cores)"),
            ("throughput", f"{self.points_per_second:,.0f} points/s"),
            ("peak memory (process + workers)",
             f"{self.peak_memory_gb:.2f} GB (limit {self.memory_limit_gb:.0f} GB)"),
            ("naive STL(period=1440)", f"{self.stl_seconds_per_series:.1f} s/series on a sample of "
                                       f"{self.stl_sample}"),
            ("naive, extrapolated", f"{self.stl_serial_estimate_s:,.0f} s serial, "
                                    f"{self.stl_parallel_estimate_s:,.0f} s on {self.cores} cores"),
            ("ratio (naive on all cores / ours)", f"{self.speedup:,.0f}x"),
            ("load average before / after", f"{self.load_before:.1f} / {self.load_after:.1f} "
                                            f"({self.cores} cores; above that, other work was running)"),
        ]
        width = max(len(k) for k, _ in rows)
        table = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
        if self.series < 1000 or self.days < 14:
            return table + "\n\n(the targets are set for 1,000 series of 14 days; this run is smaller)"
        verdict = "within" if self.within_target else "OUTSIDE"
        return table + (f"\n\n{verdict} the targets ({self.target_seconds:.0f} s, "
                        f"{self.memory_limit_gb:.0f} GB).")


class ProcessMeter:
    """Samples this process and its children until stopped: the peak of their summed resident
    memory, and the CPU time they spent meanwhile (user + system).

    The CPU time is what the fit costs whatever else runs on the machine: on a shared machine
    the wall time stretches with the neighbours' load, the CPU seconds hardly do, and divided by
    the cores they are the wall time the fit would take with every core to itself. A child's
    CPU is read at each sample, so one that exits between samples loses at most an interval of it.

    Finding the children reads the status of every process on the machine (1.5 ms of CPU with
    90 processes: at every sample, about a second of this process's CPU over a one-minute fit,
    counted in the fit's), so they are listed every ``relist`` seconds, and at every sample
    until one is found, and the ones found are sampled every ``interval`` (0.1 ms).
    """

    def __init__(self, interval: float = 0.1, relist: float = 1.0):
        self.interval = interval
        self.relist = relist
        self.peak = 0
        self.cpu_seconds = 0.0
        self._cpu: dict[int, float] = {}   # pid -> CPU seconds at the latest sample
        self._start: dict[int, float] = {}  # pid -> CPU seconds when metering started
        self._children: list = []           # each child found (psutil.Process)
        self._listed = -float("inf")        # time.monotonic() of the latest listing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        self._cpu[me.pid] = _cpu(me)
        if not self._children or time.monotonic() - self._listed >= self.relist:
            self._children, self._listed = me.children(recursive=True), time.monotonic()
        for child in self._children:
            try:
                total += child.memory_info().rss
                self._cpu[child.pid] = _cpu(child)
            except psutil.Error:
                pass  # a worker that just exited
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "ProcessMeter":
        self.peak = self._sample()
        self._start = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())
        self.cpu_seconds = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._cpu.items())


def _cpu(process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def simulated_services(services: int, days: int, seed: int = 0) -> list[pd.DataFrame]:
    """``services`` different simulated services (load, capacity and noise vary by seed)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(services):
        shape = ServiceShape(peak_rpm=float(rng.uniform(1000, 12000)), cpu_at_peak=float(rng.uniform(20, 60)),
                             memory_base=float(rng.uniform(30, 60)), noise=float(rng.uniform(0.5, 2.0)))
        out.append(history(END, days, shape, np.random.default_rng([seed, i])))
    return out


def naive_stl_seconds(series: list[np.ndarray], period: int = POINTS_PER_DAY) -> float:
    """Mean seconds statsmodels' default STL takes per series on ``series``."""
    from statsmodels.tsa.seasonal import STL

    times = []
    for values in series:
        started = time.perf_counter()
        STL(values, period=period).fit()
        times.append(time.perf_counter() - started)
    return float(np.mean(times))


def run_fit_benchmark(services: int = 200, days: int = 14, detector: str = "robust_z", n_jobs: int = -1,
                      backend: str = "loky", stl_sample: int = 2,
                      progress: Callable[[str], None] = lambda _: None) -> FitBenchmarkReport:
    """Simulate, fit through the pipeline's engine, time the naive STL sample; the figures."""
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    progress(f"simulating {services} services x 5 metrics x {days} days ...")
    frames = simulated_services(services, days)
    series = sum(f.shape[1] for f in frames)
    points = int(sum(f.size for f in frames))
    config = detector_config(detector)
    jobs = [FitJob(f"service-{i}", config, frame) for i, frame in enumerate(frames)]
    workers = effective_jobs(n_jobs, len(jobs))
    progress(f"fitting {series:,} series ({points:,} points) with {detector} on {workers} workers ...")
    failed = []
    with ProcessMeter() as meter:
        started = time.perf_counter()
        for _, fitted in iter_fits(jobs, n_jobs=n_jobs, backend=backend):
            if fitted.error:  # each model is dropped as it arrives, as the pipeline does
                failed.append(fitted.error)
        fit_seconds = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{len(failed)} fit(s) failed, e.g. {failed[0]}")
    progress(f"fitted in {fit_seconds:.1f} s; timing naive STL(period=1440) on {stl_sample} series ...")
    sample = [frames[i % len(frames)].iloc[:, i % frames[0].shape[1]].to_numpy() for i in range(stl_sample)]
    per_series = naive_stl_seconds(sample)
    serial = per_series * series
    parallel = serial / cores
    return FitBenchmarkReport(detector, services, series, days, points, cores, workers, backend,
                              fit_seconds, meter.cpu_seconds, points / fit_seconds, meter.peak / 1e9,
                              stl_sample,
                              per_series, serial, parallel, parallel / fit_seconds, load_before,
                              os.getloadavg()[0])


def log_to_mlflow(report: FitBenchmarkReport, tracking_uri: str,
                  experiment: str = "training-benchmark") -> str:
    """Record the figures as one MLflow run; its run id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"fit-{report.detector}-{report.series}") as run:
        data = report.to_dict()
        mlflow.log_params({k: data[k] for k in ("detector", "services", "series", "days", "cores",
                                                "n_jobs", "backend", "stl_sample")})
        mlflow.log_metrics({k: float(v) for k, v in data.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)
                            and k not in ("services", "series", "days", "cores", "n_jobs", "stl_sample")})
        return run.info.run_id
