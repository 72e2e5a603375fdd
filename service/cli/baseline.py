"""``aiops baseline``: rebuild only a service's per-metric baselines, on demand.

The "update baselines" step for when behaviour changed for a legitimate reason (a new release,
a new traffic pattern): it fits the baselines (robust z-scores per hour of the week) on the
newest ``--days`` of history with nothing held back, publishes them to the local store and
makes them the champion straight away, because the operator says the old normal is over.
Everything else is ``aiops train``.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from service.cli.common import emit, fail, handle_errors, settings_from, with_target
from service.cli.train import (
    ClickProgress,
    history_sources,
    parse_end,
    source_options,
    store_paths,
    training_trust,
)


@click.command()
@with_target
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 455),
              help="Days of history to learn from.")
@click.option("--end", default=None, help="End of the window, ISO 8601 [last whole hour; a file's end].")
@source_options
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def baseline(ctx: click.Context, cluster: str | None, service: str | None, days: int, end: str | None,
             from_csv: Path | None, from_parquet: Path | None, as_json: bool) -> None:
    """Rebuild the service's per-metric baselines from its history and put them in service."""
    from models.store import LocalModelStore
    from training.detectors import BASELINES_ONLY, detector_config
    from training.pipeline import Target, TrainOptions, train_services

    settings = settings_from(ctx, cluster=cluster, service=service)
    target = settings.target
    sources, default_end, metrics = history_sources(settings, [target], from_csv, from_parquet)
    options = TrainOptions(detector=detector_config(BASELINES_ONLY, threshold=settings.threshold),
                           days=days, holdout=pd.Timedelta(0), promote="always",
                           metrics=tuple(metrics) if metrics else None,
                           freq=pd.Timedelta(seconds=settings.period_seconds) if metrics else None,
                           n_jobs=1)
    root, deploy_root = store_paths(settings)
    result = train_services([Target(target.cluster, target.service, sources[0])], options,
                            end=parse_end(end) or default_end,
                            store=LocalModelStore(root, training_trust(settings, "aiops baseline")),
                            deploy_root=deploy_root, progress=ClickProgress(quiet=as_json),
                            published_at=settings.clock())[0]
    if not result.ok:
        fail(result.reason)
    resolution = getattr(getattr(result.model, "baseline_", None), "resolution_", "")
    summary = {"bundle": str(result.deployed), "version": result.version, "points": result.points,
               "metrics": result.metrics, "resolution": resolution, "start": result.start,
               "end": result.end, "notes": result.notes}
    emit(summary, as_json, [[k, v] for k, v in summary.items()])
