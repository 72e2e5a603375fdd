"""The loopback load benchmark of ``POST /v1/score`` (``aiops benchmark load``).

Two real uvicorn servers are started on 127.0.0.1, one after the other, each in its own
process with the same uvicorn settings: ``aiops serve`` on a data directory holding a champion
bundle for each simulated service, and a bare FastAPI app whose ``/v1/score`` only decodes the
JSON body (the floor any FastAPI service pays). Each gets the same requests (``--series`` series
of ``--points`` points, every service's five metrics) at a fixed rate for a fixed time from an
async httpx client, open loop: request i is sent at start + i / rate whatever happened to the
earlier ones, and its latency counts from that moment, so a server that falls behind shows it.
Figures: requests, errors (non-200 or failed), p50 / p99 / max latency, the server's RSS after
warm-up and at the end.

Bounded: at most rate x seconds requests (plus a few warm-up ones), at most ``MAX_IN_FLIGHT``
at once, a 10 s timeout each; the servers are stopped when the run ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detection.metrics import DEFAULT_SPECS

CLUSTER = "bench"
METRICS = list(DEFAULT_SPECS)
MAX_IN_FLIGHT = 256
REQUEST_TIMEOUT = 10.0
WARMUP_REQUESTS = 50
P99_RATIO_TARGET = 3.0   # issue 13: p99 within 3x of the bare FastAPI app's, in the same run
BENCH_TOKEN = "loadbench-token-not-secret-0123456789"
SCORED_AT = pd.Timestamp("2026-11-02T10:00:00Z")   # a Monday; the bundles' history ends before it


@dataclass
class LoadResult:
    """One server's figures."""

    server: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_start_mb: float
    rss_end_mb: float
    cpu_ms_per_request: float   # the server's own CPU time (user + system) per answered request
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        answered = self.requests - self.statuses.get("unanswered", 0)
        return answered / self.seconds if self.seconds else 0.0


