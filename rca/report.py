"""The RCA report of one incident, as Markdown: what was seen, why, what was done, the outcome."""

from __future__ import annotations


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
        f"- Root cause: **{diagnosis.get('root_cause', '-')}** (severity {diagnosis.get('severity', '-')}, "
        f"confidence {diagnosis.get('confidence', 0):.2f})",
        f"- Why: {diagnosis.get('explanation', '-')}",
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
