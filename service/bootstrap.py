"""The composition root: every door's objects, built in one place from settings and the watch config.

:func:`build_platform` reads the settings (environment, flags) and the watch config, and returns a
:class:`Platform`: the incident log, the notifiers, the playbook, the clock, the guarded
remediator (one per dry-run flag) and, on first use, the root-cause classifier. The CLI, the
HTTP app, the Lambda handlers, the watcher fleet and the demo take their objects from it, so the
mode, the guardrails, the escalation roles and the adapters are chosen here and nowhere else.

Real adapters are the default (boto3 clients from :class:`~service.aws.ClientFactory`); tests and
simulations hand in their own (``actions`` makes the ECS adapter, ``store``, ``notifier``,
``clock``), never a hand-built Remediator or Watcher.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rca.diagnosis import RootCauseClassifier
from rca.playbook import Playbook, Severity, load_playbook
from service.aws import ClientFactory
from service.clock import Clock
from service.cloudwatch import CloudWatchMetrics
from service.ecs import EcsActions
from service.guardrails import Guardrails
from service.leases import Leases
from service.mail import SesMailer
from service.notify import (
    ConsoleNotifier,
    EmailNotifier,
    FanOutNotifier,
    Notifier,
    RoleTopicsNotifier,
    SnsNotifier,
    WebhookNotifier,
)
from service.remediation import Remediator
from service.repository import IncidentRepository
from service.settings import Mode, ServiceTarget, Settings, StoreKind
from service.store import IncidentStore
from service.watch_config import NotifyConfig, WatchConfig, load_watch_config
from service.watcher import Detector, MetricSource, Watcher

ActionsFactory = Callable[[bool], Any]   # dry_run -> the ECS adapter (EcsActions or a fake)


@dataclass
class Platform:
    """What every entry point shares, made once per process (or per request for one-shot CLI calls)."""

    settings: Settings
    config: WatchConfig
    playbook: Playbook
    store: IncidentRepository
    notifier: Notifier
    clock: Clock
    factory: ClientFactory
    actions: ActionsFactory
    classifier_override: RootCauseClassifier | None = None
    door: str = "aiops"
    guardrails_override: Guardrails | None = None
    leases_override: Leases | None = None
    _remediators: dict[bool, Remediator] = field(default_factory=dict, repr=False)
    _classifiers: dict[float | None, tuple[RootCauseClassifier, str]] = field(default_factory=dict,
                                                                            repr=False)

    @property
    def on_call(self) -> str:
        """The first escalation role of the playbook: who alerts and reports go to."""
        return self.playbook.escalation[0].role

    @property
    def held_for_approval(self) -> frozenset[str]:
        """The actions approve mode holds for a person: the auto actions of CRITICAL rows."""
        if self.settings.mode is not Mode.APPROVE:
            return frozenset()
        return frozenset(c.auto_action.value for c in self.playbook.causes
                         if c.severity is Severity.CRITICAL)

    def watched(self) -> list[str]:
        """``cluster/service`` names the guardrails allow by default: the config's, else the target."""
        target = self.settings.target
        return self.config.watched() or [f"{target.cluster}/{target.service}"]

    def remediator(self, dry_run: bool = False) -> Remediator:
        """The guarded remediator every door shares (one for real actions, one for dry runs)."""
        dry_run = dry_run or self.settings.mode is Mode.DRY_RUN
        if dry_run not in self._remediators:
            mode = Mode.DRY_RUN if dry_run else self.settings.mode
            guardrails = self.guardrails_override or Guardrails(
                self.config.guardrails, watched=self.watched(), held_for_approval=self.held_for_approval)
            self._remediators[dry_run] = Remediator(self.actions(dry_run), self.store, self.notifier,
                                                    mode, on_call=self.on_call, guardrails=guardrails)
        return self._remediators[dry_run]

    def classifier(self, threshold: float | None = None) -> tuple[RootCauseClassifier, str]:
        """The root-cause classifier and, in words, which one; loaded once per threshold (the rules'
        fallback scores anomalies against it), so a fleet of watchers reads the model file once."""
        if threshold not in self._classifiers:
            if self.classifier_override is not None:
                chosen = (self.classifier_override, type(self.classifier_override).__name__)
            else:
                from service.diagnose import load_rca_classifier

                chosen = load_rca_classifier(self.settings, self.playbook, threshold, loader=self.door,
                                             factory=self.factory)
            self._classifiers[threshold] = chosen
        return self._classifiers[threshold]

    def leases(self) -> Leases | None:
        """The service leases replicas share: the ones handed in, else the DynamoDB table's; None
        where one watcher per incident log is the rule (SQLite: ``aiops watch`` holds the data
        folder's lock)."""
        if self.leases_override is not None:
            return self.leases_override
        from service.dynamo_store import DynamoIncidentStore
        from service.leases import DynamoLeases

        if isinstance(self.store, DynamoIncidentStore):
            return DynamoLeases(self.store.client, self.store.table)
        return None

    def replica_id(self) -> str:
        """This process's name in the leases: the configured one, else host and process id."""
        import os
        import socket

        return self.settings.replica_id or f"{socket.gethostname()}:{os.getpid()}"

    def watcher(self, target: ServiceTarget, detector: Detector, source: MetricSource | None = None,
                settings: Settings | None = None) -> Watcher:
        """The watcher of one service, on the shared remediator, log and notifier.

        ``source`` defaults to CloudWatch for ``target``; ``settings`` to the platform's with
        ``target`` as the target.
        """
        settings = settings or self.settings.model_copy(update={"target": target})
        if source is None:
            source = CloudWatchMetrics(self.factory.client("cloudwatch"), settings.metrics, target,
                                       settings.period_seconds)
        remediator = self.remediator()
        classifier, _ = self.classifier(detector.threshold)
        return Watcher(target, source, detector, classifier, remediator, self.store, self.notifier,
                       self.playbook, settings, self.clock, ecs=remediator.actions)