@dataclass
class LoadReport:
    """Both servers' figures and how the run was made."""

    rate: float
    seconds: float
    series: int
    points: int
    detector: str
    payload_bytes: int
    results: list[LoadResult]
    load_average: tuple[float, float, float]

    def ours(self) -> LoadResult:
        return self.results[-1]

    def bare(self) -> LoadResult:
        return self.results[0]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["p99_target_ms"] = 20.0
        out["p99_target_ratio"] = P99_RATIO_TARGET
        out["p99_ratio"] = self.ours().p99_ms / self.bare().p99_ms if self.bare().p99_ms else None
        out["p50_ratio"] = self.ours().p50_ms / self.bare().p50_ms if self.bare().p50_ms else None
        return out

    def render(self) -> str:
        from tabulate import tabulate

        rows = [[r.server, f"{r.requests:,}", r.errors, f"{r.rate:.1f}", f"{r.p50_ms:.2f}",
                 f"{r.p99_ms:.2f}", f"{r.max_ms:.1f}", f"{r.cpu_ms_per_request:.2f}",
                 f"{r.rss_start_mb:.1f} -> {r.rss_end_mb:.1f}"]
                for r in self.results]
        bare, ours = self.bare(), self.ours()
        if bare.p50_ms and bare.p99_ms and bare.cpu_ms_per_request:
            rows.append(["ratio (ours / bare)", "", "", "", f"{ours.p50_ms / bare.p50_ms:.2f}x",
                         f"{ours.p99_ms / bare.p99_ms:.2f}x", "",
                         f"{ours.cpu_ms_per_request / bare.cpu_ms_per_request:.2f}x", ""])
        table = tabulate(rows, headers=["server", "requests", "errors", "answered/s", "p50 ms", "p99 ms",
                                        "max ms", "server CPU ms/req", "RSS MB (start -> end)"],
                         tablefmt="simple")
        verdict = "met" if ours.errors == 0 and ours.p99_ms <= 20.0 else "NOT met"
        within = ours.errors == 0 and ours.p99_ms <= P99_RATIO_TARGET * bare.p99_ms
        lines = [table, "",
                 f"POST /v1/score, {self.series} series x {self.points} points per request "
                 f"({self.payload_bytes:,} bytes), {self.rate:g} requests/s for {self.seconds:g} s, "
                 f"{self.detector} champions, loopback, async httpx client, open loop.",
                 f"Targets: 0 errors and p99 <= 20 ms: {verdict}; 0 errors and p99 within "
                 f"{P99_RATIO_TARGET:g}x of the bare app's ({P99_RATIO_TARGET * bare.p99_ms:.1f} ms): "
                 f"{'met' if within else 'NOT met'}.",
                 "Server CPU counts from the end of the warm-up requests. Load average at start: "
                 + ", ".join(f"{x:.2f}" for x in self.load_average) + f" ({os.cpu_count()} cores)."]
        for r in self.results:
            if r.first_error:
                lines.append(f"{r.server}: first error: {r.first_error}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- what is served


def service_names(n_services: int) -> list[str]:
    return [f"svc-{i:03d}" for i in range(n_services)]


def write_bundles(model_dir: Path, services: list[str], detector: str = "robust_z", days: int = 14,
                  seed: int = 7, cluster: str = CLUSTER) -> None:
    """A champion bundle for each service, fitted on simulated history ending at ``SCORED_AT``.

    One detector is fitted and saved under every service's name (they are the same service
    shape; fitting it once keeps the set-up short).
    """
    from detection.ensemble import ServiceDetector
    from detection.zscore import RobustZDetector
    from models.bundle import save_bundle
    from models.signing import local_key
    from simulation.physics import ServiceShape, history

    frame = history(SCORED_AT.floor("D"), days, ServiceShape(), np.random.default_rng(seed))
    if detector == "robust_z":
        model: Any = RobustZDetector().fit(frame)
    elif detector == "ensemble":
        model = ServiceDetector().fit(frame)
    else:
        raise ValueError(f"unknown detector {detector!r}; known: robust_z, ensemble")
    window = (frame.index[0].isoformat(), frame.index[-1].isoformat())
    # signed with the data directory's key, which the served process finds there too
    key = local_key(model_dir.parent, create=True, announce=lambda _: None)
    for service in services:
        save_bundle(model, {"detector": detector}, model_dir / f"{cluster}--{service}", key=key,
                    metrics=list(frame.columns), data_window=window)


def score_payloads(services: list[str], points: int, n: int, seed: int = 11,
                   cluster: str = CLUSTER, spike_share: float = 0.005) -> list[bytes]:
    """``n`` encoded request bodies: every metric of every service, ``points`` minutes each.

    The values are the simulated service's normal metrics at ``SCORED_AT`` (what the champions
    were fitted on), with ``spike_share`` of the points tripled, so that the scorer finds and
    renders some anomalies, as with real traffic.
    """
    from simulation.physics import Conditions, ServiceShape, normal_load, service_metrics

    rng = np.random.default_rng(seed)
    shape = ServiceShape()
    index = pd.date_range(SCORED_AT, periods=points, freq="min")
    cond = Conditions(load=normal_load(index, shape), tasks=np.full(points, shape.nominal_tasks))
    stamps = [t.isoformat() for t in index]
    bodies = []
    for _ in range(n):
        series = []
        for service in services:
            frame = service_metrics(index, cond, shape, rng)
            for metric in METRICS:
                values = frame[metric].to_numpy()
                values = np.where(rng.random(points) < spike_share, values * 3 + 1, values)
                series.append({"cluster": cluster, "service": service, "metric": metric,
                               "timestamps": stamps, "values": [round(float(v), 4) for v in values]})
        bodies.append(json.dumps({"series": series}).encode())
    return bodies


def bare_app():
    """The floor: FastAPI decoding the same JSON body and answering a constant."""
    from fastapi import Body, FastAPI

    app = FastAPI()

    @app.post("/v1/score")
    def score(payload: Any = Body(...)) -> dict:  # noqa: B008 - FastAPI idiom
        return {"points": 0, "anomalies": 0, "services": []}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


# ---------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(command: list[str], port: int, env: dict[str, str], ready_timeout: float = 60.0
            ) -> Iterator[subprocess.Popen]:
    """A server process on 127.0.0.1:``port``, ready (``/healthz`` answers), stopped afterwards."""
    import httpx

    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"server exited with {proc.returncode}: {' | '.join(tail)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready on port {port} after {ready_timeout:g} s")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def _cpu_seconds(pid: int) -> float:
    """CPU the process used so far: what a request costs, whatever else the machine runs."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# ---------------------------------------------------------------------- the load


@contextmanager
def _no_client_pauses() -> Iterator[None]:
    """The client's garbage collector off while it sends and waits: a full collection walks
    every request task made so far (tens of ms once there are thousands) and holds back the
    requests due meanwhile, which then reach the server at once, a burst of the client's
    making that the run would charge to the server. Collected once at the end; what piles up
    meanwhile is bounded, as the run is, by rate x seconds requests."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


