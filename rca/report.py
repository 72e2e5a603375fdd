"""The RCA report of one incident, as Markdown and HTML: what was seen, why, what was done, the outcome.

Pure text rendering: the plots come in as PNG bytes (:mod:`rca.plots`); nothing is written here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable

from detection.forecast import OomForecast
from rca.outcomes import TrackRecord


def render_markdown(incident: dict, anomalies: list[dict], events: list[dict]) -> str:
    """A short report a person reads in a minute.

    Parameters
    ----------
    incident : the incident as ``Incident.to_dict()`` gives it.
    anomalies : its anomalies (metric, timestamp, text, score).
    events : its timeline (at, kind, data), oldest first.
    """
    diagnosis = incident.get("diagnosis") or {}
    lines = [
        f"# Incident {incident['id']}: {diagnosis.get('root_cause', 'undiagnosed')} "
        f"on {incident['service']}",
        "",
        f"- Cluster / service: {incident['cluster']} / {incident['service']}",
        f"- Opened: {incident['opened_at']}; status: **{incident['status']}**"
        + (f"; closed: {incident['closed_at']}" if incident.get("closed_at") else ""),
        *_related_lines(incident, events),
        f"- Root cause: **{diagnosis.get('root_cause', '-')}** (severity {diagnosis.get('severity', '-')}, "
        f"confidence {diagnosis.get('confidence', 0):.2f})",
        f"- Why: {diagnosis.get('explanation', '-')}",
        *[f"- Time to OOM: {text}" for text in [oom_text(diagnosis)] if text],
        *[f"- Past outcomes of the action: {text}" for text in [track_text(diagnosis)] if text],
        f"- Automatic action: {diagnosis.get('auto_action', '-')}; manual follow-up: "
        f"{diagnosis.get('manual_action', '-')}",
        "",
        "## Anomalies",
        "",
    ]
    lines += _anomaly_lines(anomalies)
    lines += ["", "## Timeline", "", "| time | event | detail |", "|---|---|---|"]
    lines += [f"| {e['at']} | {e['kind']} | {_detail(e)} |" for e in events]
    return "\n".join(lines) + "\n"


def oom_text(diagnosis: dict) -> str | None:
    """The diagnosis' time-to-OOM forecast in words (when it was made), or None without one."""
    data = (diagnosis or {}).get("time_to_oom")
    if not data:
        return None
    try:
        forecast = OomForecast.from_dict(data)
    except (ValueError, TypeError):
        return None
    return (f"{forecast.minutes:.0f} min, at {forecast.reaches_at:%Y-%m-%d %H:%M} UTC "
            f"(forecast at {forecast.at:%H:%M}: {forecast.summary()})")


def track_text(diagnosis: dict) -> str | None:
    """The automatic action's success rate for this cause on this service before the incident."""
    data = (diagnosis or {}).get("track_record")
    if not data:
        return None
    try:
        record = TrackRecord.from_dict(data)
    except (ValueError, TypeError):
        return None
    if not record.tried:
        return record.summary()
    return (f"{record.summary()}; the last {record.failing_streak} failed" if record.failing_streak
            else record.summary())


def _related(incident: dict, events: list[dict]) -> list[str]:
    """How the incident is linked to others of its service: split off from one, or the one
    others were split off from (each another fault, told apart by its root cause)."""
    out = []
    if incident.get("related_to"):
        out.append(f"split off from incident {incident['related_to']} (another root cause while "
                   "it was open)")
    split = [str((e.get("data") or {}).get("incident")) for e in events if e.get("kind") == "split"]
    if split:
        out.append(f"incidents split off from this one (other faults): {', '.join(split)}")
    return out


def _related_lines(incident: dict, events: list[dict]) -> list[str]:
    return [f"- Related: {text}" for text in _related(incident, events)]


def _anomaly_lines(anomalies: list[dict], most: int = 12) -> list[str]:
    if not anomalies:
        return ["(none recorded)"]
    strongest = sorted(anomalies, key=lambda a: -a["score"])[:most]
    out = [f"- {a['timestamp']}: {a['text']} (score {a['score']:.1f})"
           for a in sorted(strongest, key=lambda a: a["timestamp"])]
    if len(anomalies) > most:
        out.append(f"- ... and {len(anomalies) - most} more")
    return out


def _detail(event: dict) -> str:
    data = event.get("data") or {}
    if event.get("kind") == "features":
        raised = {k[:-2]: v for k, v in data.items() if k.endswith("_z") and v > 0}
        return "scores: " + (", ".join(f"{k} {v:.1f}" for k, v in raised.items()) or "none raised")
    for key in ("change", "summary", "explanation", "error", "role", "reason"):
        if data.get(key):
            return str(data[key]).replace("|", "/")
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))[:200]


def _evidence_rows(diagnosis: dict) -> list[list[str]]:
    rows = []
    for e in diagnosis.get("evidence") or []:
        expected = e.get("expected")
        contribution = e.get("contribution")
        rows.append([str(e["feature"]), _num(e.get("value")), _num(expected),
                     "-" if contribution is None else f"{contribution:.2f}"])
    return rows


