"""The live watcher over several services: composition, the tick loop and graceful shutdown.

``build_fleet`` wires one :class:`~service.watcher.Watcher` per configured service from the one
bootstrap (so the detector and classifier are chosen in one place) and gives them a shared,
guarded remediator, a shared incident log and the configured notifiers. ``Fleet.run`` ticks
every service once a period until told to stop; SIGTERM and SIGINT set the stop flag, the tick
in progress finishes (a step is never cut in half), and the loop returns.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from service.aws import ClientFactory
from service.bootstrap import build_platform
from service.leases import DEFAULT_TTL, Leases
from service.notify import (
    Notifier,
)
from service.repository import IncidentRepository
from service.retry_log import RetryLog
from service.settings import Settings
from service.store import IncidentStore
from service.watch_config import ServiceConfig, WatchConfig
from service.watcher import TickResult, Watcher

log = logging.getLogger("aiops.fleet")
DetectorLoader = Callable[[ServiceConfig, Settings], Any]


@dataclass(frozen=True)
class FleetTick:
    """One service's part of a fleet tick: its result, or the error that stopped it."""

    service: str
    result: TickResult | None = None
    error: str | None = None


class Fleet:
    """Watchers that tick together; one service's failure never stops the others.

    With ``leases`` (several replicas on a shared incident log) a replica ticks only the services
    whose lease it holds, renewing it each tick; a service it newly holds is taken over: its
    watcher resumes what the previous owner left, as after a restart.
    """

    def __init__(self, watchers: list[Watcher], store: IncidentRepository, retry_log: RetryLog | None = None,
                 leases: Leases | None = None, owner: str = "aiops", lease_ttl: pd.Timedelta = DEFAULT_TTL):
        if not watchers:
            raise ValueError("nothing to watch: name a service (--cluster/--service) or list "
                             "[[services]] in the config file")
        self.watchers = watchers
        self.store = store
        self.retry_log = retry_log
        self.leases = leases
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.held: set[str] = set()
        self.until: dict[str, pd.Timestamp] = {}   # when each lease this replica wrote runs out
        self.share = len(watchers)   # until the first heartbeat says how many replicas are alive

    def holds(self, watcher: Watcher) -> bool:
        """Whether this replica owns ``watcher``'s service now (taking or renewing its lease)."""
        if self.leases is None:
            return True
        now = watcher.clock()
        if watcher.name not in self.held and len(self.held) >= self.share:
            return False   # this replica has its fair share: the others take the rest
        if watcher.name in self.held and self.until[watcher.name] - now > self.lease_ttl / 2:
            return True    # ours until then, whatever the others try: renewed once half has run
        if not self.leases.hold(watcher.name, self.owner, now, self.lease_ttl):
            if watcher.name in self.held:
                log.warning("%s: lease lost to another replica", watcher.name)
            self.held.discard(watcher.name)
            return False
        self.until[watcher.name] = now + self.lease_ttl
        if watcher.name not in self.held:
            self.held.add(watcher.name)
            watcher.take_over()
            self.store.record(None, now, "lease_taken", {"service": watcher.name, "replica": self.owner})
        return True

    def balance(self, now: pd.Timestamp) -> None:
        """Say this replica is alive, work out its fair share of the services (all of them over
        the live replicas, rounded up) and give up one service beyond it, one with no open
        incident, so a replica that joins gets work without any incident changing hands."""
        if self.leases is None:
            return
        live = self.leases.heartbeat(self.owner, now, self.lease_ttl)
        self.share = -(-len(self.watchers) // max(1, live))
        if len(self.held) <= self.share:
            return
        for watcher in self.watchers:
            target = watcher.target
            if watcher.name in self.held and not self.store.open_incidents(target.cluster, target.service):
                self.leases.release(watcher.name, self.owner)
                self.held.discard(watcher.name)
                log.info("%s: given up to balance the fleet (share %d)", watcher.name, self.share)
                return

    def release(self) -> None:
        """Give every lease up (a clean stop): another replica takes over at once, not after the ttl."""
        for name in sorted(self.held):
            self.leases.release(name, self.owner)
        self.held.clear()

    def tick(self, only: Collection[str] | None = None) -> list[FleetTick]:
        """Tick every service this replica holds (of ``only``, when given).

        With several services, every window is read first and all of them are scored in one
        pass (``detection.fleet.FleetScorer.detect``, which answers what each detector's
        ``detect`` answers); then each watcher files its anomalies and moves its incidents on.
        """
        done: dict[str, FleetTick] = {}
        held = []
        if only is None and self.leases is not None:
            self.balance(self.watchers[0].clock())
        for watcher in self.watchers:
            if only is not None and watcher.name not in only:
                continue
            try:
                if self.holds(watcher):
                    held.append(watcher)
            except Exception as exc:  # noqa: BLE001 - logged with the service; the next tick retries
                done[watcher.name] = self._failed(watcher, exc)
        detected = self._detect_together(held, done) if len(held) > 1 else {}
        for watcher in held:
            if watcher.name in done:
                continue
            try:
                done[watcher.name] = FleetTick(watcher.name, watcher.tick(detected.get(watcher.name)))
            except Exception as exc:  # noqa: BLE001 - logged with the service; the next tick retries
                done[watcher.name] = self._failed(watcher, exc)
        return [done[w.name] for w in self.watchers if w.name in done]

    def _failed(self, watcher: Watcher, exc: Exception) -> FleetTick:
        log.exception("%s: tick failed", watcher.name)
        self.store.record(None, watcher.clock(), "tick_failed",
                          {"service": watcher.name, "error": f"{type(exc).__name__}: {exc}"})
        return FleetTick(watcher.name, error=f"{type(exc).__name__}: {exc}")

    def _detect_together(self, held: list[Watcher], done: dict[str, FleetTick]) -> dict[str, list]:
        """Read every held watcher's window ahead and find the anomalies of all in one pass."""
        windows: dict[str, pd.DataFrame] = {}
        since: dict[str, pd.Timestamp] = {}
        for watcher in held:
            try:
                window, first = watcher.read_ahead()
            except Exception as exc:  # noqa: BLE001 - as a failed tick
                done[watcher.name] = self._failed(watcher, exc)
                continue
            if window is not None:
                windows[watcher.name], since[watcher.name] = window, first
        if not windows:
            return {}
        newest = max(int((w.index >= since[n]).sum()) for n, w in windows.items())
        try:
            return self.scorer.detect(windows, newest=newest)
        except Exception:  # noqa: BLE001 - each watcher then scores its own window, as before
            log.exception("fleet-wide scoring failed; scoring each service alone")
            return {}

    @functools.cached_property
    def scorer(self) -> Any:
        """Every watcher's detector stacked (``detection.fleet.FleetScorer``), made on first use."""
        from detection.fleet import FleetScorer

        return FleetScorer({w.name: w.detector for w in self.watchers})

    def run(self, stop: threading.Event, period: float, on_tick: Callable[[list[FleetTick]], None],
            once: bool = False) -> int:
        """Tick every ``period`` seconds until ``stop`` is set; returns the ticks made."""
        ticks = 0
        while not stop.is_set():
            started = time.monotonic()
            on_tick(self.tick())
            ticks += 1
            if once:
                break
            stop.wait(max(0.0, period - (time.monotonic() - started)))
        if self.leases is not None:
            self.release()
        return ticks


class AlreadyWatching(OSError):
    """Another watcher holds the data directory's lock; the message names its process."""


@contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold ``DATA_DIR/watch.lock`` for the duration: one watcher per incident log.

    A second watcher would interrupt the first one's actions when it resumes; the lock is
    released by the kernel if the process dies, so a crash never leaves it behind.
    """
    import fcntl
    import os

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "watch.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise AlreadyWatching(f"another watcher (pid {holder}) is running on {data_dir}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def stop_on_signals(stop: threading.Event, signals=(signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` for the duration (then the previous handlers come back)."""
    def handler(signum, _frame):
        log.warning("%s received: stopping after the current tick", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def build_fleet(settings: Settings, config: WatchConfig, factory: ClientFactory,
                load_detector: DetectorLoader, clock: Callable[[], pd.Timestamp],
                notifier: Notifier | None = None, store: IncidentStore | None = None,
                retry_log: RetryLog | None = None, door: str = "aiops watch") -> Fleet:
    """One watcher per configured service, from the one bootstrap: they share the log, the
    notifier and the guarded remediator. ``door`` names the process in refusals."""
    retry_log = retry_log or RetryLog()
    for name in ("ecs", "cloudwatch", "application-autoscaling", "sns", "ses"):
        retry_log.attach(factory.client(name))
    platform = build_platform(settings, config, factory=factory, notifier=notifier, store=store,
                              clock=clock, door=door)
    settings = platform.settings
    services = config.services or [ServiceConfig(cluster=settings.target.cluster,
                                                 service=settings.target.service)]
    watchers = []
    for svc in services:
        svc_settings = settings.model_copy(update={"target": svc.target(settings.target)})
        watchers.append(platform.watcher(svc_settings.target, load_detector(svc, svc_settings),
                                         settings=svc_settings))
    return Fleet(watchers, platform.store, retry_log, leases=platform.leases(), owner=platform.replica_id(),
                 lease_ttl=pd.Timedelta(seconds=settings.lease_seconds))


def default_bundle(settings: Settings, svc: ServiceConfig) -> Path:
    return svc.bundle or settings.model_dir / f"{svc.cluster}--{svc.service}"
