"""``aiops simulate``: run the simulated service live, and inject a chosen fault into it.

``aiops simulate run`` in one terminal (it prints the environment to point the other commands
at it), ``aiops baseline`` then ``aiops watch`` in another, and ``aiops simulate inject
memory_leak`` when you want something to happen: the simulator's counterpart of
``scripts/generate_anomaly.py``.
"""

from __future__ import annotations

import threading

import click
import pandas as pd

from service.cli.common import UtcTime, handle_errors, settings_from
from simulation.faults import FAULTS


@click.group()
def simulate() -> None:
    """Run the simulated ECS service live on a local AWS endpoint, and inject faults into it."""


@simulate.command()
@click.option("--port", default=4566, show_default=True, type=click.IntRange(1024, 65535),
              help="Port of the local AWS endpoint on 127.0.0.1.")
@click.option("--days", default=3, show_default=True, type=click.IntRange(1, 28),
              help="Days of history written before now.")
@click.option("--seed", default=7, show_default=True)
@click.option("--start", type=UtcTime(), default=None,
              help="Simulated time to start at (ISO 8601) [now]; the simulation then runs at the "
                   "wall clock's pace, and prints the AIOPS_CLOCK_OFFSET_SECONDS other commands need.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, port: int, days: int, seed: int, start) -> None:
    """Start the endpoint and the simulated service; one minute of metrics every minute until stopped."""
    import logging
    import os

    from moto.server import ThreadedMotoServer

    from harness.livesim import LiveSimulation
    from service.aws import prepare_local_dynamodb
    from service.fleet import stop_on_signals

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    prepare_local_dynamodb()
    settings = settings_from(ctx)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except OSError as exc:
        raise OSError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    stop = threading.Event()
    try:
        os.environ.update(env)
        live = LiveSimulation(settings, endpoint, seed, start)
        if live.offset != pd.Timedelta(0):
            env["AIOPS_CLOCK_OFFSET_SECONDS"] = f"{live.offset.total_seconds():.0f}"
        click.echo(f"writing {days} days of history for {settings.target.service} ...", err=True)
        live.start(days)
        click.echo("ready. In another terminal:\n  export " + " ".join(f"{k}={v}" for k, v in env.items())
                   + f"\n  aiops --data-dir {settings.data_dir} baseline --days {days}"
                   + f"\n  aiops --data-dir {settings.data_dir} watch"
                   + f"\n  aiops --data-dir {settings.data_dir} simulate inject memory_leak", err=True)
        with stop_on_signals(stop):
            while not stop.is_set():
                while live.due() and not stop.is_set():
                    for line in live.step():
                        click.echo(line)
                seconds = (live.clock.now - live.simulated_now()).total_seconds()
                stop.wait(max(0.5, seconds + 1))
    finally:
        server.stop()
    click.echo("simulator stopped", err=True)


@simulate.command()
@click.argument("fault", type=click.Choice(sorted(FAULTS)))
@click.pass_context
@handle_errors
def inject(ctx: click.Context, fault: str) -> None:
    """Inject FAULT into the running simulator at its next minute."""
    from harness.livesim import control_dir, queue_command

    queue_command(control_dir(settings_from(ctx)), "inject", fault)
    click.echo(f"{fault} queued: the simulator injects it at its next minute ({FAULTS[fault].description})")


@simulate.command()
@click.pass_context
@handle_errors
def clear(ctx: click.Context) -> None:
    """End every fault of the running simulator and put it back to nominal capacity."""
    from harness.livesim import control_dir, queue_command

    queue_command(control_dir(settings_from(ctx)), "clear")
    click.echo("clear queued: the simulator ends every fault at its next minute")
