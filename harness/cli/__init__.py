"""The whole ``aiops`` command line: the application's commands (``service.cli``) and the harness's
(``demo``, ``benchmark``, ``simulate``), composed here, above both.

``python -m service.cli`` is the application alone (what runs in production: watch, serve,
train, remediate, incidents, rca ...); ``aiops`` and ``python -m harness.cli`` add the demo, the
benchmarks and the live simulator.
"""

from __future__ import annotations

import click

from harness.cli.benchmark import benchmark
from harness.cli.demo import demo
from harness.cli.simulate import simulate
from service.cli import cli as application

cli = click.Group(name="aiops", callback=application.callback, params=application.params,
                  help=application.help, context_settings=application.context_settings,
                  commands={**application.commands, "demo": demo, "simulate": simulate,
                            "benchmark": benchmark})


def main() -> None:
    cli(prog_name="aiops")
