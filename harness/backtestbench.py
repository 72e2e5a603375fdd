"""``aiops benchmark backtest``: the backtest on 14 simulated days with the matrix faults injected
and labelled, and the proof that it decides as the live watcher does.

The history comes from the simulator's physics (:mod:`simulation.physics`): 14 days of normal
traffic to train the detector on, then 14 days with three faults a day, cycling through the six
rows of the response matrix (``MATRIX_FAULTS``), at random minutes (seeded), each labelled with
the cause the playbook should name. History does not react to actions, so each fault lasts as
long as people took to end it: a surge an hour, a leak until someone restarted the tasks half an
hour in, a bad deploy until someone rolled it back 40 minutes in (both in the deployment
history), the others as long as they last in the simulator.

The detector is the baselines model (``robust_z``) fitted on the first 14 days; the classifier is
the one every door uses. Then ``run_backtest`` replays the 14 faulty days; the first
``live_days`` are also replayed by a watcher reading the same minutes from CloudWatch (a local
moto endpoint), as ``aiops watch`` reads them, and the two decision lists must be equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detection.zscore import RobustZDetector
from rca.playbook import load_playbook
from service.backtest import (
    Deployment,
    Label,
    Operator,
    PageLog,
    ReplayClock,
    ReplayEcs,
    Scenario,
    decisions,
    replay,
    run_backtest,
)
from service.guardrails import GuardrailConfig
from service.memory_store import MemoryIncidentStore
from service.settings import ServiceTarget, Settings
from service.watch_config import WatchConfig
from simulation.clock import DEFAULT_START
from simulation.faults import FAULTS, MATRIX_FAULTS
from simulation.physics import Conditions, ServiceShape, normal_load, service_metrics

TRAIN_DAYS = 14
FAULTS_PER_DAY = 3
HUMAN_FIX = {"memory_leak": 30, "bad_deploy": 40}   # minutes until a person restarted / rolled back
SURGE_MINUTES = 60
FIRST_REVISION = 5


@dataclass(frozen=True)
class SimulatedHistory:
    """Training days, the faulty days, what was injected (the labels) and the deployments."""

    training: pd.DataFrame
    history: pd.DataFrame
    labels: list[Label]
    deployments: list[Deployment]


def simulate_history(days: int = 14, seed: int = 0, start: pd.Timestamp = DEFAULT_START) -> SimulatedHistory:
    """``TRAIN_DAYS`` normal days, then ``days`` with ``FAULTS_PER_DAY`` labelled faults a day."""
    rng = np.random.default_rng(seed)
    shape = ServiceShape()
    first = pd.Timestamp(start) - pd.Timedelta(days=TRAIN_DAYS)
    index = pd.date_range(first, periods=(TRAIN_DAYS + days) * 1440, freq="1min")
    n = len(index)
    load_factor = np.ones(n)
    leaked, errors, latency = np.zeros(n), np.zeros(n), np.zeros(n)
    labels: list[Label] = []
    revision = FIRST_REVISION
    deployments = [Deployment(first - pd.Timedelta(days=1), revision)]
    kinds = list(MATRIX_FAULTS)
    slot = 1440 // FAULTS_PER_DAY
    count = 0
    for day in range(days):
        for k in range(FAULTS_PER_DAY):
            name = kinds[count % len(kinds)]
            count += 1
            fault = FAULTS[name]
            at = (TRAIN_DAYS + day) * 1440 + k * slot + int(rng.integers(30, slot - 150))
            length = HUMAN_FIX.get(name) or fault.duration or SURGE_MINUTES
            span = slice(at, at + length)
            load_factor[span] *= fault.load_factor
            if fault.overload_errors:
                errors[span] += fault.overload_errors
            errors[span] += fault.extra_errors + fault.deploy_errors
            latency[span] += fault.latency_add
            if fault.leak_per_minute:
                leaked[span] += fault.leak_per_minute * np.arange(length)
            if fault.deploy_errors:
                deployments.append(Deployment(index[at], revision + 1))
                deployments.append(Deployment(index[at + length], revision))
            labels.append(Label(index[at], index[at + length - 1], fault.expected_cause))
    load = normal_load(index, shape) * load_factor
    cond = Conditions(load=load, tasks=np.full(n, shape.nominal_tasks), leaked_memory=leaked,
                      fault_errors=errors, latency_add=latency)
    frame = service_metrics(index, cond, shape, rng)
    split = pd.Timestamp(start)
    lead = split - pd.Timedelta(minutes=15)   # the first tick reads a full window
    return SimulatedHistory(frame[frame.index < split], frame[frame.index >= lead], labels, deployments)


def live_decisions(window: pd.DataFrame, deployments: list[Deployment], detector, classifier,
                   target: ServiceTarget, base: Scenario,
                   progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """The live watcher on the same minutes: ``window`` written to CloudWatch on a local endpoint
    and read back by the watcher ``aiops watch`` builds (the CloudWatch source), ticking once a
    minute from the window's 16th minute (as :func:`~service.backtest.replay` starts) to its end."""
    from service.aws import ClientFactory, local_aws, reset_local_aws
    from service.bootstrap import build_platform
    from service.cloudwatch import CloudWatchMetrics

    start = pd.Timestamp(window.index[0]) + pd.Timedelta(minutes=15)
    clock = ReplayClock(start)
    store = MemoryIncidentStore()
    ecs = ReplayEcs(deployments, clock)
    with local_aws() as endpoint:
        reset_local_aws(endpoint)
        factory = ClientFactory(endpoint_url=endpoint)
        writer = CloudWatchMetrics(factory.client("cloudwatch"), base.settings.metrics, target,
                                   base.settings.period_seconds)
        progress(f"live: writing {len(window):,} minutes to CloudWatch at {endpoint} ...")
        writer.write(window)
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="aiops-live-") as scratch:
            settings = base.settings.model_copy(update={"data_dir": Path(scratch), "target": target})
            platform = build_platform(settings, WatchConfig(guardrails=base.guardrails), factory=factory,
                                      actions=lambda dry_run: ecs, store=store, notifier=PageLog(clock),
                                      clock=clock, classifier=classifier)
            platform.playbook = base.playbook
            watcher = platform.watcher(target, detector)   # the CloudWatch source, as `aiops watch`
            while clock.now <= pd.Timestamp(window.index[-1]):
                watcher.tick()
                clock.now += pd.Timedelta(minutes=1)
    return decisions(store)


