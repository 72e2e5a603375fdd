"""One simulated platform for the whole harness: the world on the local AWS endpoint, and the
platform that watches it, built through the same bootstrap as production.

The demo, the soak, the fault and calendar benchmarks and the live simulator all stand on
:class:`SimulatedPlatform`: a moto server (started here, or one already running), clients for
the world's own calls (never audited or faulted: they are not the platform's), the simulated
clock, simulated ECS services whose simulators write CloudWatch metrics, training through the
nightly pipeline, and :func:`~service.bootstrap.build_platform` for everything the platform does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.environment import SimulatedEnvironment
from models.store import LocalModelStore
from service.aws import ClientFactory, local_aws, reset_local_aws
from service.bootstrap import Platform, build_platform
from service.cloudwatch import CloudWatchMetrics
from service.notify import SnsNotifier
from service.settings import ServiceTarget, Settings
from service.signing import bundle_trust
from service.watch_config import WatchConfig
from simulation.clock import SimClock
from simulation.ecs_world import EcsWorld
from simulation.simulator import Simulator
from training.pipeline import ServiceResult, TrainOptions, train_service
from training.tracking import MlflowTracker

FAMILY = "aiops-platform"
ESCALATION_TOPIC = "aiops-escalations"


@dataclass
class SimulatedService:
    """One simulated ECS service: its ECS truth, the CloudWatch metrics it writes, its simulator."""

    target: ServiceTarget
    world: EcsWorld
    metrics: CloudWatchMetrics
    sim: Simulator


class SimulatedPlatform(SimulatedEnvironment):
    """The simulated world and the platform that watches it.

    Enter it to start a moto server of its own with an empty AWS (moto keeps its state per
    process, so a second environment in one process must not see the first one's metrics), or
    :meth:`on` an endpoint that is already running (the live simulator's).
    """

    def __init__(self, settings: Settings, start: pd.Timestamp, *, seed: int = 7):
        self.settings = settings
        self.start = pd.Timestamp(start)
        self.seed = seed

    @classmethod
    def on(cls, endpoint: str, settings: Settings, start: pd.Timestamp, *,
           seed: int = 7) -> SimulatedPlatform:
        """The simulated platform on a running endpoint, whose owner closes it."""
        made = cls(settings, start, seed=seed)
        made._open(endpoint)
        return made

    def _start(self) -> None:
        endpoint = self._stack.enter_context(local_aws())
        reset_local_aws(endpoint)
        self._open(endpoint)

    def _open(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.factory = ClientFactory(endpoint_url=endpoint)
        self.clock = SimClock(self.start)

    # ------------------------------------------------------------------ the world

    def ecs_world(self, cluster: str, service: str, family: str = FAMILY) -> EcsWorld:
        """ECS truth for one service, kept by the world's own clients."""
        return EcsWorld(self.factory.client("ecs"), cluster, service, family,
                        endpoint_url=self.endpoint, ec2_client=self.factory.client("ec2"))

    def make_service(self, target: ServiceTarget | None = None, *,
                     seed: int | None = None) -> SimulatedService:
        """A simulated service (the settings' target by default) writing its metrics to CloudWatch."""
        target = target or self.settings.target
        metrics = CloudWatchMetrics(self.factory.client("cloudwatch"), self.settings.metrics, target,
                                    self.settings.period_seconds)
        world = self.ecs_world(target.cluster, target.service)
        sim = Simulator(world, metrics.write, self.clock, seed=self.seed if seed is None else seed)
        return SimulatedService(target, world, metrics, sim)

    def train(self, service: SimulatedService, options: TrainOptions,
              mlflow_uri: str | None = None, experiment: str = "aiops-demo") -> ServiceResult:
        """The service's model, fitted on its CloudWatch history by the nightly pipeline; its
        bundle signed with the data directory's key (generated on first use)."""
        target = service.target
        trust = bundle_trust(self.settings, "aiops demo", create=True, factory=self.factory)
        tracker = MlflowTracker(trust, mlflow_uri, experiment=experiment) if mlflow_uri else None
        return train_service(target.cluster, target.service, service.metrics, end=self.clock.now,
                             store=LocalModelStore(self.settings.model_dir / "registry", trust),
                             options=options, deploy_root=self.settings.model_dir, tracker=tracker)

    def escalation_notifier(self, factory: ClientFactory | None = None) -> SnsNotifier:
        """Pages to the escalation topic, sent through ``factory`` (the world's clients by default)."""
        factory = factory or self.factory
        sns = factory.client("sns")
        return SnsNotifier(sns, sns.create_topic(Name=ESCALATION_TOPIC)["TopicArn"])

    # ------------------------------------------------------------------ the platform

    def make_platform(self, config: WatchConfig | None = None, *, settings: Settings | None = None,
                 factory: ClientFactory | None = None, **pieces: Any) -> Platform:
        """The platform, built by the bootstrap on the simulated clock and the local endpoint.

        ``factory`` gives the platform clients of its own (faulted, audited); the world's are
        used otherwise. ``pieces`` go to :func:`~service.bootstrap.build_platform` as they are.
        """
        return build_platform(settings or self.settings, config or WatchConfig(),
                              factory=factory or self.factory, clock=self.clock, **pieces)
