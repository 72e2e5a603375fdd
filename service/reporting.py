"""The RCA report of an incident: written as Markdown beside the log, and sent when it is resolved.

Sending is idempotent (a ``report_sent`` event marks it), so a watcher that crashed between the
resolution and the e-mail sends it once on restart, and a person resolving by hand gets the same
report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rca.report import render_incident_html, render_markdown
from service.incident_plots import plot_png
from service.notify import Notifier, NotifyError
from service.store import IncidentStore


def write_report(store: IncidentStore, incident_id: int, reports_dir: Path, at: Any,
                 mail: dict | None = None) -> Path:
    """Write (or rewrite) the incident's Markdown report and its HTML twin with one plot per
    involved metric; both paths are logged. Returns the Markdown path."""
    incident = store.get(incident_id).to_dict()
    anomalies, events = store.anomalies(incident_id), store.events(incident_id)
    path = Path(reports_dir) / f"incident-{incident_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(incident, anomalies, events))
    html_path = path.with_suffix(".html")
    plots = _plots(store, incident_id, anomalies)
    html_path.write_text(render_incident_html(incident, anomalies, events, plots))
    if mail is not None:   # the e-mail's HTML names each plot as an inline MIME part
        from service.mail import content_id

        mail["html"] = render_incident_html(incident, anomalies, events, plots,
                                            image_src=lambda metric: f"cid:{content_id(metric)}")
        mail["images"] = {content_id(metric): png for metric, png in plots.items()}
    store.record(incident_id, at, "report", {"path": str(path), "html": str(html_path)})
    return path


def _plots(store: IncidentStore, incident_id: int, anomalies: list[dict]) -> dict[str, bytes]:
    """A PNG per metric that had anomalies, drawn from the log's recorded windows."""
    plots = {}
    for metric in dict.fromkeys(a["metric"] for a in anomalies):
        try:
            plots[metric] = plot_png(store, incident_id, metric)
        except KeyError:
            continue
    return plots


def send_report(store: IncidentStore, notifier: Notifier, incident_id: int, role: str,
                reports_dir: Path, at: Any) -> str | None:
    """Send a resolved incident's RCA report to ``role`` once; returns the message id.

    Returns None when it was already sent; a failed send is logged and left for a later call.
    """
    if store.last_event(incident_id, "report_sent") is not None:
        return None
    mail: dict = {}
    path = write_report(store, incident_id, reports_dir, at, mail)
    incident = store.get(incident_id)
    cause = incident.root_cause or "undiagnosed"
    subject = f"Resolved: incident {incident_id} on {incident.service} ({cause}) - RCA report"
    try:
        if hasattr(notifier, "report"):   # e-mail: the HTML with its plots inline, the Markdown as text
            message_id = notifier.report(role, subject, path.read_text(), mail["html"], mail["images"])
        else:
            message_id = notifier.notify(role, subject, path.read_text())
    except NotifyError as exc:
        store.record(incident_id, at, "report_failed", {"role": role, "error": str(exc)})
        return None
    store.record(incident_id, at, "report_sent", {"role": role, "message_id": message_id,
                                                  "path": str(path)})
    return message_id


def unsent_reports(store: IncidentStore, cluster: str, service: str, limit: int = 20) -> list[int]:
    """Resolved incidents of a service whose report was never sent (newest ``limit`` looked at)."""
    resolved = [i for i in store.list(status="resolved", limit=500)
                if i.cluster == cluster and i.service == service][:limit]
    return [i.id for i in resolved if store.last_event(i.id, "report_sent") is None]


def resolve_and_report(store: IncidentStore, notifier: Notifier, incident_id: int, by: str, note: str,
                       role: str, reports_dir: Path, at: Any) -> tuple[Any, str | None]:
    """Resolve an incident by hand and send its RCA report: the use case behind the CLI and HTTP.

    Returns the resolved incident and the report's message id (None if it could not be sent;
    the failure is in the log and the report can be sent again).
    """
    incident = store.resolve(incident_id, at, by, note)
    return incident, send_report(store, notifier, incident_id, role, reports_dir, at)
