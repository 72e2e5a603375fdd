"""``aiops dashboard --cloudwatch``: a CloudWatch dashboard of the service, incidents marked.

The HTML incident dashboard needs no command: ``aiops serve`` serves it at ``/``. This command
is for people who live in the AWS console: it writes (``put_dashboard``) one graph per
canonical metric of the service, annotated with the recent incidents of the log and their first
anomalies, and a table of those incidents. Run it again (from cron, say) to refresh the marks.
"""

from __future__ import annotations

import json

import click
import pandas as pd

from service.cli.common import emit, existing_store, fail, handle_errors, settings_from, with_target


@click.command()
@click.option("--cloudwatch", is_flag=True,
              help="Write a CloudWatch dashboard (put_dashboard) for the service.")
@with_target
@click.option("--name", default=None, help="Dashboard name [aiops-SERVICE].")
@click.option("--hours", type=click.IntRange(1, 24 * 455), default=72, show_default=True,
              help="Time range shown, and how far back incidents are marked.")
@click.option("--dashboard-url", default=None,
              help="Address of the HTML dashboard (`aiops serve`), linked from the incident table.")
@click.option("--dry-run", is_flag=True, help="Print the dashboard body; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine output.")
@click.pass_context
@handle_errors
def dashboard(ctx: click.Context, cloudwatch: bool, cluster: str | None, service: str | None,
              name: str | None, hours: int, dashboard_url: str | None, dry_run: bool,
              as_json: bool) -> None:
    """Write a CloudWatch dashboard of the service with the platform's incidents marked."""
    from service.aws import ClientFactory
    from service.cloudwatch_dashboard import (
        DashboardError,
        dashboard_body,
        dashboard_name,
        put_service_dashboard,
        recent_incidents,
    )

    if not cloudwatch:
        raise click.UsageError("the HTML incident dashboard is served by `aiops serve` at "
                               "http://HOST:PORT/; pass --cloudwatch to write a CloudWatch dashboard")
    settings = settings_from(ctx, cluster=cluster, service=service)
    target = settings.target
    name = name or dashboard_name(target)
    now = settings.clock()
    incidents, note = [], None
    store = existing_store(settings, required=False)
    if store is not None:
        incidents = recent_incidents(store, target, now - pd.Timedelta(hours=hours))
    else:
        note = f"no incident log at {settings.db_path}: the graphs carry no incident marks"
        click.echo(f"aiops dashboard: {note}", err=True)
    client = ClientFactory().client("cloudwatch")
    region = client.meta.region_name
    body = dashboard_body(settings.metrics, target, region, incidents, now, hours,
                          settings.period_seconds, dashboard_url)
    if dry_run:
        click.echo(json.dumps(body, indent=2))
        return
    try:
        messages = put_service_dashboard(client, name, body)
    except DashboardError as exc:
        fail(str(exc))
    url = f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={name}"
    widgets = sum(w["type"] == "metric" for w in body["widgets"])
    if as_json:
        emit({"dashboard": name, "region": region, "metric_widgets": widgets,
              "incidents_marked": [i.id for i in incidents], "validation_messages": messages,
              "console_url": url, "note": note}, True)
        return
    click.echo(f"wrote CloudWatch dashboard {name} in {region}: {widgets} metric graphs, "
               f"{len(incidents)} incident(s) of the last {hours} h marked")
    for message in messages:
        click.echo(f"  CloudWatch says: {message}", err=True)
    click.echo(url)
