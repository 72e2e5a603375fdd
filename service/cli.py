"""The ``aiops`` command line. Each command calls the same use-case functions as the HTTP API.

Exit codes: 0 success, 1 an operational error (named in one line on stderr), 2 a usage error,
3 the demo ran but some fault was not handled as the playbook says.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import ValidationError
from tabulate import tabulate

from models.bundle import BundleError, load_bundle
from rca.playbook import PlaybookError
from service.cloudwatch import MetricSourceError
from service.ecs import EcsActionError
from service.settings import Mode, ServiceTarget, Settings
from service.store import IncidentStore
from training.baselines import TrainingError

OPERATIONAL_ERRORS = (EcsActionError, MetricSourceError, TrainingError, BundleError, PlaybookError,
                      NoCredentialsError, BotoCoreError, ClientError, KeyError, ValueError, OSError)


def _fail(message: str) -> None:
    click.echo(f"aiops: error: {message}", err=True)
    sys.exit(1)


def handle_errors(func):
    """Turn the platform's known errors into one line on stderr and exit code 1."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            _fail(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        except OPERATIONAL_ERRORS as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            _fail(str(text).splitlines()[0] if str(text) else type(exc).__name__)
    return wrapper


def _settings(ctx: click.Context, **overrides) -> Settings:
    base: dict = dict(ctx.obj or {})
    target = {k: overrides.pop(k) for k in ("cluster", "service") if overrides.get(k)}
    if target:
        base["target"] = ServiceTarget(**{**Settings().target.model_dump(), **target})
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


