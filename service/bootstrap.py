"""The one composition function: the live watcher built from settings and adapters.

Real defaults come from settings and the client factory; tests hand in their own pieces.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from detection.zscore import RobustZDetector
from rca.playbook import load_playbook
from service.aws import ClientFactory
from service.cloudwatch import CloudWatchMetrics
from service.diagnose import load_rca_classifier
from service.ecs import EcsActions
from service.notify import Notifier
from service.remediation import Remediator
from service.settings import Mode, Settings
from service.store import IncidentStore
from service.watcher import Watcher


def build_watcher(settings: Settings, factory: ClientFactory, detector: RobustZDetector,
                  notifier: Notifier, clock: Callable[[], pd.Timestamp],
                  store: IncidentStore | None = None) -> Watcher:
    """Wire a Watcher for ``settings.target`` from real adapters."""
    playbook = load_playbook(settings.playbook)
    store = store or IncidentStore(settings.db_path)
    source = CloudWatchMetrics(factory.client("cloudwatch"), settings.metrics, settings.target,
                               settings.period_seconds)
    actions = EcsActions(factory.client("ecs"), dry_run=settings.mode is Mode.DRY_RUN)
    remediator = Remediator(actions, store, notifier, settings.mode,
                            on_call=playbook.escalation[0].role)
    classifier, _ = load_rca_classifier(settings, playbook, detector.threshold)  # logs which one
    return Watcher(settings.target, source, detector, classifier, remediator, store, notifier,
                   playbook, settings, clock)
