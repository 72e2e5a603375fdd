"""The whole ``aiops`` command line: the application's commands (``service.cli``) and the harness's
(``demo``, ``benchmark``, ``simulate``), composed here, above both.

``python -m service.cli`` is the application alone (what runs in production: watch, serve,
train, remediate, incidents, rca ...); ``aiops`` and ``python -m harness.cli`` add the demo, the
benchmarks and the live simulator.
"""

from __future__ import annotations

from service.cli import COMMANDS, LazyGroup
from service.cli import cli as application

# the harness's commands join the application's, imported (as theirs) only when they run
cli = LazyGroup(name="aiops", callback=application.callback, params=application.params,
                help=application.help, context_settings=application.context_settings,
                lazy={**COMMANDS, "demo": "harness.cli.demo:demo",
                      "simulate": "harness.cli.simulate:simulate",
                      "benchmark": "harness.cli.benchmark:benchmark"})


def main() -> None:
    cli(prog_name="aiops")