def run(days: int = 14, seed: int = 0, live_days: float = 1.0,
        progress: Callable[[str], None] = lambda _: None) -> dict:
    """The benchmark: simulate, fit, backtest, compare with the live watcher; the figures."""
    from service.diagnose import load_rca_classifier

    started = time.monotonic()
    sim = simulate_history(days, seed)
    progress(f"simulated {TRAIN_DAYS} training days and {days} days with {len(sim.labels)} labelled faults")
    detector = RobustZDetector().fit(sim.training)
    settings = Settings()
    playbook = load_playbook(settings.playbook)
    classifier, source = load_rca_classifier(settings, playbook, detector.threshold)
    target = ServiceTarget()
    base = Scenario("as configured", settings, GuardrailConfig(), playbook)
    result = run_backtest(sim.history, detector, classifier, target, base, labels=sim.labels,
                          deployments=sim.deployments, operator=Operator(), progress=progress)
    replay_seconds = time.monotonic() - started
    # the live watcher on the first live_days, without the simulated operator (as the replay
    # compared with it: people are not part of the decision path)
    cut = pd.Timestamp(sim.history.index[0]) + pd.Timedelta(minutes=15 + int(live_days * 1440))
    window = sim.history[sim.history.index <= cut]
    first_day = live_decisions(window, sim.deployments, detector, classifier, target, base, progress)
    replayed = decisions(replay(window, detector, classifier, target, base, sim.deployments,
                                operator=None).store)
    score = result.scores()[0]
    return {"days": days, "seed": seed, "labelled_faults": len(sim.labels), "classifier": source,
            "detector": "robust_z (baselines), fitted on the 14 days before",
            "action_precision": score["action_precision"], "action_recall": score["action_recall"],
            "false_pages_per_week": score["false_pages_per_week"], "scores": score,
            "live_days_compared": live_days, "live_decisions": len(first_day),
            "decisions_equal_live": replayed == first_day, "replay_seconds": round(replay_seconds, 1),
            "per_day": result.to_dict()["scenarios"][0]["per_day"]}
