"""Hand-written fakes shared by the remediation tests: ECS services in memory, a notifier, a clock.

They record what they were asked to do, so a test asserts what a user would see (one scale-up,
one page to the team lead), not how the code got there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.signing import SigningKey, Trust
from service.ecs import ActionResult, EcsActionError, ScalingTarget, ServiceState

TEST_KEY = SigningKey(b"tests-only signing key, 32+ bytes long", "tests")


def trusting(loader: str = "tests", key: SigningKey | None = TEST_KEY) -> Trust:
    """A loader's trust with the tests' signing key (what a configured AIOPS_SIGNING_KEY gives)."""
    return Trust(key, loader)

MUTATING = ("scale_up", "scale_to", "restart_tasks", "rollback")


@dataclass
class FakeService:
    """One ECS service as the fake keeps it."""

    desired: int = 2
    revision: int = 2
    revisions: list[int] = field(default_factory=lambda: [1, 2])
    rolling_out: bool = False
    scaling: ScalingTarget | None = None
    restarts: int = 0


class FakeEcs:
    """The ``EcsActions`` interface over in-memory services.

    ``fail`` makes every mutating call raise (as an access-denied ECS would); ``fail_reads``
    makes reads raise too. ``calls`` lists the mutating calls that reached "ECS".
    """

    def __init__(self, services: dict[tuple[str, str], FakeService] | None = None,
                 dry_run: bool = False):
        self.services = services if services is not None else {}
        self.dry_run = dry_run
        self.fail: str | None = None
        self.fail_reads: str | None = None
        self.calls: list[tuple] = []
        self.reads = 0

    def service(self, cluster: str, service: str) -> FakeService:
        return self.services.setdefault((cluster, service), FakeService())

    def _state(self, cluster: str, service: str) -> ServiceState:
        s = self.service(cluster, service)
        return ServiceState(cluster, service, s.desired, s.desired, f"app:{s.revision}", "app",
                            s.revision, 2 if s.rolling_out else 1, s.rolling_out)

    def describe(self, cluster: str, service: str) -> ServiceState:
        self.reads += 1
        if self.fail_reads:
            raise EcsActionError(self.fail_reads)
        return self._state(cluster, service)

    def scaling_target(self, cluster: str, service: str) -> ScalingTarget | None:
        return self.service(cluster, service).scaling

    def active_revisions(self, cluster: str, service: str, family: str) -> dict[int, str]:
        return {r: f"arn:task-definition/app:{r}" for r in sorted(self.service(cluster, service).revisions)}

    def _mutate(self, action: str, cluster: str, service: str, change: str, apply) -> ActionResult:
        if self.fail:
            raise EcsActionError(self.fail)
        before = self._state(cluster, service)
        if not self.dry_run:
            self.calls.append((action, cluster, service))
            apply(self.service(cluster, service))
        return ActionResult(action, before, self._state(cluster, service), change, self.dry_run)

    def scale_up(self, cluster: str, service: str, by: int = 1, max_count: int | None = None):
        s = self.service(cluster, service)
        if max_count is not None and s.desired + by > max_count:
            raise EcsActionError(f"desired count {s.desired + by} exceeds {max_count}")
        return self._mutate("scale_up", cluster, service, f"desired count {s.desired} -> {s.desired + by}",
                            lambda svc: setattr(svc, "desired", svc.desired + by))

    def scale_to(self, cluster: str, service: str, count: int):
        s = self.service(cluster, service)
        return self._mutate("scale_to", cluster, service, f"desired count {s.desired} -> {count}",
                            lambda svc: setattr(svc, "desired", count))

    def restart_tasks(self, cluster: str, service: str):
        s = self.service(cluster, service)
        return self._mutate("restart_tasks", cluster, service, f"stopped {s.desired} tasks",
                            lambda svc: setattr(svc, "restarts", svc.restarts + 1))

    def rollback(self, cluster: str, service: str, to_revision: int | None = None,
                 while_rolling_out: bool = True):
        s = self.service(cluster, service)
        target = to_revision or max(r for r in s.revisions if r < s.revision)
        return self._mutate("rollback", cluster, service, f"task definition app:{s.revision} -> app:{target}",
                            lambda svc: setattr(svc, "revision", target))


@dataclass
class FakeNotifier:
    """Records every page; fails while ``fail`` is set."""

    sent: list = field(default_factory=list)
    fail: bool = False

    def notify(self, role: str, subject: str, body: str) -> str:
        from service.notify import NotifyError

        if self.fail:
            raise NotifyError("fake channel down")
        self.sent.append((role, subject))
        return f"msg-{len(self.sent)}"

    def roles(self) -> list[str]:
        return [role for role, _ in self.sent]


class Clock:
    """A settable clock."""

    def __init__(self, now: pd.Timestamp):
        self.now = pd.Timestamp(now)

    def __call__(self) -> pd.Timestamp:
        return self.now

    def advance(self, minutes: float = 1) -> pd.Timestamp:
        self.now += pd.Timedelta(minutes=minutes)
        return self.now


METRICS = ["cpu_utilization", "memory_utilization", "error_count", "response_time"]


def normal(index: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    """Quiet metrics: CPU 30%, memory 45%, a few errors, 0.15 s responses."""
    n = len(index)
    return pd.DataFrame({"cpu_utilization": 30 + rng.normal(0, 1, n),
                         "memory_utilization": 45 + rng.normal(0, 0.5, n),
                         "error_count": rng.poisson(0.2, n).astype(float),
                         "response_time": 0.15 + rng.normal(0, 0.003, n)}, index=index)


# What each kind of incident does to the metrics while it lasts.
SYMPTOMS: dict[str, dict[str, float]] = {
    "high_cpu": {"cpu_utilization": 85.0},
    "high_cpu_with_errors": {"cpu_utilization": 85.0, "error_count": 30.0},
    "memory_leak": {"memory_utilization": 80.0},
    "error_rate_low": {"error_count": 8.0},
    "error_rate_high": {"error_count": 40.0},
    "slow_response": {"response_time": 0.9},
}


class FakeSource:
    """CloudWatch as a function of time: quiet metrics, with symptoms during given spans.

    ``spans`` holds ``(start, end, kind)``; ``end`` None means until :meth:`fix` ends it.
    ``fail`` makes every read raise MetricSourceError (a CloudWatch outage).
    """

    def __init__(self, spans: list[tuple[pd.Timestamp, pd.Timestamp | None, str]] | None = None):
        self.spans = list(spans or [])
        self.fail: str | None = None
        self.reads = 0

    def add(self, start: pd.Timestamp, end: pd.Timestamp | None, kind: str) -> None:
        self.spans.append((start, end, kind))

    def fix(self, at: pd.Timestamp) -> None:
        self.spans = [(s, at if e is None or e > at else e, k) for s, e, k in self.spans]

    def read(self, start, end) -> pd.DataFrame:
        from service.cloudwatch import MetricSourceError

        self.reads += 1
        if self.fail:
            raise MetricSourceError(self.fail)
        index = pd.date_range(start, end, freq="1min", inclusive="left")
        frame = normal(index, np.random.default_rng(int(pd.Timestamp(start).timestamp()) % 100_000))
        for span_start, span_end, kind in self.spans:
            hot = (index >= span_start) & ((index < span_end) if span_end is not None else True)
            for metric, value in SYMPTOMS[kind].items():
                frame.loc[hot, metric] = value
        return frame


def clock_env(at: pd.Timestamp) -> dict[str, str]:
    """Environment that sets an ``aiops`` command's clock to ``at`` when the command starts.

    The command's clock is the wall clock shifted by ``AIOPS_CLOCK_OFFSET_SECONDS``, so a test
    that starts a command within seconds of calling this pins its "now" to ``at`` (plus those
    seconds), whatever the date the suite runs on.
    """
    from service.clock import SystemClock

    return {"AIOPS_CLOCK_OFFSET_SECONDS": f"{(at - SystemClock()()).total_seconds():.3f}"}


def ecs_service_on(endpoint: str, cluster: str = "aiops-platform-cluster",
                   service: str = "aiops-platform-service", revisions: int = 3):
    """A fresh local AWS (moto) with one Fargate service on the last of ``revisions`` task-definition
    revisions and two tasks; the ECS adapter on it."""
    from service.aws import ClientFactory, reset_local_aws
    from service.ecs import EcsActions
    from simulation.ecs_world import EcsWorld

    reset_local_aws(endpoint)
    factory = ClientFactory()
    EcsWorld(factory.client("ecs"), cluster, service, "aiops-platform", endpoint_url=endpoint,
             ec2_client=factory.client("ec2")).setup(pd.Timestamp("2026-11-02 09:00", tz="UTC"),
                                                      revisions=revisions)
    return EcsActions(factory.client("ecs"))


def fake_platform(settings, *, ecs=None, notifier=None, clock=None, store=None, guardrails=None,
                  config=None):
    """The platform from the one bootstrap, with fakes for ECS and the notifier and the rules as
    the classifier: what unit tests build watchers and remediators from."""
    from rca.playbook import load_playbook
    from rca.rules import RuleClassifier
    from service.bootstrap import build_platform

    ecs = ecs if ecs is not None else FakeEcs()
    return build_platform(settings, config, actions=lambda dry_run: ecs,
                          notifier=notifier if notifier is not None else FakeNotifier(),
                          clock=clock, store=store, guardrails=guardrails,
                          classifier=RuleClassifier(load_playbook(settings.playbook)))
