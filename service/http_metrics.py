"""Prometheus metrics of the HTTP service, exposed at ``GET /metrics`` by prometheus-client.

Each app has its own registry (two apps in one process, as in the tests, do not share
counters). What the service does itself is counted as it happens: points scored, anomalies
found (by metric), scoring latency, remediation requests (by action and outcome). What the
whole platform did (incidents by root cause and status, actions by kind and outcome, written
by the watcher, the CLI and this API alike) is read from the incident log at scrape time, so
the figures agree with the log whichever process wrote it. The process collector adds the
server's memory and CPU.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from service.store import IncidentStore

log = logging.getLogger("aiops.api")
# Scoring a request takes well under a millisecond to tens of milliseconds (an ensemble model).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_INCIDENTS_READ = 100_000


class IncidentLogCollector(Collector):
    """Incidents by root cause and status, and actions by kind and outcome, from the log."""

    def __init__(self, store: IncidentStore):
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only; nothing to declare when registering

    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily("aiops_incidents", "Incidents in the incident log, by root cause "
                                      "and status", labels=["root_cause", "status"])
        actions = GaugeMetricFamily("aiops_actions", "Remediation actions in the incident log, by "
                                    "action and outcome", labels=["action", "outcome"])
        try:
            by_cause = Tally((i.root_cause or "undiagnosed", i.status)
                             for i in self.store.list(limit=MAX_INCIDENTS_READ))
            by_outcome = Tally((a.action, a.status) for a in self.store.actions())
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the log is busy
            log.warning("metrics: incident log unreadable: %s", exc)
            return
        for (cause, status), n in sorted(by_cause.items()):
            incidents.add_metric([cause, status], n)
        for (action, outcome), n in sorted(by_outcome.items()):
            actions.add_metric([action, outcome], n)
        yield incidents
        yield actions


class ApiMetrics:
    """The service's own counters and the collectors, in one registry."""

    def __init__(self, store: IncidentStore | None = None, process: bool = True):
        self.registry = CollectorRegistry(auto_describe=True)
        self.points = Counter("aiops_points_scored", "Metric points scored by POST /v1/score",
                              registry=self.registry)
        self.anomalies = Counter("aiops_anomalies", "Anomalies found by POST /v1/score, by metric",
                                 ["metric"], registry=self.registry)
        self.latency = Histogram("aiops_score_duration_seconds", "Time to score one POST /v1/score "
                                 "request (validated input to result)", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.remediations = Counter("aiops_api_remediations", "POST /v1/remediate requests, by action "
                                    "and outcome", ["action", "outcome"], registry=self.registry)
        self.models = Gauge("aiops_models_loaded", "Champion models loaded for scoring",
                            registry=self.registry)
        if store is not None:
            self.registry.register(IncidentLogCollector(store))
        if process:
            ProcessCollector(registry=self.registry)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
