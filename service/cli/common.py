"""What every ``aiops`` command shares: settings from flags, one-line errors, output."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import TYPE_CHECKING

import click

from service.clock import utc

if TYPE_CHECKING:
    from service.repository import IncidentRepository
    from service.settings import Settings

# The settings, the incident log, boto3's and the models' error types are imported where they are
# used, not here: every command imports this module, and ``aiops benchmark nab`` (or ``--help``)
# needs none of them (they cost about a third of a second of start-up).


def operational_errors() -> tuple[type[BaseException], ...]:
    """The errors a command reports in one line (exit 1) instead of a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from models.bundle import BundleError
    from rca.playbook import PlaybookError
    from service.cloudwatch import MetricSourceError
    from service.ecs import EcsActionError
    from training.errors import TrainingError  # not training.baselines: that loads scikit-learn

    return (EcsActionError, MetricSourceError, TrainingError, BundleError, PlaybookError,
            NoCredentialsError, BotoCoreError, ClientError, KeyError, ValueError, OSError)


class UtcTime(click.ParamType):
    """An ISO 8601 time on the command line, as an aware UTC timestamp (naive means UTC)."""

    name = "ISO8601"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return utc(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-02T01:00:00Z)", param, ctx)


def fail(message: str) -> None:
    click.echo(f"aiops: error: {message}", err=True)
    sys.exit(1)


def handle_errors(func):
    """Turn the platform's known errors into one line on stderr and exit code 1."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        except operational_errors() as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            fail(str(text).splitlines()[0] if str(text) else type(exc).__name__)
    return wrapper


def settings_from(ctx: click.Context, **overrides) -> "Settings":
    from service.settings import ServiceTarget, Settings

    base: dict = dict(ctx.obj or {})
    target = {k: overrides.pop(k) for k in ("cluster", "service") if overrides.get(k)}
    if target:
        base["target"] = ServiceTarget(**{**Settings().target.model_dump(), **target})
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**base)


def emit(data, as_json: bool, table: list[list] | None = None, headers: list[str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif table is not None:
        from tabulate import tabulate

        click.echo(tabulate(table, headers=headers or [], tablefmt="simple"))


target_options = [
    click.option("--cluster", help="ECS cluster [env AIOPS_TARGET__CLUSTER]."),
    click.option("--service", help="ECS service [env AIOPS_TARGET__SERVICE]."),
]


allow_unsigned_option = click.option(
    "--allow-unsigned", is_flag=True, default=None,
    help="Load model bundles whose signature is missing or wrong (local experiments only) "
         "[env AIOPS_ALLOW_UNSIGNED].")


def with_target(func):
    for option in reversed(target_options):
        func = option(func)
    return func


def existing_store(settings: "Settings", required: bool = True) -> "IncidentRepository | None":
    """The incident log the settings choose (``AIOPS_STORE``): the shared DynamoDB table, or the
    SQLite file, which must exist (None when it does not and ``required`` is False)."""
    from service.settings import StoreKind
    from service.store import IncidentStore

    if settings.store is StoreKind.DYNAMODB:
        from service.bootstrap import open_store

        return open_store(settings)
    if not settings.db_path.is_file():
        if not required:
            return None
        raise OSError(f"no incident log at {settings.db_path} (set --data-dir or AIOPS_DATA_DIR)")
    return IncidentStore(settings.db_path)


MLFLOW_ENV = "MLFLOW_TRACKING_URI"


def mlflow_options(func):
    """``--mlflow-uri`` and ``--experiment``, shared by every benchmark."""
    func = click.option("--experiment", default=None,
                        help="MLflow experiment name [default: one per benchmark].")(func)
    return click.option("--mlflow-uri", default=None,
                        help=f"MLflow tracking URI [env {MLFLOW_ENV}; unset: no tracking].")(func)


def track(log, report, mlflow_uri: str | None, experiment: str | None, default_experiment: str,
          as_json: bool) -> str | None:
    """Log ``report`` with ``log(report, uri, experiment)`` when a URI is configured; say what happened."""
    uri = mlflow_uri or os.environ.get(MLFLOW_ENV)
    if not uri:
        if not as_json:
            click.echo(f"MLflow tracking skipped: no tracking URI (set {MLFLOW_ENV} or --mlflow-uri).")
        return None
    try:
        run_id = log(report, uri, experiment or default_experiment)
    except Exception as exc:  # noqa: BLE001 - any tracking failure is reported in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"could not log to MLflow at {uri}: {reason}")
    if not as_json:
        click.echo(f"Logged to MLflow at {uri}: experiment {experiment or default_experiment}, run {run_id}.")
    return run_id
