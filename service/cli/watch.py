"""``aiops watch``: score a service's newest points every period and act on incidents."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import pandas as pd

from models.bundle import load_bundle
from service.cli.common import handle_errors, settings_from, with_target
from service.settings import Mode


@click.command()
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

    settings = settings_from(ctx, cluster=cluster, service=service, mode=mode)
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
