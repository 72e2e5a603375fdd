"""``aiops train``: the nightly retraining job, for one service or many.

Reads each service's history (CloudWatch through the settings' mapping, or a CSV/Parquet
file), fits the configured detector, evaluates it against the champion on a held-back tail
with injected anomalies, publishes the bundle to the local store, logs an MLflow run and
promotes the new version only when it is not worse. Progress bars go to stderr; the summary
table (or ``--json``) to stdout. Exit 1 when any service failed (the others still train).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pandas as pd

from service.cli.common import emit, fail, handle_errors, settings_from
from service.clock import utc
from service.settings import ServiceTarget, Settings

MLFLOW_ENV = "MLFLOW_TRACKING_URI"


class ClickProgress:
    """Progress bars (click's) and notes on stderr; a bar shows only its label off a terminal."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    @contextlib.contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[str], None]]:
        if self.quiet:
            yield lambda item: None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                               item_show_func=lambda item: item or "") as bar:
            yield lambda item: bar.update(1, item)

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(text, err=True)


def source_options(func):
    """``--from-csv`` / ``--from-parquet``: train from a file instead of CloudWatch."""
    func = click.option("--from-parquet", "from_parquet", type=click.Path(path_type=Path), default=None,
                        help="Read history from a Parquet file (timestamp + metric columns).")(func)
    return click.option("--from-csv", "from_csv", type=click.Path(path_type=Path), default=None,
                        help="Read history from a CSV file (timestamp + metric columns, optional "
                             "cluster/service columns).")(func)


def service_targets(settings: Settings, services: tuple[str, ...], config_path: Path | None,
                    from_file: bool) -> list[ServiceTarget]:
    """The services to train: those of a watch config (``--config``, each with its own load
    balancer dimensions), or ``--service`` values in the settings' cluster."""
    if config_path is not None:
        from service.watch_config import load_watch_config

        config = load_watch_config(config_path)
        chosen = [s for s in config.services if not services or s.service in services]
        if not chosen:
            raise click.UsageError(f"no services to train in {config_path}"
                                   + (f" named {', '.join(services)}" if services else ""))
        return [s.target(settings.target) for s in chosen]
    names = list(dict.fromkeys(services)) or [settings.target.service]
    if len(names) > 1 and not from_file:
        raise click.UsageError("several --service values need --config (each service's load balancer "
                               "dimensions) or --from-csv/--from-parquet; the settings describe one "
                               "service's CloudWatch dimensions")
    return [settings.target.model_copy(update={"service": n}) for n in names]


def history_sources(settings: Settings, targets: list[ServiceTarget], from_csv: Path | None,
                    from_parquet: Path | None) -> tuple[list, pd.Timestamp, list[str] | None]:
    """Each target's history source, the default end of the window, and the wanted metrics.

    CloudWatch: one source per metric (a progress step each), the window ending at the last
    whole hour (so two runs in the same hour read the same data); a file: its rows, ending
    after its last timestamp, with whatever metric columns it has.
    """
    from training.datasets import FrameSource, PerMetricSource, infer_freq, read_history_file, select_service

    if from_csv and from_parquet:
        raise click.UsageError("give --from-csv or --from-parquet, not both")
    path = from_csv or from_parquet
    if path is not None:
        frame = read_history_file(path)
        sources = [FrameSource(select_service(frame, t.cluster, t.service, str(path))) for t in targets]
        end = frame.index.max() + infer_freq(frame.index.unique().sort_values())
        return sources, end, None
    from service.aws import ClientFactory
    from service.cloudwatch import CloudWatchMetrics

    client = ClientFactory().client("cloudwatch")
    sources = [PerMetricSource({
        metric: CloudWatchMetrics(client, {metric: mapping}, target, settings.period_seconds)
        for metric, mapping in settings.metrics.items()}) for target in targets]
    end = settings.clock().floor("h")
    return sources, end, list(settings.metrics)


