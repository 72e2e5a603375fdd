"""``aiops benchmark ha``: several watcher replicas share one fleet, and replicas die.

The soak's world (:mod:`harness.soak`: nine ECS services on the local endpoint, their incidents,
deployments and people, the rollback Lambda fired by alarms, the auditor that checks every
mutating ECS call against the guardrails) is watched by ``replicas`` watcher processes at once,
each with its own ECS clients, all sharing the DynamoDB incident log and its service leases
(:mod:`service.leases`), exactly as replicas on AWS do. At random moments one replica is killed:
between ticks, or in the middle of an action (ECS took the call, the replica never heard back).
It comes back later as a new process. The benchmark counts:

- ``double_actions``: incidents the platform acted on twice, and actions taken while another
  of the same service was still in flight (found by the auditor at the ECS call itself);
- ``lost``: incidents not resolved at the end; ``breaches``: every guardrail rule broken;
- ``takeover_seconds``: from a replica's death to another replica holding each of its services.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.soak import CLUSTER, PLANS, SOAK_START, SoakReport, SoakWorld
from harness.world import SimulatedPlatform
from service.dynamo_store import DynamoIncidentStore, create_table
from service.fleet import Fleet
from service.leases import DynamoLeases
from service.settings import Settings, StoreKind
from service.watcher import TickResult

TABLE = "aiops-ha-bench"


class Killed(BaseException):
    """A replica's process dies: nothing in it handles this."""


@dataclass
class Replica:
    """One watcher process: its fleet of watchers behind the shared leases."""

    name: str
    fleet: Fleet
    armed: bool = False            # dies at its next mutating ECS call (after ECS took it)
    armed_at: pd.Timestamp | None = None


@dataclass
class HaReport:
    replicas: int
    incidents: int
    kills: dict[str, int]
    double_actions: int
    lost: int
    breaches: int
    takeover_seconds: dict[str, float]
    takeovers: int
    soak: SoakReport
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["soak"] = self.soak.to_dict()
        return out


