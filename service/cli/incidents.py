"""``aiops incidents``: read the incident log."""

from __future__ import annotations

import click

from service.cli.common import emit, existing_store, fail, handle_errors, settings_from


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


@incidents.command("label")
@click.argument("incident_id", type=int)
@click.argument("cause")
@click.option("--by", default=None, help="Who labels it [env USER].")
@click.option("--note", default=None, help="Why, for the incident log.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def label_incident(ctx, incident_id: int, cause: str, by: str | None, note: str | None,
                   as_json: bool) -> None:
    """Record the true root cause of an incident; `aiops train-rca` learns from it."""
    import getpass

    from rca.playbook import ROOT_CAUSES

    if cause not in ROOT_CAUSES:
        raise click.BadParameter(f"unknown root cause {cause!r}; known: {', '.join(ROOT_CAUSES)}",
                                 param_hint="CAUSE")
    settings = settings_from(ctx)
    store = existing_store(settings)
    incident = store.get(incident_id)
    label = {"cause": cause, "by": by or getpass.getuser(), "note": note,
             "previous": incident.root_cause}
    store.record(incident_id, settings.clock(), "label", label)
    emit({"incident": incident_id, **label}, as_json,
         [["incident", incident_id], ["label", cause], ["diagnosed as", incident.root_cause or "-"],
          ["by", label["by"]]])


def _platform(ctx: click.Context, config_path: str | None = None):
    """The platform over the existing incident log (a clear error when there is none yet)."""
    from service.bootstrap import build_platform

    settings = settings_from(ctx)
    return build_platform(settings, config_path, store=existing_store(settings))


def _person(by: str | None, note: str | None = None):
    """Who takes the step (the current user by default), checked by the same model as HTTP's."""
    import getpass

    from service.requests import PersonStep, parse

    return parse(PersonStep, {"by": by or getpass.getuser(), "note": note or None})


@incidents.command("ack")
@click.argument("incident_id", type=int)
@click.option("--by", default=None, help="Who takes it [the current user].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def ack_incident(ctx, incident_id: int, by: str | None, as_json: bool) -> None:
    """Acknowledge an incident: you own it, escalation stops paging."""
    from service import usecases

    step = _person(by)
    incident = usecases.acknowledge(_platform(ctx), incident_id, step.by)
    emit(incident.to_dict(), as_json, [["incident", incident.id], ["status", incident.status],
                                        ["acknowledged by", incident.acked_by]])


@incidents.command("approve")
@click.argument("incident_id", type=int)
@click.option("--by", default=None, help="Who approves [the current user].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def approve_incident(ctx, incident_id: int, by: str | None, as_json: bool) -> None:
    """Approve the CRITICAL action an incident waits for; the watcher runs it on its next tick."""
    from service import usecases

    step = _person(by)
    incident = usecases.approve(_platform(ctx), incident_id, step.by)
    action = incident.auto_action or "the action"
    emit(incident.to_dict(), as_json, [["incident", incident.id], ["approved", action],
                                        ["by", incident.approved_by],
                                        ["next", "the watcher runs it on its next tick, guarded"]])


@incidents.command("resolve")
@click.argument("incident_id", type=int)
@click.option("--by", default=None, help="Who resolves it [the current user].")
@click.option("--note", default="", help="What fixed it, for the report.")
@click.option("--config", "config_path", envvar="AIOPS_CONFIG",
              type=click.Path(dir_okay=False), help="Notifiers for the report [env AIOPS_CONFIG].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def resolve_incident(ctx, incident_id: int, by: str | None, note: str, config_path, as_json: bool) -> None:
    """Resolve an incident by hand and send its RCA report to the on-call engineer."""
    from service import usecases

    step = _person(by, note)
    platform = _platform(ctx, config_path)
    incident, sent = usecases.resolve(platform, incident_id, step.by, step.note or "")
    role = platform.on_call
    emit(incident.to_dict() | {"report_message_id": sent}, as_json,
         [["incident", incident.id], ["status", incident.status], ["by", step.by],
          ["report sent to", role if sent else "not sent (see the incident log)"]])


@incidents.command("reindex")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def reindex_incidents(ctx, as_json: bool) -> None:
    """Write the shared table's key-addressed indexes for items an earlier version wrote.

    Run once after upgrading a platform that already wrote to its DynamoDB table (it scans the
    table: use credentials with dynamodb:Scan, which the platform's own role does not need).
    Running it again, or while watchers run, is harmless."""
    from service.dynamo_store import DynamoIncidentStore

    store = existing_store(settings_from(ctx))
    if not isinstance(store, DynamoIncidentStore):
        fail("only the shared DynamoDB incident log (AIOPS_STORE=dynamodb) has indexes to write")
    done = store.reindex()
    emit(done, as_json, [[what, n] for what, n in sorted(done.items())], ["indexed", "items"])


@incidents.command("alert")
@click.argument("incident_id", type=int)
@click.option("--by", default=None, help="Who pages [the current user].")
@click.option("--note", default="", help="Why, added to the page.")
@click.option("--config", "config_path", envvar="AIOPS_CONFIG",
              type=click.Path(dir_okay=False), help="Notifiers for the page [env AIOPS_CONFIG].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def alert_incident(ctx, incident_id: int, by: str | None, note: str, config_path, as_json: bool) -> None:
    """Page the on-call role now with an open incident's diagnosis (logged on its timeline)."""
    from service import usecases

    step = _person(by, note)
    outcome = usecases.alert(_platform(ctx, config_path), incident_id, step.by, step.note or "")
    if outcome.status == "failed":
        fail(f"the page was not sent: {outcome.error}")
    emit(outcome.to_dict() | {"incident": incident_id}, as_json,
         [["incident", incident_id], ["paged", outcome.change.removeprefix("alerted ")], ["by", step.by]])
