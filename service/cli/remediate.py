"""``aiops remediate``: manual ECS actions, behind the same guardrails and log as automatic ones.

A person's action is judged by the safety guardrails (allow-list, one action in flight, the
desired-count cap, the Application Auto Scaling range, the rollback rules) but not held back by
cooldowns or the daily cap, which limit automation; it is counted in both, so automation does
not repeat it straight after. A refusal exits 1 and names the rule.
"""

from __future__ import annotations

import click

from service.cli.common import emit, fail, handle_errors, settings_from, with_target
from service.cli.watch import config_option


@click.group()
def remediate() -> None:
    """Run a remediation action on an ECS service by hand (logged as a manual action)."""


def _manual_action(ctx: click.Context, cluster, service, reason: str, dry_run: bool, as_json: bool,
                   config_path, incident: int | None, action: str, **params) -> None:
    from service import usecases
    from service.bootstrap import build_platform
    from service.requests import ActionCommand, parse

    if not reason.strip():
        raise click.BadParameter("say why, for the incident log", param_hint="--reason")
    settings = settings_from(ctx, cluster=cluster, service=service)
    command = parse(ActionCommand, {"action": action, "reason": reason, "dry_run": dry_run,
                                    "incident_id": incident,
                                    **{k: v for k, v in params.items() if v is not None}})
    platform = build_platform(settings, config_path)
    outcome = usecases.request_action(platform, command, "manual")
    if outcome.status == "refused":
        fail(f"refused ({outcome.reason}): {outcome.error}")
    if outcome.status == "failed":
        fail(outcome.error or f"{action} failed")
    target = platform.settings.target
    emit(outcome.to_dict(), as_json, [["action", action], ["service", f"{target.cluster}/{target.service}"],
                                      ["change", outcome.change],
                                      ["dry run", outcome.status == "dry_run"],
                                      ["logged as action", outcome.action_id]])


def manual_options(func):
    func = click.option("--json", "as_json", is_flag=True)(func)
    func = click.option("--incident", type=int, default=None,
                        help="Log it on this incident's timeline.")(func)
    func = click.option("--dry-run", is_flag=True, help="Decide and log; change nothing.")(func)
    func = click.option("--reason", required=True, help="Why, for the incident log.")(func)
    func = config_option(func)
    return with_target(func)


@remediate.command("scale-up")
@manual_options
@click.pass_context
@handle_errors
def scale_up(ctx, cluster, service, config_path, reason, dry_run, incident, as_json) -> None:
    """Add one task to the service's desired count."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, config_path, incident, "scale_up")


@remediate.command("scale")
@manual_options
@click.option("--count", required=True, type=click.IntRange(0, 10_000), help="Desired count to set.")
@click.pass_context
@handle_errors
def scale(ctx, cluster, service, config_path, reason, dry_run, incident, as_json, count) -> None:
    """Set the service's desired count to --count tasks."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, config_path, incident, "scale_to",
                   count=count)


@remediate.command()
@manual_options
@click.pass_context
@handle_errors
def restart(ctx, cluster, service, config_path, reason, dry_run, incident, as_json) -> None:
    """Stop the service's tasks so that ECS replaces them."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, config_path, incident,
                   "restart_tasks")


@remediate.command()
@manual_options
@click.option("--to", "to_revision", type=click.IntRange(1), default=None,
              help="Revision to roll back to [the previous ACTIVE one].")
@click.pass_context
@handle_errors
def rollback(ctx, cluster, service, config_path, reason, dry_run, incident, as_json, to_revision) -> None:
    """Roll the service back to the previous task-definition revision (or --to N)."""
    _manual_action(ctx, cluster, service, reason, dry_run, as_json, config_path, incident, "rollback",
                   to_revision=to_revision)
