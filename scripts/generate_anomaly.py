#!/usr/bin/env python3
"""Generate load against a service behind an ALB, to make an anomaly the watcher should catch.

The seed's load generator: ``scripts/generate_anomaly.py http://my-alb-123.eu-west-1.elb.amazonaws.com``
sends requests from ``--concurrency`` workers for ``--duration`` seconds (or ``--requests`` in
all), then prints what came back: requests, status classes, errors, latency percentiles and the
rate achieved. Point it at a test environment: a surge of traffic is the anomaly.

Only the URL you give is requested (with each ``--path`` appended in turn). Ctrl-C stops early
and still prints the summary.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import click
import httpx


@dataclass
class Tally:
    """What the workers saw, under one lock."""

    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, seconds: float | None) -> None:
        with self.lock:
            if status.isdigit():
                self.statuses[f"{status[0]}xx"] += 1
            else:
                self.errors[status] += 1
            if seconds is not None:
                self.latencies.append(seconds)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def check_url(ctx, param, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s) address (e.g. http://my-alb.elb.amazonaws.com)")
    return value.rstrip("/")


def worker(client: httpx.Client, urls: list[str], tally: Tally, stop: threading.Event, deadline: float,
           budget: list[int]) -> None:
    i = 0
    while not stop.is_set() and time.monotonic() < deadline:
        with tally.lock:
            if budget[0] == 0:
                return
            budget[0] -= 1
        started = time.monotonic()
        try:
            status = str(client.get(urls[i % len(urls)]).status_code)
            tally.add(status, time.monotonic() - started)
        except httpx.TimeoutException:
            tally.add("timeout", None)
        except httpx.HTTPError as exc:
            tally.add(type(exc).__name__, None)
        i += 1


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url", callback=check_url)
@click.option("--duration", default=300.0, show_default=True, type=click.FloatRange(0.1, 86_400),
              help="Seconds to keep sending.")
@click.option("--requests", "total", default=None, type=click.IntRange(1),
              help="Stop after this many requests in all.")
@click.option("--concurrency", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Requests in flight at once.")
@click.option("--path", "paths", multiple=True, help="Path to request (repeatable) [the URL itself].")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 300),
              help="Seconds before a request counts as timed out.")
def main(url: str, duration: float, total: int | None, concurrency: int, paths: tuple[str, ...],
         timeout: float) -> None:
    """Send load to URL (an ALB address) and print what came back."""
    urls = [url + (p if p.startswith("/") else f"/{p}") for p in paths] or [url]
    tally, stop = Tally(), threading.Event()
    budget = [total if total is not None else -1]
    click.echo(f"sending to {url} with {concurrency} workers for up to {duration:g} s"
               + (f" or {total} requests" if total else "") + "; Ctrl-C stops", err=True)
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=timeout, limits=limits, follow_redirects=False) as client, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker, client, urls, tally, stop, started + duration, budget)
                   for _ in range(concurrency)]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            stop.set()
    elapsed = max(time.monotonic() - started, 1e-9)
    lat = tally.latencies
    click.echo(f"requests: {tally.sent} in {elapsed:.1f} s ({tally.sent / elapsed:.1f}/s)")
    click.echo("responses: " + (", ".join(f"{k} {v}" for k, v in sorted(tally.statuses.items())) or "none"))
    click.echo("errors: " + (", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items())) or "none"))
    ms = {q: percentile(lat, q) * 1000 for q in (0.5, 0.95, 0.99)}
    click.echo(f"latency: p50 {ms[0.5]:.0f} ms, p95 {ms[0.95]:.0f} ms, p99 {ms[0.99]:.0f} ms")
    if tally.sent and not tally.statuses:
        sys.exit(1)  # nothing answered: the address is wrong or down


if __name__ == "__main__":
    main()
