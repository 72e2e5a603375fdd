"""The ``aiops`` command line. Each command calls the same use-case functions as the HTTP API.

Exit codes: 0 success, 1 an operational error (named in one line on stderr), 2 a usage error,
3 the demo ran but some fault was not handled as the playbook says.

Each command (or group) lives in its own module and is registered here. These are the
application's commands; ``harness.cli`` adds the demo, the benchmarks and the simulator to make
the whole ``aiops``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

# Each command by name, imported only when it runs (or ``--help`` lists it): ``aiops X`` loads
# X's module alone, not every command's (scikit-learn, MLflow, FastAPI, boto3 ...).
COMMANDS: dict[str, str] = {
    "detect": "service.cli.detect:detect",
    "train": "service.cli.train:train",
    "baseline": "service.cli.baseline:baseline",
    "models": "service.cli.models:models",
    "watch": "service.cli.watch:watch",
    "status": "service.cli.status:status",
    "remediate": "service.cli.remediate:remediate",
    "incidents": "service.cli.incidents:incidents",
    "rca": "service.cli.rca:rca",
    "train-rca": "service.cli.rca:train_rca",
    "serve": "service.cli.serve:serve",
    "dashboard": "service.cli.dashboard:dashboard",
    "backtest": "service.cli.backtest:backtest",
    "deploy": "service.cli.deploy:deploy",
    "package": "service.cli.deploy:package",
}


class LazyGroup(click.Group):
    """A click group whose commands are ``"module:attribute"`` strings, imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attribute = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the incident log, reports and models live [env AIOPS_DATA_DIR; aiops-data].")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """Learn what normal looks like for an ECS service, spot what is not, say why, fix it."""
    ctx.obj = {"data_dir": data_dir} if data_dir else {}


def main() -> None:
    cli(prog_name="aiops")
