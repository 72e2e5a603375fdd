"""``aiops incidents``: read the incident log."""

from __future__ import annotations

import click

from service.cli.common import emit, existing_store, handle_errors, settings_from


@click.group()
def incidents() -> None:
    """Read the incident log."""


@incidents.command("list")
@click.option("--status", default=None, help="Only incidents in this status.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_incidents(ctx, status, limit, as_json) -> None:
    """List incidents, newest first."""
    store = existing_store(settings_from(ctx))
    found = store.list(status=status, limit=limit)
    emit([i.to_dict() for i in found], as_json,
          [[i.id, i.opened_at, i.service, i.status, i.root_cause, i.severity] for i in found],
          ["id", "opened", "service", "status", "root cause", "severity"])


@incidents.command("show")
@click.argument("incident_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def show_incident(ctx, incident_id: int, as_json: bool) -> None:
    """Show one incident: its diagnosis, anomalies and timeline."""
    from rca.report import render_markdown

    store = existing_store(settings_from(ctx))
    incident = store.get(incident_id)
    anomalies, events = store.anomalies(incident_id), store.events(incident_id)
    if as_json:
        emit({"incident": incident.to_dict(), "anomalies": anomalies, "events": events}, True)
    else:
        click.echo(render_markdown(incident.to_dict(), anomalies, events))
