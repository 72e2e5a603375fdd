"""The incident dashboard: server-rendered HTML pages at ``/`` and ``/incidents/{id}``.

The same app that serves the API serves the pages, from the same incident log and nothing
else: the list of open and recent incidents, and one page per incident (with its links to incidents
of the same service split off from it or it from them) with its metrics plotted against the
baseline band (from the ``metrics_window`` events the watcher keeps, so a plot
outlives CloudWatch's retention), the anomalies marked, the diagnosis with its evidence and
confidence, the actions, the verification and the escalation timeline.

Pages are Jinja2 templates (``service/templates``, autoescaped) with inline CSS; plots are PNGs
drawn by :func:`rca.plots.metric_plot` and served at ``/incidents/{id}/plots/{metric}.png``. No
page loads anything from another host, so the dashboard works on a machine without internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from detection.metrics import spec_for
from rca.report import oom_text, track_text
from service.incident_plots import plot_png
from service.incident_plots import recorded_series as _series
from service.metric_window import EVENT as WINDOW_EVENT
from service.store import OPEN_STATUSES, IncidentStore

if TYPE_CHECKING:  # the router takes the API's shared context; no import cycle at run time
    from service.api import ApiContext

TEMPLATES = Path(__file__).parent / "templates"
RECENT = 50
ESCALATION_KINDS = ("approval_requested", "approved", "alert_sent", "alert_failed", "escalation",
                    "escalation_failed", "acknowledged")
HIDDEN_KINDS = (WINDOW_EVENT,)   # data for the plots, not a step a person reads


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["num"] = _num
    return env


def _when(value: Any) -> str:
    """A time as a person scans it: ``2026-11-16 10:04 UTC``; '-' for none."""
    if value is None or value == "":
        return "-"
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
    return f"{t:%Y-%m-%d %H:%M} UTC"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def _duration(start: pd.Timestamp | None, end: pd.Timestamp | None) -> str:
    if start is None or end is None:
        return "-"
    minutes = (end - start).total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


# ---------------------------------------------------------------------- what the pages show


def _strongest(anomalies: list[dict]) -> list[dict]:
    """The strongest anomaly of each metric, health metrics first, then by score."""
    best: dict[str, dict] = {}
    for a in anomalies:
        if a["metric"] not in best or a["score"] > best[a["metric"]]["score"]:
            best[a["metric"]] = a
    return sorted(best.values(), key=lambda a: (not spec_for(a["metric"]).health, -a["score"]))


def incident_summary(store: IncidentStore, incident) -> dict:
    """One row of the list: the incident and the anomalies a person recognises it by."""
    top = _strongest(store.anomalies(incident.id))
    return {"id": incident.id, "cluster": incident.cluster, "service": incident.service,
            "status": incident.status, "root_cause": incident.root_cause or "undiagnosed",
            "severity": incident.severity or "-", "confidence": incident.confidence,
            "action": incident.auto_action or "-", "opened_at": incident.opened_at,
            "closed_at": incident.closed_at,
            "duration": _duration(incident.opened_at, incident.closed_at),
            "anomalies": [a["text"] for a in top[:2]], "related_to": incident.related_to}


def list_view(store: IncidentStore, recent: int = RECENT) -> dict:
    """The front page: incidents still in progress, the most recent ones, counts by status."""
    in_progress = sorted((i for status in OPEN_STATUSES for i in store.list(status=status, limit=200)),
                         key=lambda i: -i.id)
    latest = store.list(limit=recent)
    return {"open": [incident_summary(store, i) for i in in_progress],
            "recent": [incident_summary(store, i) for i in latest],
            "counts": store.count_by_status()}


def describe(event: dict) -> str:
    """One timeline line for a person: what happened, in words."""
    kind, data = event.get("kind", ""), event.get("data") or {}
    if kind == "opened":
        where = f"opened on {data.get('cluster', '?')}/{data.get('service', '?')}"
        return f"{where}: {data['summary']}" if data.get("summary") else where
    if kind == "split":
        return f"another fault split off as incident {data.get('incident', '?')} " \
               f"({data.get('root_cause', '?')})"
    if kind == "features":
        raised = {k[:-2]: v for k, v in data.items()
                  if k.endswith("_z") and isinstance(v, int | float) and v > 0}
        return "scores: " + (", ".join(f"{k} {v:.1f}" for k, v in raised.items()) or "none raised")
    if kind == "diagnosed":
        return (f"{data.get('root_cause', '?')} (severity {data.get('severity', '?')}, confidence "
                f"{_num(data.get('confidence'))}): {data.get('explanation', '')}").rstrip(": ")
    if kind.endswith("action_started"):
        return f"{data.get('action', '?')} started" + (f": {data['reason']}" if data.get("reason") else "")
    if kind.endswith("action_done"):
        change = f": {data['change']}" if data.get("change") else ""
        return f"{data.get('action', '?')} {data.get('status', 'done')}{change}"
    if kind == "alert_sent":
        return f"alerted {data.get('role', '?')}"
    if kind == "escalation":
        return f"paged {data.get('role', '?')}" + (f" ({data['reason']})" if data.get("reason") else "")
    if kind == "escalation_failed":
        return f"could not page {data.get('role', '?')}: {data.get('error', '')}"
    if kind in ("acknowledged", "approved"):
        return f"{kind} by {data.get('by', '?')}"
    if kind == "verification":
        return f"{'passed' if data.get('passed') else 'FAILED'}: {data.get('summary', '')}"
    if kind.startswith("status:"):
        note = data.get("summary") or data.get("reason") or data.get("after") or ""
        return f"status {kind.split(':', 1)[1]}" + (f": {note}" if note else "")
    for key in ("summary", "change", "error", "reason", "role", "path"):
        if data.get(key):
            return str(data[key])
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, dict | list))[:200]


@dataclass(frozen=True)
class Plot:
    metric: str
    label: str
    url: str
    from_window: bool


def _plotted_metrics(incident, anomalies: list[dict], series: dict[str, pd.DataFrame]) -> list[str]:
    """Metrics with anomalies or named as evidence first, then the rest of the recorded window."""
    evidence = [e.feature for e in incident.diagnosis.evidence] if incident.diagnosis else []
    known = set(series) | {a["metric"] for a in anomalies}
    ordered: list[str] = []
    for metric in [a["metric"] for a in _strongest(anomalies)] + evidence + list(series):
        if metric in known and metric not in ordered:
            ordered.append(metric)
    return ordered


def incident_view(store: IncidentStore, incident_id: int) -> dict:
    """Everything the incident page shows. Raises KeyError for an unknown incident."""
    incident = store.get(incident_id)
    anomalies = store.anomalies(incident_id)
    events = store.events(incident_id)
    series = _series(events)
    diagnosis = incident.diagnosis
    verifications = [e for e in events if e["kind"] == "verification"]
    plots = [Plot(m, spec_for(m).label, f"/incidents/{incident_id}/plots/{m}.png", m in series)
             for m in _plotted_metrics(incident, anomalies, series)]
    return {
        "incident": incident,
        "duration": _duration(incident.opened_at, incident.closed_at),
        "diagnosis": diagnosis,
        "time_to_oom": oom_text(diagnosis.to_dict()) if diagnosis else None,
        "track_record": track_text(diagnosis.to_dict()) if diagnosis else None,
        "evidence": diagnosis.evidence if diagnosis else [],
        "anomalies": sorted(anomalies, key=lambda a: -a["score"])[:12],
        "anomaly_count": len(anomalies),
        "plots": plots,
        "window_recorded": bool(series),
        "actions": store.actions(incident_id=incident_id),
        "verification": verifications[-1] if verifications else None,
        "escalations": [dict(e, text=describe(e)) for e in events if e["kind"] in ESCALATION_KINDS],
        "split_off": [e["data"]["incident"] for e in events if e["kind"] == "split"],
        "timeline": [dict(e, text=describe(e)) for e in events if e["kind"] not in HIDDEN_KINDS],
    }


# ---------------------------------------------------------------------- routes


def dashboard_router(ctx: "ApiContext") -> APIRouter:
    """GET / (incidents), /incidents/{id} (one incident), /incidents/{id}/plots/{metric}.png."""
    router = APIRouter(tags=["dashboard"], include_in_schema=False)
    env = _environment()
    store = ctx.store

    def page(template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(service=ctx.settings.target.service, **values)
        return HTMLResponse(html, status_code=status_code)

    def not_found(message: str) -> HTMLResponse:
        return page("not_found.html", 404, title="Not found", message=message)

    @router.get("/", response_class=HTMLResponse)
    def incidents_page() -> HTMLResponse:
        return page("incidents.html", title="Incidents", **list_view(store))

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse)
    def incident_page(incident_id: str) -> HTMLResponse:
        number = _incident_number(incident_id)
        if number is None:
            return not_found(f"'{incident_id}' is not an incident number")
        try:
            view = incident_view(store, number)
        except KeyError:
            return not_found(f"There is no incident {number} in the log.")
        return page("incident.html", title=f"Incident {number}", **view)

    @router.get("/incidents/{incident_id}/plots/{metric}.png")
    def incident_plot(incident_id: str, metric: str) -> Response:
        number = _incident_number(incident_id)
        if number is None:
            return Response(f"'{incident_id}' is not an incident number", 404, media_type="text/plain")
        try:
            png = plot_png(store, number, metric)
        except KeyError as exc:
            return Response(str(exc.args[0]), 404, media_type="text/plain")
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=30"})

    return router


def _incident_number(text: str) -> int | None:
    digits = text.isascii() and text.isdigit()   # str.isdigit alone takes '²', which int() refuses
    return int(text) if digits and 0 < len(text) < 12 and int(text) > 0 else None