class HaWorld(SoakWorld):
    """The soak's world, watched by several replicas sharing the DynamoDB log and its leases."""

    def __init__(self, world: SimulatedPlatform, incidents: int, replicas: int, kill_rate: float,
                 progress: Callable[[str], None]):
        client = world.factory.client("dynamodb")
        create_table(client, TABLE)
        store = DynamoIncidentStore(client, TABLE)
        self.leases = DynamoLeases(client, TABLE)
        self.ttl = pd.Timedelta(seconds=world.settings.lease_seconds)
        self.kill_rng = random.Random(world.seed + 1)
        self.kill_rate = kill_rate
        self.kills: Counter = Counter()
        self.dead: dict[str, pd.Timestamp] = {}            # replica slot -> back at
        self.pending: dict[str, pd.Timestamp] = {}         # service -> when its owner died
        self.takeovers: list[float] = []
        self.generation = 0
        super().__init__(world, incidents, progress, store=store)
        self.replicas = [self._replica(f"replica-{k}") for k in range(replicas)]

    # ------------------------------------------------------------------ replicas

    def _replica(self, slot: str) -> Replica:
        self.generation += 1
        holder: list[Replica] = []

        def hooks(ecs: Any) -> None:
            def die_after_the_call(**_: Any) -> None:
                if holder and holder[0].armed:
                    raise Killed()
            ecs.meta.events.register("after-call.ecs.UpdateService", die_after_the_call)
            ecs.meta.events.register("after-call.ecs.StopTask", die_after_the_call)

        watchers = self.replica_watchers(self.replica_platforms(hooks))
        fleet = Fleet(list(watchers.values()), self.store, leases=self.leases,
                      owner=f"{slot}#{self.generation}", lease_ttl=self.ttl)
        replica = Replica(slot, fleet)
        holder.append(replica)
        return replica

    def _kill(self, replica: Replica, now: pd.Timestamp, how: str) -> None:
        self.replicas.remove(replica)
        self.kills[how] += 1
        for name in replica.fleet.held:   # its leases stay in the table until they lapse
            if self.leases.holder(name, now) == replica.fleet.owner:
                self.pending.setdefault(name, now)
        self.dead[replica.name] = now + pd.Timedelta(minutes=self.kill_rng.uniform(5, 30))

    def tick(self, name: str) -> TickResult | None:
        """The service's tick by whichever live replica holds it (each asks in turn)."""
        now = self.clock.now
        for replica in list(self.kill_rng.sample(self.replicas, len(self.replicas))):
            before = set(replica.fleet.held)
            try:
                ticks = replica.fleet.tick(only={f"{CLUSTER}/{name}"})
            except Killed:
                self._kill(replica, now, "in the middle of an action")
                continue
            self._note_takeovers(replica, before, now)
            if ticks:
                return ticks[0].result
        return None

    def _note_takeovers(self, replica: Replica, before: set[str], now: pd.Timestamp) -> None:
        for name in set(replica.fleet.held) - before:
            died = self.pending.pop(name, None)
            if died is not None:
                self.takeovers.append((now - died).total_seconds())

    def minute_done(self, now: pd.Timestamp) -> bool:
        """Renew every live replica's leases, kill one now and then, restart the dead."""
        for replica in self.kill_rng.sample(self.replicas, len(self.replicas)):
            before = set(replica.fleet.held)
            replica.fleet.balance(now)
            for watcher in replica.fleet.watchers:
                replica.fleet.holds(watcher)
            self._note_takeovers(replica, before, now)
            if replica.armed and now - replica.armed_at > pd.Timedelta(minutes=30):
                self._kill(replica, now, "between ticks")   # never reached an action: die anyway
        busy = {f"{CLUSTER}/{n}" for n in self.plans if self._busy(n, now)}
        unarmed = [r for r in self.replicas if not r.armed]
        # one replica always lives on: a takeover measures failover, not a total outage
        if busy and len(unarmed) > 1 and self.kill_rng.random() < self.kill_rate:
            if self.kill_rng.random() < 0.5:
                self._kill(self.kill_rng.choice(unarmed), now, "between ticks")
            else:   # one that watches a busy service: the likeliest to act soon
                working = [r for r in unarmed if r.fleet.held & busy] or unarmed
                victim = self.kill_rng.choice(working)
                victim.armed, victim.armed_at = True, now
        for slot, back in list(self.dead.items()):
            if now >= back:
                del self.dead[slot]
                self.replicas.append(self._replica(slot))
        return bool(self.pending)   # minute by minute until every takeover is measured

    # ------------------------------------------------------------------ figures

    def double_actions(self) -> int:
        """Incidents the platform acted on twice, and actions while another was in flight."""
        per_incident = Counter(a.incident_id for a in self.auditor.actions
                               if a.origin == "auto" and a.incident_id is not None)
        twice = sum(n - 1 for n in per_incident.values() if n > 1)
        in_flight = sum(1 for b in self.auditor.breaches if ": one in flight: " in b)
        return twice + in_flight

    def ha_report(self, seconds: float, replicas: int) -> HaReport:
        soak = self.summary(seconds)
        spread = sorted(self.takeovers)
        takeover = ({"median": statistics.median(spread), "max": spread[-1], "min": spread[0]}
                    if spread else {})
        return HaReport(replicas, soak.incidents, dict(self.kills), self.double_actions(), soak.lost,
                        len(soak.breaches), takeover, len(spread), soak,
                        {"lease_seconds": self.ttl.total_seconds(), "services": len(PLANS)})


def run_ha(data_dir: Path, incidents: int = 300, replicas: int = 3, seed: int = 7,
           kill_rate: float = 0.02, progress: Callable[[str], None] = print,
           start: pd.Timestamp = SOAK_START) -> HaReport:
    """Run the HA benchmark from simulated time ``start`` on a fresh local endpoint."""
    if replicas < 2:
        raise ValueError("--replicas must be at least 2: one replica has nobody to take over from it")
    started = time.monotonic()
    settings = Settings(data_dir=data_dir, verify_after_minutes=15, store=StoreKind.DYNAMODB,
                        dynamodb_table=TABLE)
    with SimulatedPlatform(settings, start, seed=seed) as simulated:
        world = HaWorld(simulated, incidents, replicas, kill_rate, progress)
        world.run()
        return world.ha_report(time.monotonic() - started, replicas)


def render(report: HaReport) -> str:
    """The figures as a person reads them."""
    t = report.takeover_seconds
    kills = ", ".join(f"{v} {k}" for k, v in sorted(report.kills.items())) or "none"
    lines = [f"{report.replicas} watcher replicas and the rollback Lambda on {len(PLANS)} services, "
             f"{report.incidents} incidents over {report.soak.simulated_days} simulated days "
             f"({report.soak.seconds:.0f} s)",
             f"replicas killed: {sum(report.kills.values())} ({kills})",
             f"takeovers: {report.takeovers}" + (f", {t['median']:.0f} s median, {t['max']:.0f} s max "
                                                f"(leases last {report.details['lease_seconds']:.0f} s)"
                                                if t else ""),
             f"double actions: {report.double_actions}",
             f"incidents lost (not resolved at the end): {report.lost}",
             f"guardrail breaches found by the auditor: {report.breaches}"]
    lines += [f"  BREACH {b}" for b in report.soak.breaches[:20]]
    return "\n".join(lines)
