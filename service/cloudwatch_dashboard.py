"""A CloudWatch dashboard of one service, with the platform's incidents and anomalies marked.

For people who live in the AWS console: one time-series widget per canonical metric (read from
the settings' mapping, the one place that knows where each metric lives), each annotated with
the service's recent incidents from the log (a shaded band from opening to close, labelled
with the root cause) and, on the metrics that were anomalous, a line at the incident's first
anomaly of that metric ("CPU: 85% (expected 30%)"); and a text widget listing those incidents.
:func:`dashboard_body` is pure; :func:`put_service_dashboard` writes it with ``put_dashboard``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from detection.metrics import spec_for
from service.settings import MetricMapping, ServiceTarget
from service.store import IncidentStore

MAX_INCIDENTS = 20          # annotations per widget stay few enough to read
INCIDENT_COLOUR = "#d62728"
ANOMALY_COLOUR = "#ff7f0e"
NAME_PATTERN = re.compile(r"[^A-Za-z0-9_-]")


class DashboardError(RuntimeError):
    """CloudWatch refused the dashboard; the message says why."""


@dataclass(frozen=True)
class MarkedIncident:
    """What a dashboard shows of one incident."""

    id: int
    opened_at: pd.Timestamp
    closed_at: pd.Timestamp | None
    status: str
    root_cause: str
    severity: str
    action: str
    first_anomaly: dict[str, tuple[pd.Timestamp, str]] = field(default_factory=dict)  # metric -> (at, text)

    @property
    def label(self) -> str:
        return f"#{self.id} {self.root_cause} ({self.severity})"


def dashboard_name(target: ServiceTarget) -> str:
    """``aiops-<service>``, with what CloudWatch refuses in a name replaced by dashes."""
    return NAME_PATTERN.sub("-", f"aiops-{target.service}")[:255]


def recent_incidents(store: IncidentStore, target: ServiceTarget, since: pd.Timestamp,
                     most: int = MAX_INCIDENTS) -> list[MarkedIncident]:
    """The service's incidents opened since ``since`` (newest ``most``), oldest first."""
    chosen = [i for i in store.list(limit=1000)
              if i.cluster == target.cluster and i.service == target.service and i.opened_at >= since]
    out = []
    for incident in chosen[:most]:
        first: dict[str, tuple[pd.Timestamp, str]] = {}
        for a in store.anomalies(incident.id):   # ordered by time
            first.setdefault(a["metric"], (pd.Timestamp(a["timestamp"]), a["text"]))
        out.append(MarkedIncident(incident.id, incident.opened_at, incident.closed_at, incident.status,
                                  incident.root_cause or "undiagnosed", incident.severity or "-",
                                  incident.auto_action or "-", first))
    return sorted(out, key=lambda i: i.id)


def _iso(ts: pd.Timestamp) -> str:
    t = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _metric_line(mapping: MetricMapping, target: ServiceTarget, label: str) -> list:
    line: list = [mapping.namespace, mapping.metric_name]
    for name, attr in mapping.dimensions.items():
        line += [name, target.dimension_value(attr)]
    return [*line, {"stat": mapping.statistic, "label": label}]


def _annotations(metric: str, incidents: list[MarkedIncident], now: pd.Timestamp) -> dict:
    vertical: list = []
    for incident in incidents:
        end = incident.closed_at if incident.closed_at is not None else now
        vertical.append([{"label": incident.label, "value": _iso(incident.opened_at),
                          "color": INCIDENT_COLOUR}, {"value": _iso(max(end, incident.opened_at))}])
        if metric in incident.first_anomaly:
            at, text = incident.first_anomaly[metric]
            vertical.append({"label": f"#{incident.id} {text}", "value": _iso(at), "color": ANOMALY_COLOUR})
    return {"vertical": vertical}


def _incident_table(incidents: list[MarkedIncident], target: ServiceTarget, hours: int,
                    dashboard_url: str | None) -> str:
    lines = [f"## aiops: {target.cluster} / {target.service}",
             f"Incidents of the last {hours} h from the aiops incident log (red bands on the graphs; "
             "orange lines: first anomaly of that metric)."]
    if dashboard_url:
        lines.append(f"Details: [incident dashboard]({dashboard_url.rstrip('/')}/)")
    if not incidents:
        return "\n\n".join(lines + ["No incident in that period."])
    rows = ["| # | opened (UTC) | root cause | severity | action | status |", "|---|---|---|---|---|---|"]
    for i in reversed(incidents):
        ref = f"[{i.id}]({dashboard_url.rstrip('/')}/incidents/{i.id})" if dashboard_url else str(i.id)
        rows.append(f"| {ref} | {i.opened_at:%Y-%m-%d %H:%M} | {i.root_cause} | {i.severity} | "
                    f"{i.action} | {i.status} |")
    return "\n\n".join(lines) + "\n\n" + "\n".join(rows)


def dashboard_body(metrics: dict[str, MetricMapping], target: ServiceTarget, region: str,
                   incidents: list[MarkedIncident], now: pd.Timestamp, hours: int = 72,
                   period: int = 60, dashboard_url: str | None = None) -> dict:
    """The dashboard body: a text widget of incidents, then one graph per metric, two per row.

    Parameters
    ----------
    metrics : canonical name -> CloudWatch mapping (the settings').
    target : the service whose dimensions fill the mapping.
    region : the widgets' region.
    incidents : what to mark (:func:`recent_incidents`).
    now : the end of an incident still open.
    hours : the dashboard's default time range.
    period : seconds per point on the graphs.
    dashboard_url : the HTML dashboard's address, linked from the table when given.
    """
    if hours < 1:
        raise ValueError(f"hours must be at least 1, got {hours}")
    table_height = 3 + min(len(incidents), MAX_INCIDENTS) // 2 + (2 if incidents else 0)
    widgets: list[dict] = [{"type": "text", "x": 0, "y": 0, "width": 24, "height": table_height,
                            "properties": {"markdown": _incident_table(incidents, target, hours,
                                                                       dashboard_url)}}]
    for n, (metric, mapping) in enumerate(metrics.items()):
        spec = spec_for(metric)
        title = spec.label + (f" ({spec.unit})" if spec.unit else "")
        widgets.append({
            "type": "metric", "x": 12 * (n % 2), "y": table_height + 6 * (n // 2), "width": 12, "height": 6,
            "properties": {"title": title, "view": "timeSeries", "region": region, "period": period,
                           "stat": mapping.statistic, "stacked": False,
                           "metrics": [_metric_line(mapping, target, title)],
                           "annotations": _annotations(metric, incidents, now)}})
    return {"start": f"-PT{hours}H", "periodOverride": "inherit", "widgets": widgets}


def put_service_dashboard(client, name: str, body: dict) -> list[str]:
    """Write the dashboard; returns CloudWatch's validation messages (empty when all is well)."""
    try:
        answer = client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body))
    except (ClientError, BotoCoreError) as exc:
        raise DashboardError(f"cannot write CloudWatch dashboard {name}: {exc}") from None
    return [m.get("Message", str(m)) for m in answer.get("DashboardValidationMessages", [])]
