"""The ``aiops`` command line. Each command calls the same use-case functions as the HTTP API.

Exit codes: 0 success, 1 an operational error (named in one line on stderr), 2 a usage error,
3 the demo ran but some fault was not handled as the playbook says.

Each command (or group) lives in its own module and is registered here. These are the
application's commands; ``harness.cli`` adds the demo, the benchmarks and the simulator to make
the whole ``aiops``.
"""

from __future__ import annotations

from pathlib import Path

import click

from service.cli.backtest import backtest
from service.cli.baseline import baseline
from service.cli.dashboard import dashboard
from service.cli.deploy import deploy, package
from service.cli.detect import detect
from service.cli.incidents import incidents
from service.cli.models import models
from service.cli.rca import rca, train_rca
from service.cli.remediate import remediate
from service.cli.serve import serve
from service.cli.status import status
from service.cli.train import train
from service.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where the incident log, reports and models live [env AIOPS_DATA_DIR; aiops-data].")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """Learn what normal looks like for an ECS service, spot what is not, say why, fix it."""
    ctx.obj = {"data_dir": data_dir} if data_dir else {}


for command in (detect, train, baseline, models, watch, status, remediate, incidents, rca, train_rca,
                serve, dashboard, backtest, deploy, package):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="aiops")
