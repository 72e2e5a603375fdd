"""What every ``aiops`` command shares: settings from flags, one-line errors, output."""

from __future__ import annotations

import functools
import json
import sys

import click
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import ValidationError
from tabulate import tabulate

from models.bundle import BundleError
from rca.playbook import PlaybookError
from service.clock import utc
from service.cloudwatch import MetricSourceError
from service.ecs import EcsActionError
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from simulation.clock import DEFAULT_START
from training.baselines import TrainingError

OPERATIONAL_ERRORS = (EcsActionError, MetricSourceError, TrainingError, BundleError, PlaybookError,
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


def start_option(default: pd.Timestamp = DEFAULT_START,
                 help: str = "Simulated start (ISO 8601; UTC when it has no offset): the history "
                             "ends and the faults begin here, so a run gives the same result "
                             "whatever the date it happens on."):
    """``--start``: the simulated instant a simulation, benchmark or demo begins at."""
    return click.option("--start", type=UtcTime(), default=default.isoformat(), show_default=True,
                        help=help)


def fail(message: str) -> None:
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
            fail(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        except OPERATIONAL_ERRORS as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            fail(str(text).splitlines()[0] if str(text) else type(exc).__name__)
    return wrapper


def settings_from(ctx: click.Context, **overrides) -> Settings:
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
        click.echo(tabulate(table, headers=headers or [], tablefmt="simple"))


target_options = [
    click.option("--cluster", help="ECS cluster [env AIOPS_TARGET__CLUSTER]."),
    click.option("--service", help="ECS service [env AIOPS_TARGET__SERVICE]."),
]


def with_target(func):
    for option in reversed(target_options):
        func = option(func)
    return func


def existing_store(settings: Settings) -> IncidentStore:
    if not settings.db_path.is_file():
        raise OSError(f"no incident log at {settings.db_path} (set --data-dir or AIOPS_DATA_DIR)")
    return IncidentStore(settings.db_path)