def parse_end(value: str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return utc(value)
    except ValueError:
        raise click.BadParameter(f"not a timestamp: {value!r}", param_hint="--end") from None


def parse_excludes(values: tuple[str, ...]) -> tuple[tuple[pd.Timestamp, pd.Timestamp], ...]:
    out = []
    for value in values:
        parts = value.split("/")
        if len(parts) != 2:
            raise click.BadParameter(f"{value!r} is not START/END", param_hint="--exclude")
        start, end = (parse_end(p) for p in parts)
        if end <= start:
            raise click.BadParameter(f"{value!r} ends before it starts", param_hint="--exclude")
        out.append((start, end))
    return tuple(out)


def tracker_from(mlflow_uri: str | None, experiment: str, no_tracking: bool, trust):
    from training.tracking import DEFAULT_URI, MlflowTracker

    if no_tracking:
        return None
    return MlflowTracker(trust, mlflow_uri or os.environ.get(MLFLOW_ENV) or DEFAULT_URI, experiment)


def training_trust(settings: Settings, loader: str):
    """The trust training publishes with: the configured key, or the data directory's own
    (generated on first use and announced on stderr)."""
    from service.signing import bundle_trust

    return bundle_trust(settings, loader, create=True)


def store_paths(settings: Settings) -> tuple[Path, Path]:
    """The local model store's root and the directory of deployed (champion) bundles."""
    return settings.model_dir / "registry", settings.model_dir


@click.command()
@click.option("--cluster", help="ECS cluster [env AIOPS_TARGET__CLUSTER].")
@click.option("--service", "services", multiple=True,
              help="ECS service; repeat for several [env AIOPS_TARGET__SERVICE].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Train every service of this watch config (the file aiops watch reads); "
                   "--service then picks some of them.")
@click.option("--days", default=14.0, show_default=True, type=click.FloatRange(0.05, 455),
              help="Days of history to fit on (the held-back tail comes on top).")
@click.option("--holdout-hours", default=24.0, show_default=True, type=click.FloatRange(0, 24 * 14),
              help="Newest hours held back to evaluate on (0: no evaluation).")
@click.option("--end", default=None, help="End of the window, ISO 8601 [last whole hour; a file's end].")
@source_options
@click.option("--detector", type=click.Choice(["ensemble", "robust_z"]), default="ensemble",
              show_default=True, help="ensemble: baselines + seasonal (STL) + isolation forest, "
                                      "calibrated; robust_z: the per-metric baselines only.")
@click.option("--threshold", default=None, type=float,
              help="Detector threshold: a calibrated score in (0, 1) for ensemble [0.9999], a robust "
                   "z for robust_z [env AIOPS_THRESHOLD; 4].")
@click.option("--seed", default=0, show_default=True, help="Seed of the evaluation's injected anomalies.")
@click.option("--tolerance", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="F1 below the champion's that still counts as not worse.")
@click.option("--no-promote", is_flag=True, help="Register the new version as challenger only.")
@click.option("--exclude", multiple=True, metavar="START/END",
              help="A time range left out of fitting (an incident, a deployment); repeatable.")
@click.option("--n-jobs", default=-1, show_default=True, help="Parallel fits (-1: one per core).")
@click.option("--backend", type=click.Choice(["loky", "dask", "sequential"]), default="loky",
              show_default=True, help="joblib process pool, a Dask cluster, or one process.")
@click.option("--dask-scheduler", default=None,
              help="Dask scheduler address for --backend dask [a LocalCluster is started].")
@click.option("--mlflow-uri", default=None,
              help=f"MLflow tracking URI [env {MLFLOW_ENV}; sqlite:///mlflow.db].")
@click.option("--experiment", default="aiops-training", show_default=True, help="MLflow experiment.")
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
@handle_errors
def train(ctx: click.Context, cluster, services, config_path, days, holdout_hours, end, from_csv,
          from_parquet,
          detector, threshold, seed, tolerance, no_promote, exclude, n_jobs, backend, dask_scheduler,
          mlflow_uri, experiment, no_tracking, as_json) -> None:
    """Retrain services' models from their history, evaluate, track and promote.

    The new model becomes the champion only when it is not worse than the current one on the
    same held-back tail with the same injected anomalies; otherwise it is the challenger and
    the table says why. Safe to run twice: an identical model is reported as unchanged.
    """
    from models.store import LocalModelStore
    from training.detectors import detector_config
    from training.pipeline import SUMMARY_HEADERS, Target, TrainOptions, summary_rows, train_services

    settings = settings_from(ctx, cluster=cluster, service=services[0] if services else None)
    chosen = service_targets(settings, services, config_path, bool(from_csv or from_parquet))
    sources, default_end, metrics = history_sources(settings, chosen, from_csv, from_parquet)
    if threshold is None and detector == "robust_z":
        threshold = settings.threshold  # AIOPS_THRESHOLD is a z-score: it only means something here
    config = detector_config(detector, threshold=threshold)
    options = TrainOptions(detector=config, days=days, holdout=pd.Timedelta(hours=holdout_hours),
                           metrics=tuple(metrics) if metrics else None,
                           freq=pd.Timedelta(seconds=settings.period_seconds) if metrics else None,
                           seed=seed, tolerance=tolerance, promote="never" if no_promote else "auto",
                           exclude=parse_excludes(exclude), n_jobs=n_jobs, backend=backend,
                           scheduler=dask_scheduler)
    root, deploy_root = store_paths(settings)
    targets = [Target(t.cluster, t.service, source) for t, source in zip(chosen, sources, strict=True)]
    trust = training_trust(settings, "aiops train")
    results = train_services(targets, options, end=parse_end(end) or default_end,
                             store=LocalModelStore(root, trust), deploy_root=deploy_root,
                             tracker=tracker_from(mlflow_uri, experiment, no_tracking, trust),
                             progress=ClickProgress(quiet=as_json), published_at=settings.clock())
    if as_json:
        emit([r.to_dict() for r in results], True)
    else:
        emit(None, False, summary_rows(results), SUMMARY_HEADERS)
        for r in results:
            for note in r.notes:
                click.echo(f"{r.name}: {note}")
            if r.ok:
                click.echo(f"{r.name}: bundle {r.bundle}; MLflow {r.tracking}")
    failed = [r for r in results if not r.ok]
    if failed:
        fail("; ".join(f"{r.cluster}/{r.service}: {r.reason}" for r in failed))
