"""The training pipeline: history -> fit -> evaluate -> bundle -> track -> promote, per service.

For each service the pipeline reads ``days`` of history plus a held-back tail (``holdout``,
a day by default) from its metric source, fits the configured detector on the history before
the tail (in parallel across services, see ``training.parallel``), evaluates it on the tail
with injected anomalies, and evaluates the current champion on *the same* set. The model that
is evaluated is the model that ships: the bundle holds exactly that fit, so its figures are
out-of-sample; the price is that the newest ``holdout`` of data is only used to judge it.

The bundle is always published to the local store; the MLflow run (params, figures, the
bundle as a registered model version) is logged when the tracking store answers, and skipped
with the reason otherwise. The new version becomes ``champion`` only when it is not worse than
the current champion on the same evaluation (``training.evaluation.not_worse``); otherwise it
is the ``challenger`` and the result says why. The champion is then copied, atomically, to the
service's deployed bundle directory, which ``aiops watch`` loads.

Safe to run twice: the same data and configuration give a byte-identical bundle, which the
stores recognise by its digest ("unchanged"); a run that fails before promotion changes no
alias, so the champion stays in place.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from detection.metrics import MetricSpec
from models.bundle import BundleError, bundle_digest, save_bundle
from models.store import CHALLENGER, CHAMPION, LocalModelStore, ModelStore, ModelVersion, model_name
from training.datasets import Dataset, HistorySource, PerMetricSource, Split, build_dataset, split_tail
from training.detectors import detector_config
from training.errors import TrainingError
from training.evaluation import EvaluationSet, evaluate, make_evaluation_set, not_worse
from training.parallel import FitJob, iter_fits
from training.tracking import MlflowTracker

PROMOTE_MODES = ("auto", "always", "never")


class Progress(Protocol):
    """Where the pipeline reports progress: bars for long steps, one-line notes."""

    def bar(self, label: str, total: int) -> contextlib.AbstractContextManager[Callable[[str], None]]: ...

    def note(self, text: str) -> None: ...


class NullProgress:
    """Progress that shows nothing (tests, library use)."""

    @contextlib.contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[str], None]]:
        yield lambda item: None

    def note(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class Target:
    """One service to train and where its history comes from."""

    cluster: str
    service: str
    source: HistorySource

    @property
    def name(self) -> str:
        return model_name(self.cluster, self.service)


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes a training run besides the services.

    Parameters
    ----------
    detector : the detector configuration (``training.detectors.detector_config``).
    days : days of history to fit on; the held-back tail comes on top of them.
    holdout : the newest stretch held back for evaluation (0: no evaluation).
    min_train : the least history to fit on; with less, nothing is held back (cold start).
    metrics : the configured metrics; a missing one is dropped with a note. All in the source
        when None.
    freq : the metric period; inferred from the data when None.
    min_coverage : the observed fraction of the window a metric needs.
    seed, events_per_day : fix the injected anomalies of the evaluation.
    tolerance : how much lower an F1 than the champion's still counts as "not worse".
    promote : ``auto`` (when not worse), ``always`` (an operator's rebuild) or ``never``.
    exclude : (start, end) ranges left out of fitting, e.g. a known incident.
    n_jobs, backend, scheduler : parallel fitting (``training.parallel.fit_all``).
    specs : metric specs (which metrics are health metrics, which way is bad).
    """

    detector: dict = field(default_factory=detector_config)
    days: float = 14
    holdout: pd.Timedelta = pd.Timedelta(days=1)
    min_train: pd.Timedelta = pd.Timedelta(days=1)
    metrics: tuple[str, ...] | None = None
    freq: pd.Timedelta | None = None
    min_coverage: float = 0.5
    seed: int = 0
    events_per_day: float = 8
    tolerance: float = 0.0
    promote: str = "auto"
    exclude: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()
    n_jobs: int = -1
    backend: str = "loky"
    scheduler: str | None = None
    specs: dict[str, MetricSpec] | None = None

    def validate(self) -> None:
        if not self.days > 0:
            raise ValueError(f"days must be positive, got {self.days}")
        if self.holdout < pd.Timedelta(0):
            raise ValueError(f"holdout cannot be negative, got {self.holdout}")
        if self.promote not in PROMOTE_MODES:
            raise ValueError(f"promote must be one of {', '.join(PROMOTE_MODES)}, got {self.promote!r}")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance cannot be negative, got {self.tolerance}")


