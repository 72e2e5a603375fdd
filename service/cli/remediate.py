"""``aiops remediate``: manual ECS actions, logged in the incident log like automatic ones."""

from __future__ import annotations

import click
import pandas as pd

from service.cli.common import emit, handle_errors, settings_from, with_target
from service.ecs import EcsActionError
from service.settings import Mode
from service.store import IncidentStore


@click.group()
def remediate() -> None:
    """Run a remediation action on an ECS service by hand (logged as a manual action)."""


def _manual_action(ctx: click.Context, cluster, service, reason: str, dry_run: bool, as_json: bool,
                   action: str, **kwargs) -> None:
    from service.aws import ClientFactory
    from service.ecs import EcsActions

    settings = settings_from(ctx, cluster=cluster, service=service)
    target = settings.target
    store = IncidentStore(settings.db_path)
    now = pd.Timestamp.now(tz="UTC")
    actions = EcsActions(ClientFactory().client("ecs"), dry_run=dry_run or settings.mode is Mode.DRY_RUN)
    store.record(None, now, "manual_action_started", {"action": action, "reason": reason,
                                                      "cluster": target.cluster, "service": target.service})
    try:
        result = getattr(actions, action)(target.cluster, target.service, **kwargs)
    except EcsActionError as exc:
        store.record(None, now, "manual_action_failed", {"action": action, "error": str(exc)})
        raise
    store.record(None, pd.Timestamp.now(tz="UTC"), "manual_action_done",
                 {**result.to_dict(), "reason": reason})
    emit(result.to_dict(), as_json, [["action", action], ["change", result.change],
                                      ["dry run", result.dry_run]])


def manual_options(func):
    func = click.option("--json", "as_json", is_flag=True)(func)
    func = click.option("--dry-run", is_flag=True, help="Decide and log; change nothing.")(func)
    func = click.option("--reason", required=True, help="Why, for the incident log.")(func)
    return with_target(func)


@remediate.command("scale-up")
@manual_options
@click.pass_context
@handle_errors
def scale_up(ctx, cluster, service, reason, dry_run, as_json) -> None:
    """Add one task to the service's desired count."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, "scale_up")


@remediate.command()
@manual_options
@click.pass_context
@handle_errors
def restart(ctx, cluster, service, reason, dry_run, as_json) -> None:
    """Stop the service's tasks so that ECS replaces them."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, "restart_tasks")


@remediate.command()
@manual_options
@click.option("--to", "to_revision", type=int, default=None, help="Revision to roll back to.")
@click.pass_context
@handle_errors
def rollback(ctx, cluster, service, reason, dry_run, as_json, to_revision) -> None:
    """Roll the service back to the previous task-definition revision (or --to N)."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, "rollback", to_revision=to_revision)