def build_notifier(config: NotifyConfig, factory: ClientFactory, stream=sys.stderr) -> Notifier:
    """Every channel the config names (SNS, SES e-mail, webhook), with a copy on the console.

    With no channel configured the console is the channel.
    """
    console = ("console", ConsoleNotifier(stream))
    channels: list[tuple[str, Any]] = []
    if config.sns_topic_arn:
        channels.append(("sns", SnsNotifier(factory.client("sns"), config.sns_topic_arn)))
    if config.sns_topics:
        channels.append(("sns-roles", RoleTopicsNotifier(factory.client("sns"), config.sns_topics)))
    if config.email is not None:
        channels.append(("email", EmailNotifier(SesMailer(factory.client("ses"), config.email.sender),
                                                config.email.recipients)))
    if config.webhook_url:
        channels.append(("webhook", WebhookNotifier(config.webhook_url)))
    return FanOutNotifier(channels, copies=[console]) if channels else FanOutNotifier([console])


def real_actions(settings: Settings, factory: ClientFactory) -> ActionsFactory:
    """The ECS adapter on boto3 clients, with its Application Auto Scaling reader."""
    def make(dry_run: bool) -> EcsActions:
        return EcsActions(factory.client("ecs"), dry_run=dry_run or settings.mode is Mode.DRY_RUN,
                          autoscaling_client=factory.client("application-autoscaling"))
    return make


def open_store(settings: Settings, factory: ClientFactory | None = None) -> IncidentRepository:
    """The incident log the settings choose: the SQLite file, or the shared DynamoDB table."""
    if settings.store is StoreKind.DYNAMODB:
        from service.dynamo_store import DynamoIncidentStore

        return DynamoIncidentStore((factory or ClientFactory()).client("dynamodb"), settings.dynamodb_table,
                                   settings.dynamodb_retention_days)
    return IncidentStore(settings.db_path)


def build_platform(settings: Settings | None = None, config: WatchConfig | str | Path | None = None, *,
                   factory: ClientFactory | None = None, actions: ActionsFactory | None = None,
                   store: IncidentRepository | None = None, notifier: Notifier | None = None,
                   clock: Clock | None = None, classifier: RootCauseClassifier | None = None,
                   guardrails: Guardrails | None = None, notify_stream: Any = None,
                   door: str = "aiops", leases: Leases | None = None) -> Platform:
    """The platform from settings and the watch config (an object, a path, or None for none).

    The config's ``mode`` applies unless the settings set one explicitly. Every piece not handed
    in is the real one: boto3 clients, the incident log the settings choose (:func:`open_store`),
    the notifiers the config names (the console when none), the wall clock shifted as the settings say.
    ``door`` names the process in what it logs and refuses (``aiops watch``, ``RCA Lambda``...),
    e.g. a root-cause classifier bundle whose signature is wrong.
    """
    settings = settings or Settings()
    if not isinstance(config, WatchConfig):
        config = load_watch_config(config)
    if config.mode is not None and "mode" not in settings.model_fields_set:
        settings = settings.model_copy(update={"mode": config.mode})
    factory = factory or ClientFactory()
    if notifier is None:
        notifier = build_notifier(config.notify, factory, notify_stream or sys.stderr)
    return Platform(settings=settings, config=config, playbook=load_playbook(settings.playbook),
                    store=store or open_store(settings, factory), notifier=notifier,
                    clock=clock or settings.clock, factory=factory,
                    actions=actions or real_actions(settings, factory), classifier_override=classifier,
                    guardrails_override=guardrails, door=door, leases_override=leases)