def _num(value) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def render_diagnosis_markdown(diagnosis: dict, anomalies: list[str], plots: dict[str, str] | None = None,
                              title: str = "Root-cause analysis") -> str:
    """The report of one diagnosis made outside the watcher (``aiops rca``, the API).

    Parameters
    ----------
    diagnosis : ``Diagnosis.to_dict()``.
    anomalies : the anomalies as operators read them (``CPU: 60% (expected 4%)``).
    plots : metric -> image file name (relative to the report), one per involved metric.
    """
    lines = [f"# {title}: {diagnosis['root_cause']}", "",
             f"- Root cause: **{diagnosis['root_cause']}** (severity {diagnosis['severity']}, "
             f"confidence {diagnosis['confidence']:.2f})",
             f"- Why: {diagnosis['explanation']}",
             f"- Automatic action: {diagnosis['auto_action']}; "
             f"manual follow-up: {diagnosis['manual_action']}",
             "", "## Evidence", ""]
    evidence = _evidence_rows(diagnosis)
    if evidence:
        lines += ["| feature | value | expected | contribution |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in evidence]
    else:
        lines.append("(none)")
    lines += ["", "## Anomalies", ""] + ([f"- {a}" for a in anomalies] or ["(none)"])
    for metric, name in (plots or {}).items():
        lines += ["", f"![{metric}]({name})"]
    return "\n".join(lines) + "\n"


def render_html(title: str, diagnosis: dict, anomalies: list[str], plots: dict[str, bytes] | None = None,
                facts: list[tuple[str, str]] | None = None, timeline: list[dict] | None = None,
                image_src: Callable[[str], str] | None = None) -> str:
    """A self-contained HTML report (plots embedded as PNG data URIs), for e-mail and browsers.

    Parameters
    ----------
    title : the heading.
    diagnosis : ``Diagnosis.to_dict()`` (or the incident's stored diagnosis).
    anomalies : the anomalies as operators read them.
    plots : metric -> PNG bytes, one per involved metric.
    facts : extra (label, value) lines shown first (cluster, service, status ...).
    timeline : events (at, kind, data), oldest first.
    image_src : metric -> the ``src`` of its plot, instead of a data URI (an e-mail's
        ``cid:`` reference to a related MIME part: mail clients block data URIs).
    """
    esc = html.escape
    d = diagnosis or {}
    items = list(facts or []) + [
        ("Root cause", f"<b>{esc(str(d.get('root_cause', '-')))}</b> "
                       f"(severity {esc(str(d.get('severity', '-')))}, "
                       f"confidence {float(d.get('confidence') or 0):.2f})"),
        ("Why", esc(str(d.get("explanation", "-")))),
        *[("Time to OOM", esc(text)) for text in [oom_text(d)] if text],
        *[("Past outcomes of the action", esc(text)) for text in [track_text(d)] if text],
        ("Automatic action", esc(str(d.get("auto_action", "-")))),
        ("Manual follow-up", esc(str(d.get("manual_action", "-"))))]
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">", f"<title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
             "</head><body>", f"<h1>{esc(title)}</h1>", "<ul>"]
    parts += [f"<li>{esc(label)}: {value}</li>" for label, value in items]
    parts.append("</ul><h2>Evidence</h2>")
    evidence = _evidence_rows(d)
    if evidence:
        parts.append("<table><tr><th>feature</th><th>value</th><th>expected</th><th>contribution</th></tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in evidence]
        parts.append("</table>")
    else:
        parts.append("<p>(none)</p>")
    parts.append("<h2>Anomalies</h2><ul>")
    parts += [f"<li>{esc(a)}</li>" for a in anomalies] or ["<li>(none)</li>"]
    parts.append("</ul>")
    for metric, png in (plots or {}).items():
        src = (image_src(metric) if image_src
               else f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}")
        parts.append(f"<h3>{esc(metric)}</h3><img alt=\"{esc(metric)}\" src=\"{esc(src)}\">")
    if timeline:
        parts.append("<h2>Timeline</h2><table><tr><th>time</th><th>event</th><th>detail</th></tr>")
        parts += [f"<tr><td>{esc(e['at'])}</td><td>{esc(e['kind'])}</td><td>{esc(_detail(e))}</td></tr>"
                  for e in timeline]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_incident_html(incident: dict, anomalies: list[dict], events: list[dict],
                         plots: dict[str, bytes] | None = None,
                         image_src: Callable[[str], str] | None = None) -> str:
    """The HTML twin of :func:`render_markdown` for an incident of the log."""
    diagnosis = incident.get("diagnosis") or {}
    facts = [("Cluster / service", html.escape(f"{incident['cluster']} / {incident['service']}")),
             ("Opened", html.escape(str(incident["opened_at"]))),
             ("Status", f"<b>{html.escape(str(incident['status']))}</b>")]
    facts += [("Related", html.escape(text)) for text in _related(incident, events)]
    texts = [line[2:] for line in _anomaly_lines(anomalies) if line.startswith("- ")]
    cause = diagnosis.get("root_cause", "undiagnosed")
    title = f"Incident {incident['id']}: {cause} on {incident['service']}"
    return render_html(title, diagnosis, texts, plots, facts, events, image_src)
