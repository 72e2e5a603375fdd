"""``aiops baseline``: rebuild a service's baselines from CloudWatch history."""

from __future__ import annotations

import click
import pandas as pd

from service.cli.common import emit, handle_errors, settings_from, with_target


@click.command()
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

    settings = settings_from(ctx, cluster=cluster, service=service)
    factory = ClientFactory()
    source = CloudWatchMetrics(factory.client("cloudwatch"), settings.metrics, settings.target,
                               settings.period_seconds)
    end = pd.Timestamp.now(tz="UTC").floor("min")
    bundle_dir = settings.model_dir / f"{settings.target.cluster}--{settings.target.service}"
    result = train_detector(source, end, days, bundle_dir, threshold=settings.threshold)
    summary = {"bundle": str(result.bundle), "points": result.points, "metrics": result.metrics,
               "resolution": result.resolution, "start": result.start, "end": result.end}
    emit(summary, as_json, [[k, v] for k, v in summary.items()])