@dataclass
class ServiceResult:
    """What training did for one service, for the summary table, JSON output and the demo."""

    cluster: str
    service: str
    name: str
    status: str = "failed"     # champion | challenger | unchanged | failed
    reason: str = ""
    version: int | None = None          # local store version
    bundle: Path | None = None          # the version's directory in the local store
    deployed: Path | None = None        # the service's deployed (champion) bundle
    digest: str = ""
    mlflow_version: int | None = None
    run_id: str | None = None
    tracking: str = ""
    evaluation: dict = field(default_factory=dict)
    champion_version: int | None = None
    champion_evaluation: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    points: int = 0
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    fit_seconds: float = 0.0
    model: Any = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "model"}
        for key in ("bundle", "deployed"):
            out[key] = str(out[key]) if out[key] is not None else None
        for key in ("start", "end"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


@dataclass
class _Prepared:
    target: Target
    result: ServiceResult
    dataset: Dataset | None = None
    split: Split | None = None


def history_window(end: pd.Timestamp, options: TrainOptions) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The time range read for a run ending at ``end``: ``days`` plus the held-back tail."""
    end = pd.Timestamp(end)
    end = end.tz_localize("UTC") if end.tz is None else end.tz_convert("UTC")
    return end - pd.Timedelta(days=options.days) - options.holdout, end


def train_services(targets: list[Target], options: TrainOptions, *, end: pd.Timestamp,
                   store: LocalModelStore, deploy_root: Path | None = None,
                   tracker: MlflowTracker | None = None,
                   progress: Progress | None = None,
                   published_at: pd.Timestamp | None = None) -> list[ServiceResult]:
    """Train every target; one result per target, in order. A failing service fails alone.

    Parameters
    ----------
    targets : the services and their history sources.
    options : see ``TrainOptions``.
    end : the end of the history window (exclusive).
    store : the local model store; every bundle is published there, signed with the key of
        its ``trust`` (``models.signing``).
    deploy_root : the champion of each service is copied to ``deploy_root / name``.
    tracker : MLflow tracking; None (or an unreachable store) skips it, with the reason.
    progress : where progress bars and notes go.
    published_at : the time the new bundles are published at (the caller's clock); ``end``
        when None, as in a simulation whose "now" is the end of the history.
    """
    options.validate()
    if not targets:
        raise TrainingError("no services to train")
    if store.trust.key is None:
        raise TrainingError("no signing key to sign the model bundles with: set AIOPS_SIGNING_KEY "
                            "or AIOPS_SIGNING_SECRET_ID (or let aiops generate the data directory's key)")
    progress = progress or NullProgress()
    start, stop = history_window(end, options)
    prepared = [_prepare(t, options, start, stop, progress) for t in targets]
    runnable = [p for p in prepared if p.split is not None]
    tracking_reason = None
    if tracker is not None and runnable:
        tracking_reason = tracker.check()
        if tracking_reason:
            progress.note(f"MLflow tracking skipped: {tracking_reason}")
    jobs = [FitJob(p.target.name, options.detector, p.split.train,
                   list(options.exclude) or None) for p in runnable]
    live_tracker = tracker if tracker is not None and tracking_reason is None else None
    why_not = tracking_reason if tracker is not None else "no tracking store configured"
    started = time.perf_counter()
    # Each service is evaluated, published and tracked as soon as its fit arrives, while the
    # workers fit the others; its serialized state is dropped once the bundle holds it.
    with progress.bar(f"fitting {len(jobs)} service(s)", len(jobs)) as advance:
        for i, fit in iter_fits(jobs, n_jobs=options.n_jobs, backend=options.backend,
                                scheduler=options.scheduler):
            item = runnable[i]
            advance(item.target.name)
            item.result.fit_seconds = time.perf_counter() - started
            if fit.error:
                item.result.reason = fit.error
                continue
            try:
                _finish(item, fit.model, fit.state, options, store, deploy_root, live_tracker, why_not,
                        progress, _iso(published_at if published_at is not None else end))
            except (BundleError, OSError, ValueError) as exc:
                item.result.status, item.result.reason = "failed", _first_line(exc)
    return [p.result for p in prepared]


def train_service(cluster: str, service: str, source: HistorySource, *, end: pd.Timestamp,
                  store: LocalModelStore, options: TrainOptions | None = None,
                  deploy_root: Path | None = None, tracker: MlflowTracker | None = None,
                  progress: Progress | None = None,
                  published_at: pd.Timestamp | None = None) -> ServiceResult:
    """Train one service (the demo's and the watcher's entry point); raises TrainingError when
    it fails, with the reason."""
    result = train_services([Target(cluster, service, source)], options or TrainOptions(), end=end,
                            store=store, deploy_root=deploy_root, tracker=tracker, progress=progress,
                            published_at=published_at)[0]
    if not result.ok:
        raise TrainingError(f"{cluster}/{service}: {result.reason}")
    return result


def _prepare(target: Target, options: TrainOptions, start: pd.Timestamp, stop: pd.Timestamp,
             progress: Progress) -> _Prepared:
    """Read, check and split one service's history; a failure is recorded, not raised."""
    result = ServiceResult(target.cluster, target.service, target.name)
    item = _Prepared(target, result)
    try:
        history = _read(target, start, stop, progress)
        dataset = build_dataset(history, list(options.metrics) if options.metrics else None,
                                freq=options.freq, min_coverage=options.min_coverage)
    except Exception as exc:  # noqa: BLE001 - the source's own errors (CloudWatch, files) end here
        result.reason = _first_line(exc)
        progress.note(f"{target.name}: {result.reason}")
        return item
    split = split_tail(dataset, options.holdout, options.min_train)
    item.dataset, item.split = dataset, split
    result.metrics, result.points = dataset.metrics, dataset.points
    result.start, result.end = split.train.index[0], split.train.index[-1]
    result.notes = dataset.notes()
    wanted = pd.Timedelta(days=options.days)
    if split.train.index[-1] - split.train.index[0] + dataset.freq < wanted - dataset.freq:
        have = (split.train.index[-1] - split.train.index[0] + dataset.freq) / pd.Timedelta(days=1)
        result.notes.append(f"cold start: {have:.1f} days of history to fit on ({options.days:g} "
                            "wanted); the model falls back to what that much history supports")
    if split.note:
        result.notes.append(split.note)
    return item


def _read(target: Target, start: pd.Timestamp, stop: pd.Timestamp, progress: Progress) -> pd.DataFrame:
    source = target.source
    if isinstance(source, PerMetricSource):
        with progress.bar(f"reading {target.name}", len(source.metric_names)) as advance:
            return source.read(start, stop, on_metric=advance)
    with progress.bar(f"reading {target.name}", 1) as advance:
        frame = source.read(start, stop)
        advance(target.name)
    return frame


def _finish(item: _Prepared, model: Any, state: bytes, options: TrainOptions, store: LocalModelStore,
            deploy_root: Path | None, tracker: MlflowTracker | None, tracking_reason: str | None,
            progress: Progress, published_at: str) -> None:
    """Evaluate, bundle, publish, track and promote one fitted service."""
    result, split, name = item.result, item.split, item.target.name
    result.model = model
    result.notes.extend(_fallback_notes(model))
    evalset = (make_evaluation_set(split.tail, split.train, seed=options.seed,
                                   events_per_day=options.events_per_day, specs=options.specs)
               if split.tail is not None else None)
    if evalset is not None and evalset.events:
        result.evaluation = evaluate(model, evalset)
    elif evalset is not None:
        result.notes.append("the tail has no health metric to inject anomalies into: evaluation skipped")
    primary: ModelStore = tracker.store if tracker is not None else store
    champion = _current_champion(primary, name, result)
    with tempfile.TemporaryDirectory(prefix="aiops-bundle-") as tmp:
        bundle_dir = save_bundle(
            model, options.detector, Path(tmp) / "bundle", key=store.trust.key,
            metrics=list(split.train.columns),
            data_window=(split.train.index[0].isoformat(), split.train.index[-1].isoformat()),
            feature_names=feature_names(model, list(split.train.columns)),
            evaluation=result.evaluation, state=state)
        result.digest = bundle_digest(bundle_dir)
        info = {"evaluation": result.evaluation, "notes": result.notes,
                "data_window": [result.start.isoformat(), result.end.isoformat()]}
        if champion is not None and champion.digest == result.digest:
            local = store.publish(name, bundle_dir, info=info, created_at=published_at)
            _settle_unchanged(result, local, champion, store, deploy_root)
            result.tracking = "nothing new to log (identical to the champion)"
            return
        decision, reason, champ_figures = _decide(model, evalset, champion, primary, name, options, result)
        result.champion_evaluation = champ_figures
        info["decision"], info["reason"] = decision, reason
        if champion is not None:
            info["champion"] = {"version": champion.version, "store": primary.kind,
                                "evaluation": champ_figures}
        local = store.publish(name, bundle_dir, info=info, created_at=published_at)
        result.version, result.bundle = local.version, Path(local.source)
        mlflow_version = _track(item, tracker, tracking_reason, options, bundle_dir, info, result, progress)
    _apply(decision, store, name, local.version, tracker, mlflow_version, result)
    result.status, result.reason = decision, reason
    if decision == CHAMPION and deploy_root is not None:
        result.deployed = store.export(name, local.version, deploy_root / name)
    elif deploy_root is not None and (deploy_root / name / "manifest.json").is_file():
        result.deployed = deploy_root / name


def _fallback_notes(model: Any) -> list[str]:
    """What the fitted model had to leave out or simplify for lack of history."""
    notes = []
    resolution = getattr(getattr(model, "baseline_", None), "resolution_", None)
    if resolution and resolution != "hour_of_week":
        notes.append(f"baselines fall back to {resolution.replace('_', '-')} buckets "
                     "(hour-of-week needs two weeks of history)")
    for member, why in (getattr(model, "skipped_", None) or {}).items():
        notes.append(f"{member} model left out: {why}")
    return notes


def feature_names(model: Any, metrics: list[str]) -> list[str]:
    """The model's input features: scikit-learn's ``feature_names_in_``, the isolation forest's
    derived features inside an ensemble, or the metrics themselves."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        forest = (getattr(model, "members_", None) or {}).get("iforest")
        names = getattr(forest, "feature_names_", None)
    return [str(n) for n in names] if names is not None else list(metrics)


def _current_champion(primary: ModelStore, name: str, result: ServiceResult) -> ModelVersion | None:
    try:
        return primary.get(name, alias=CHAMPION)
    except Exception as exc:  # noqa: BLE001 - a registry that cannot answer is reported, not fatal
        result.notes.append(f"could not look up the current champion in the {primary.kind} store: "
                            f"{_first_line(exc)}")
        return None


def _decide(model: Any, evalset: EvaluationSet | None, champion: ModelVersion | None,
            primary: ModelStore, name: str, options: TrainOptions,
            result: ServiceResult) -> tuple[str, str, dict]:
    """champion or challenger, the reason, and the champion's figures on the same evaluation."""
    if options.promote == "always":
        return CHAMPION, "promoted on request (an operator's rebuild)", {}
    if options.promote == "never":
        return CHALLENGER, "registered without promotion (--no-promote)", {}
    if champion is None:
        return CHAMPION, "first model for this service", {}
    if evalset is None or not evalset.events:
        return CHALLENGER, (f"no evaluation to compare with the champion (v{champion.version}); "
                            "it stays in place"), {}
    try:
        current = primary.load(name, alias=CHAMPION)
        figures = evaluate(current.model, evalset)
    except Exception as exc:  # noqa: BLE001 - a champion that cannot serve is no reason to keep it
        return CHAMPION, (f"the champion (v{champion.version}) cannot be evaluated: "
                          f"{_first_line(exc)}"), {}
    result.champion_version = champion.version
    window = current.manifest.get("data_window", {})
    if window.get("end") and evalset.frame.index[0] <= pd.Timestamp(window["end"]):
        result.notes.append(f"the champion (v{champion.version}) was fitted on part of this evaluation's "
                            "tail; its figures are optimistic")
    better, why = not_worse(result.evaluation, figures, options.tolerance)
    return (CHAMPION if better else CHALLENGER), why, figures


def _track(item: _Prepared, tracker: MlflowTracker | None, reason: str | None, options: TrainOptions,
           bundle_dir: Path, info: dict, result: ServiceResult, progress: Progress) -> int | None:
    """Log the MLflow run; any failure becomes a note, never a failed training."""
    if tracker is None:
        result.tracking = f"skipped: {reason}"
        return None
    dataset = item.dataset
    params = {"cluster": result.cluster, "service": result.service, "detector": options.detector["detector"],
              **{f"detector.{k}": v for k, v in options.detector.get("params", {}).items()},
              "days": options.days, "holdout_hours": options.holdout / pd.Timedelta(hours=1),
              "seed": options.seed, "backend": options.backend, "n_jobs": options.n_jobs,
              "metrics": ",".join(result.metrics), "data_start": result.start.isoformat(),
              "data_end": result.end.isoformat(), "freq_seconds": dataset.freq.total_seconds()}
    metrics = {**result.evaluation, "points": result.points, "fit_seconds": result.fit_seconds,
               **{f"champion_{k}": v for k, v in result.champion_evaluation.items()},
               **{f"coverage_{m}": c for m, c in dataset.coverage.items()}}
    tags = {"cluster": result.cluster, "service": result.service, "model_name": result.name,
            "bundle_digest": result.digest, "decision": info["decision"]}
    report = {**info, "params": params, "digest": result.digest, "notes": result.notes}
    try:
        run = tracker.log_training(name=result.name, run_name=f"{result.name} {result.end:%Y-%m-%d %H:%M}",
                                   params=params, metrics=metrics, tags=tags, bundle_dir=bundle_dir,
                                   report=report, info={k: v for k, v in info.items() if k != "notes"},
                                   model=result.model)
    except Exception as exc:  # noqa: BLE001 - tracking must never cost the local bundle
        result.tracking = f"failed: {_first_line(exc)}"
        progress.note(f"{result.name}: MLflow tracking failed: {_first_line(exc)}")
        return None
    result.run_id = run.run_id
    result.mlflow_version = run.version.version if run.version else None
    result.tracking = f"run {run.run_id}" + (f", model version {result.mlflow_version}"
                                              if result.mlflow_version else "")
    return result.mlflow_version


def _apply(decision: str, store: LocalModelStore, name: str, version: int,
           tracker: MlflowTracker | None, mlflow_version: int | None, result: ServiceResult) -> None:
    """Point the aliases at the new version in every store that holds it."""
    stores: list[tuple[Any, int]] = [(store, version)]
    if tracker is not None and mlflow_version is not None:
        stores.append((tracker.store, mlflow_version))
        store.annotate(name, version, mlflow_version=mlflow_version, run_id=result.run_id)
    for target, number in stores:
        try:
            if decision == CHAMPION:
                # A new champion ends the standing challenge: whatever lost before is moot.
                target.set_alias(name, CHAMPION, number)
                target.delete_alias(name, CHALLENGER)
            else:
                target.set_alias(name, CHALLENGER, number)
        except Exception as exc:  # noqa: BLE001 - the local store decides; a registry hiccup is noted
            if target is store:
                raise
            result.notes.append(f"could not set the {decision} alias in MLflow: {_first_line(exc)}")
    if tracker is not None and result.run_id:
        with contextlib.suppress(Exception):
            tracker.set_tags(result.run_id, {"decision": decision})


def _settle_unchanged(result: ServiceResult, local: ModelVersion, champion: ModelVersion,
                      store: LocalModelStore, deploy_root: Path | None) -> None:
    """The new bundle is the champion already: make sure the local store agrees, change nothing else."""
    result.status = "unchanged"
    result.reason = f"identical to the champion (v{champion.version}): nothing to promote"
    result.version, result.bundle = local.version, Path(local.source)
    current = store.get(result.name, alias=CHAMPION)
    if current is None or current.version != local.version:
        store.set_alias(result.name, CHAMPION, local.version)
    if deploy_root is not None:
        deployed = deploy_root / result.name
        if not (deployed / "manifest.json").is_file() or bundle_digest(deployed) != result.digest:
            store.export(result.name, local.version, deployed)
        result.deployed = deployed


def summary_rows(results: list[ServiceResult]) -> list[list]:
    """The end-of-run table: one row per service."""
    rows = []
    for r in results:
        ours = r.evaluation.get("f1")
        theirs = r.champion_evaluation.get("f1")
        rows.append([r.name, r.status, f"v{r.version}" if r.version else "-",
                     _fmt(ours), _fmt(theirs), _fmt(r.evaluation.get("false_alarms_per_day")),
                     f"{r.points:,}", r.reason])
    return rows


SUMMARY_HEADERS = ["service", "status", "version", "F1", "champion F1", "false alarms/day", "points",
                   "why"]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.3f}"


def _iso(at: pd.Timestamp) -> str:
    at = pd.Timestamp(at)
    return (at.tz_localize("UTC") if at.tz is None else at.tz_convert("UTC")).isoformat(timespec="seconds")


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = str(text).strip()
    return text.splitlines()[0] if text else type(exc).__name__