def _emit(data, as_json: bool, table: list[list] | None = None, headers: list[str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        click.echo(tabulate(table, headers=headers or [], tablefmt="simple"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the incident log, reports and models live [env AIOPS_DATA_DIR; aiops-data].")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """Learn what normal looks like for an ECS service, spot what is not, say why, fix it."""
    ctx.obj = {"data_dir": data_dir} if data_dir else {}


target_options = [
    click.option("--cluster", help="ECS cluster [env AIOPS_TARGET__CLUSTER]."),
    click.option("--service", help="ECS service [env AIOPS_TARGET__SERVICE]."),
]


def with_target(func):
    for option in reversed(target_options):
        func = option(func)
    return func


@cli.command()
@click.option("--faults", default=None, help="Comma-separated faults to play (default: all six).")
@click.option("--seed", default=7, show_default=True, help="Noise seed of the simulation.")
@click.option("--days", default=14, show_default=True, help="Days of history to simulate.")
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, faults: str | None, seed: int, days: int, as_json: bool) -> None:
    """Run the whole loop on the embedded local environment and print a scorecard."""
    from service.demo import rows_as_dicts, run_demo

    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    settings = _settings(ctx)
    settings = settings.model_copy(update={"data_dir": settings.data_dir / f"demo-{stamp}"})
    started = time.monotonic()
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    result = run_demo(settings, faults.split(",") if faults else None, seed=seed,
                      history_days=days, progress=say)
    rows = rows_as_dicts(result.rows)
    if as_json:
        _emit({"scorecard": rows, "incident_log": str(result.db_path),
               "false_alarms": result.false_alarms}, True)
    else:
        _print_scorecard(result, time.monotonic() - started)
    if not all(r.correct for r in result.rows):
        sys.exit(3)


def _print_scorecard(result, seconds: float) -> None:
    headers = ["fault", "start", "detected (delay)", "anomalies", "root cause", "severity",
               "action", "ECS change", "verification (+15 min)", "escalation"]
    table = [[r.fault, r.start, f"{r.detected} ({r.delay_min:.0f} min)" if r.delay_min is not None
              else r.detected, r.anomalies.replace("; ", "\n"), r.root_cause, r.severity, r.action,
              r.ecs_change, r.verification, r.escalation] for r in result.rows]
    click.echo("\nScorecard")
    click.echo(tabulate(table, headers=headers, tablefmt="grid", maxcolwidths=[None] * 3 + [34]
                        + [None] * 3 + [26, None, None]))
    ok = sum(r.correct for r in result.rows)
    click.echo(f"\n{ok}/{len(result.rows)} faults diagnosed correctly and verified resolved; "
               f"{result.false_alarms} false alarm(s) in quiet periods; {seconds:.0f} s.")
    click.echo(f"Incident log: {result.db_path}")
    for r in result.rows:
        if r.report:
            click.echo(f"Report {r.fault}: {r.report}")


@cli.command()
@with_target
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 455),
              help="Days of history to learn from.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def baseline(ctx: click.Context, cluster: str | None, service: str | None, days: int,
             as_json: bool) -> None:
    """Rebuild the service's per-metric baselines from CloudWatch history."""
    from service.aws import ClientFactory
    from service.cloudwatch import CloudWatchMetrics
    from training.baselines import train_detector

    settings = _settings(ctx, cluster=cluster, service=service)
    factory = ClientFactory()
    source = CloudWatchMetrics(factory.client("cloudwatch"), settings.metrics, settings.target,
                               settings.period_seconds)
    end = pd.Timestamp.now(tz="UTC").floor("min")
    bundle_dir = settings.model_dir / f"{settings.target.cluster}--{settings.target.service}"
    result = train_detector(source, end, days, bundle_dir, threshold=settings.threshold)
    summary = {"bundle": str(result.bundle), "points": result.points, "metrics": result.metrics,
               "resolution": result.resolution, "start": result.start, "end": result.end}
    _emit(summary, as_json, [[k, v] for k, v in summary.items()])


@cli.group()
def remediate() -> None:
    """Run a remediation action on an ECS service by hand (logged as a manual action)."""


def _manual_action(ctx: click.Context, cluster, service, reason: str, dry_run: bool, as_json: bool,
                   action: str, **kwargs) -> None:
    from service.aws import ClientFactory
    from service.ecs import EcsActions

    settings = _settings(ctx, cluster=cluster, service=service)
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
    _emit(result.to_dict(), as_json, [["action", action], ["change", result.change],
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


@cli.group()
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
    store = _existing_store(_settings(ctx))
    found = store.list(status=status, limit=limit)
    _emit([i.to_dict() for i in found], as_json,
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

    store = _existing_store(_settings(ctx))
    incident = store.get(incident_id)
    anomalies, events = store.anomalies(incident_id), store.events(incident_id)
    if as_json:
        _emit({"incident": incident.to_dict(), "anomalies": anomalies, "events": events}, True)
    else:
        click.echo(render_markdown(incident.to_dict(), anomalies, events))


def _existing_store(settings: Settings) -> IncidentStore:
    if not settings.db_path.is_file():
        raise OSError(f"no incident log at {settings.db_path} (set --data-dir or AIOPS_DATA_DIR)")
    return IncidentStore(settings.db_path)


@cli.command()
@with_target
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Model bundle directory [the service's bundle under the data dir].")
@click.option("--once", is_flag=True, help="Score the newest points once and exit.")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=None,
              help="auto, approve (CRITICAL actions wait) or dry-run [env AIOPS_MODE; auto].")
@click.pass_context
@handle_errors
def watch(ctx, cluster, service, bundle, once, mode) -> None:
    """Watch a service: every period score the newest points and act on incidents."""
    from service.aws import ClientFactory
    from service.bootstrap import build_watcher
    from service.notify import ConsoleNotifier

    settings = _settings(ctx, cluster=cluster, service=service, mode=mode)
    bundle_dir = bundle or settings.model_dir / f"{settings.target.cluster}--{settings.target.service}"
    detector = load_bundle(bundle_dir).model
    clock = lambda: pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(minutes=1)  # noqa: E731
    watcher = build_watcher(settings, ClientFactory(), detector, ConsoleNotifier(sys.stderr), clock)
    while True:
        result = watcher.tick()
        click.echo(f"{result.at:%Y-%m-%d %H:%M} {len(result.anomalies)} anomalies"
                   + (f"; opened incident {result.opened}" if result.opened else "")
                   + (f"; verified incident {result.verified}: {'passed' if result.passed else 'failed'}"
                      if result.verified else ""))
        if once:
            return
        time.sleep(settings.period_seconds)


def main() -> None:
    cli(prog_name="aiops")


if __name__ == "__main__":
    main()