async def _load(url: str, bodies: list[bytes], rate: float, seconds: float, headers: dict[str, str],
                warm: Callable[[], None] = lambda: None
                ) -> tuple[list[float], dict[str, int], int, str | None, float]:
    """Send ``rate * seconds`` requests open loop; latencies (s), statuses, errors, first error.
    ``warm`` is called once the warm-up requests are answered, before the measured ones."""
    import httpx

    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    first_error: str | None = None
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT,
                                 headers={"content-type": "application/json", **headers}) as client:
        async def one(i: int, due: float) -> None:
            nonlocal errors, first_error
            async with gate:
                try:
                    response = await client.post(url, content=bodies[i % len(bodies)])
                    key = str(response.status_code)
                    if response.status_code != 200:
                        errors += 1
                        first_error = first_error or f"HTTP {key}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    errors += 1
                    first_error = first_error or f"{key}: {exc}"
                latencies.append(time.perf_counter() - due)
                statuses[key] = statuses.get(key, 0) + 1

        for i in range(WARMUP_REQUESTS):   # connections open, code paths warm; not counted
            response = await client.post(url, content=bodies[i % len(bodies)])
            if response.status_code != 200:
                raise RuntimeError(f"warm-up request to {url} answered {response.status_code}: "
                                   f"{response.text[:300]}")
        latencies.clear()
        warm()
        tasks = []
        with _no_client_pauses():
            start = time.perf_counter()
            for i in range(total):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, due)))
            # Bounded in time too: what is not answered REQUEST_TIMEOUT after the last send is an error.
            done, pending = await asyncio.wait(tasks, timeout=max(0.0, start + seconds - time.perf_counter())
                                               + REQUEST_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                errors += len(pending)
                statuses["unanswered"] = len(pending)
                first_error = first_error or (f"{len(pending)} requests unanswered {REQUEST_TIMEOUT:g} s "
                                              "after the last was due (server saturated)")
                await asyncio.gather(*pending, return_exceptions=True)
            elapsed = time.perf_counter() - start
    return latencies, statuses, errors, first_error, elapsed


def _measure(name: str, command: list[str], port: int, env: dict[str, str], bodies: list[bytes],
             rate: float, seconds: float, headers: dict[str, str]) -> LoadResult:
    url = f"http://127.0.0.1:{port}/v1/score"
    with running(command, port, env) as proc:
        start: dict[str, float] = {}

        def warm() -> None:   # the first requests build the stacked state: not the steady state
            start.update(rss=_rss_mb(proc.pid), cpu=_cpu_seconds(proc.pid))

        latencies, statuses, errors, first_error, elapsed = asyncio.run(
            _load(url, bodies, rate, seconds, headers, warm))
        rss_start = start["rss"]
        rss_end, cpu_used = _rss_mb(proc.pid), _cpu_seconds(proc.pid) - start["cpu"]
    ms = np.asarray(latencies) * 1000 if latencies else np.array([np.nan])
    sent = len(latencies) + statuses.get("unanswered", 0)
    answered = max(1, len(latencies) - errors + statuses.get("unanswered", 0))
    return LoadResult(name, sent, errors, elapsed, float(np.percentile(ms, 50)),
                      float(np.percentile(ms, 99)), float(np.max(ms)), rss_start, rss_end,
                      1000 * cpu_used / answered, statuses, first_error)


def run_load_benchmark(rate: float = 200.0, seconds: float = 60.0, series: int = 100, points: int = 5,
                       detector: str = "robust_z", progress=lambda _: None) -> LoadReport:
    """The whole run: bundles, payloads, the bare server, then ``aiops serve``; both figures."""
    if series < len(METRICS) or series % len(METRICS):
        raise ValueError(f"series must be a positive multiple of {len(METRICS)} (each service sends "
                         f"its {len(METRICS)} metrics), got {series}")
    if not (rate > 0 and seconds > 0 and points > 0):
        raise ValueError("rate, seconds and points must be positive")
    services = service_names(series // len(METRICS))
    load_average = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="aiops-loadbench-") as tmp:
        data_dir = Path(tmp) / "data"
        progress(f"fitting {detector} champions for {len(services)} services")
        write_bundles(data_dir / "models", services, detector)
        bodies = score_payloads(services, points, n=20)
        env = {**os.environ, "AIOPS_DATA_DIR": str(data_dir), "AIOPS_API_TOKENS": BENCH_TOKEN}
        uvicorn_flags = ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
        results = []
        port = _free_port()
        progress(f"bare FastAPI endpoint: {rate:g} requests/s for {seconds:g} s")
        results.append(_measure("bare FastAPI", [sys.executable, "-m", "uvicorn", "--factory",
                                                 "harness.loadbench:bare_app", "--port", str(port),
                                                 *uvicorn_flags], port, env, bodies, rate, seconds, {}))
        port = _free_port()
        progress(f"aiops serve: {rate:g} requests/s for {seconds:g} s")
        results.append(_measure("aiops serve", [sys.executable, "-m", "service.cli", "serve",
                                                "--port", str(port), *uvicorn_flags], port, env,
                                bodies, rate, seconds, {}))
    return LoadReport(rate, seconds, series, points, detector, len(bodies[0]), results, load_average)
