"""The score use case: metric points of one or many services in, explained anomalies out.

Each service is scored with its champion model bundle (``models.store.load_champion``: the local
store's champion, else the deployed bundle under the data dir), loaded once when the server
starts and kept in memory; a request never reads a bundle from disk.

A fitted :class:`~detection.zscore.RobustZDetector` (the per-metric baselines) is scored through
:class:`BaselineTable`: its hour-of-week centre and spread read once, through the baseline's
public ``expected``, into 168-slot arrays, so a point costs a table look-up instead of a pandas
round trip (about 5 ms per service per call otherwise, too slow for a scoring API; the tests
check that it finds exactly what ``detect`` finds). The ensembles (``ServiceDetector``) of a
request are scored together by one :class:`~detection.fleet.FleetScorer` (their state stacked
once, at the first request), whose ``detect`` answers what each detector's own ``detect`` answers
(the tests compare them). Any other detector is scored with its own ``detect``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly
from detection.metrics import spec_for
from detection.zscore import RobustZDetector
from models.bundle import BundleError
from models.signing import Trust
from models.store import LocalModelStore, load_champion
from rca.payload import PayloadError
from service.timestamps import Timestamps, as_timestamps, seconds_of

log = logging.getLogger("aiops.scoring")
HOURS_OF_WEEK = 168
# Monday 00:00 UTC: the reference week whose hours give every hour-of-week slot.
_REFERENCE_WEEK = pd.date_range("2024-01-01", periods=HOURS_OF_WEEK, freq="h", tz="UTC")


@dataclass(frozen=True)
class Series:
    """One metric of one service: timestamps (aware, strictly increasing) and finite values.

    The timestamps are kept as ``Timestamps`` (their epoch seconds and index worked out once;
    the API's schema hands one object to every series that sends the same list)."""

    cluster: str
    service: str
    metric: str
    timestamps: Sequence[datetime]
    values: Sequence[float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamps", as_timestamps(self.timestamps))

    @property
    def name(self) -> str:
        return f"{self.cluster}/{self.service}"


class Scorer(Protocol):
    """What the use case needs of a loaded model: the anomalies among one service's series."""

    kind: str
    metrics: list[str]

    def anomalies(self, series: list[Series]) -> list[Anomaly]: ...


class BaselineTable:
    """A fitted RobustZDetector as one table of centre and spread per metric and hour of week.

    Scores and anomalies are those of ``detector.detect`` (same threshold, directions, band and
    rendering) for series on any timestamps.
    """

    kind = "baseline table"

    def __init__(self, detector: RobustZDetector):
        detector._check_fitted()
        self.specs = detector.specs
        self.metrics = list(detector.metrics_)
        self.row = {metric: i for i, metric in enumerate(self.metrics)}
        expected = [detector.baseline_.expected(m, _REFERENCE_WEEK) for m in self.metrics]
        self.centre = np.concatenate([np.asarray(e.centre, dtype=float) for e in expected])
        self.spread = np.concatenate([np.asarray(e.spread, dtype=float) for e in expected])
        self.direction = np.array([_DIRECTIONS.index(spec_for(m, self.specs).direction)
                                   for m in self.metrics])
        self.threshold = np.full(len(self.metrics), float(detector.threshold))

    def anomalies(self, series: list[Series]) -> list[Anomaly]:
        rows = [self.row[one.metric] for one in series]
        found = table_anomalies(self, rows, series, [self.specs] * len(rows),
                                [one.timestamps.seconds for one in series])
        return sorted((a for _, a in found), key=lambda a: (a.timestamp, a.metric))


_DIRECTIONS = ("up", "down", "both")


class Tables(Protocol):
    """Row-wise baselines: ``centre``/``spread`` hold HOURS_OF_WEEK slots per row."""

    centre: np.ndarray
    spread: np.ndarray
    direction: np.ndarray
    threshold: np.ndarray


def table_anomalies(tables: Tables, rows: Sequence[int], series: Sequence[Series],
                    specs: Sequence[Any], seconds: Sequence[np.ndarray]) -> list[tuple[int, Anomaly]]:
    """The anomalies of ``series[k]`` against table row ``rows[k]``, in one vectorised pass,
    each with its ``k``.

    ``seconds[k]`` are series k's timestamps as epoch seconds; ``specs[k]`` its model's specs.
    """
    if not series:
        return []
    lengths = [len(one.values) for one in series]
    epoch = np.concatenate(seconds)
    slots = (np.floor(epoch / 3600).astype(np.int64) + _EPOCH_HOUR_OF_WEEK) % HOURS_OF_WEEK
    values = np.fromiter((v for one in series for v in one.values), dtype=float, count=len(epoch))
    per_point = np.repeat(np.asarray(rows, dtype=np.intp), lengths)
    cell = per_point * HOURS_OF_WEEK + slots
    centre, spread = tables.centre[cell], tables.spread[cell]
    z = (values - centre) / spread
    direction = tables.direction[per_point]
    scores = np.where(direction == 0, np.maximum(z, 0.0),
                      np.where(direction == 1, np.maximum(-z, 0.0), np.abs(z)))
    threshold = tables.threshold[per_point]
    hits = np.flatnonzero(scores > threshold)
    if len(hits) == 0:
        return []
    starts = np.cumsum([0, *lengths])
    found = []
    for i in hits:
        k = int(np.searchsorted(starts, i, side="right") - 1)
        one, band = series[k], threshold[i] * spread[i]
        found.append((k, Anomaly.build(one.metric, pd.Timestamp(one.timestamps[i - starts[k]]), values[i],
                                       centre[i], centre[i] - band, centre[i] + band, scores[i], specs[k])))
    return found


@dataclass(frozen=True)
class StackedTables:
    """Every loaded BaselineTable in one set of arrays, so a request is scored in one pass."""

    offset: dict[str, int]
    centre: np.ndarray
    spread: np.ndarray
    direction: np.ndarray
    threshold: np.ndarray

    @classmethod
    def of(cls, models: dict[str, "LoadedModel"]) -> "StackedTables":
        offset, parts, start = {}, [], 0
        for name, model in models.items():
            if isinstance(model.scorer, BaselineTable):
                offset[name] = start
                parts.append(model.scorer)
                start += len(model.scorer.metrics)
        if not parts:
            empty = np.empty(0)
            return cls(offset, empty, empty, np.empty(0, dtype=int), empty)
        return cls(offset, *(np.concatenate([getattr(t, a) for t in parts])
                             for a in ("centre", "spread", "direction", "threshold")))


class DetectorScorer:
    """Any fitted detector with ``detect(frame)`` and ``metrics_``: the series as one frame."""

    kind = "detector"

    def __init__(self, detector: Any):
        self.detector = detector
        self.metrics = list(detector.metrics_)
        self.kind = type(detector).__name__

    def frame(self, series: list[Series], index: pd.DatetimeIndex | None = None) -> pd.DataFrame:
        """The service's series as one metric frame (a column per metric, sorted in time).

        ``index``: the series' one shared timestamps, already converted (a request's services
        usually share them: converting once per request, not per service, is a fifth of a
        20-service ensemble request's CPU).
        """
        first = series[0].timestamps
        if index is not None or all(s.timestamps == first for s in series[1:]):
            index = first.index if index is None else index
            frame = pd.DataFrame(np.array([list(s.values) for s in series], dtype=float).T,
                                 index=index, columns=[s.metric for s in series])
            return frame if index.is_monotonic_increasing else frame.sort_index()
        columns = {s.metric: pd.Series(list(s.values), index=s.timestamps.index, dtype=float)
                   for s in series}
        return pd.DataFrame(columns).sort_index()

    def window(self, series: list[Series], index: pd.DatetimeIndex | None = None) -> Any:
        """The service's series as a ``detection.fleet.Window`` (what the fleet scorer takes):
        the values as one array when the series share ``index``, else through ``frame``."""
        from detection.fleet import Window

        if index is None:
            return Window.of(self.frame(series))
        values = np.array([s.values for s in series], dtype=float).T
        return Window(index, [s.metric for s in series], values)

    def anomalies(self, series: list[Series]) -> list[Anomaly]:
        return self.detector.detect(self.frame(series))


def scorer_for(model: Any) -> Scorer:
    """The fastest exact scorer for a fitted model."""
    if type(model) is RobustZDetector:
        return BaselineTable(model)
    return DetectorScorer(model)


# 1970-01-01 was a Thursday: hour 0 of the epoch is hour 72 of its week (Monday 00:00 is hour 0).
_EPOCH_HOUR_OF_WEEK = 3 * 24


def hours_of_week(timestamps: Sequence[datetime]) -> np.ndarray:
    """Each aware timestamp's hour of the week in UTC (Monday 00:00-00:59 is 0), as the
    baselines bucket them."""
    seconds = seconds_of(timestamps)
    return ((np.floor(seconds / 3600).astype(np.int64) + _EPOCH_HOUR_OF_WEEK) % HOURS_OF_WEEK).astype(np.intp)


@dataclass(frozen=True)
class LoadedModel:
    """A service's champion, ready to score, and where it came from."""

    name: str               # CLUSTER--SERVICE
    scorer: Scorer
    source: str
    digest: str

    def to_dict(self) -> dict:
        return {"model": self.name, "scorer": self.scorer.kind, "metrics": self.scorer.metrics,
                "source": self.source, "digest": self.digest}


class NoModelError(LookupError):
    """A service with no champion model loaded; ``field`` names the request part at fault."""

    def __init__(self, field: str, service: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.service = service
        self.message = message


@dataclass
class ServiceModels:
    """The champion of every service found at start-up, and why any could not be loaded."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    where: str = ""

    @property
    def all_fast(self) -> bool:
        """Whether every loaded model scores by table look-up (no model's own ``detect``)."""
        return len(self.tables.offset) == len(self.models)

    @functools.cached_property
    def fleet(self) -> Any:
        """The loaded ensembles stacked for one-pass scoring (a ``FleetScorer``, made on first
        use; imported here: the ensemble brings statsmodels, which `aiops` need not load to start)."""
        from detection.ensemble import ServiceDetector
        from detection.fleet import FleetScorer

        return FleetScorer({name: m.scorer.detector for name, m in self.models.items()
                            if isinstance(m.scorer, DetectorScorer)
                            and isinstance(m.scorer.detector, ServiceDetector)})

    @functools.cached_property
    def tables(self) -> StackedTables:
        """The table models stacked (made on first use; the models do not change afterwards)."""
        return StackedTables.of(self.models)

    def warm(self) -> None:
        """Stack the models and their live state now (what the first request would otherwise
        wait for; ``python scripts/profile_score_request.py`` prints both), so a server starts
        ready."""
        _ = self.tables
        if self.fleet.groups:
            self.fleet.warm()

    def get(self, cluster: str, service: str, field_name: str) -> LoadedModel:
        name = f"{cluster}--{service}"
        if name in self.models:
            return self.models[name]
        why = self.problems.get(name)
        detail = (f"its model could not be loaded at start-up ({why})" if why else
                  f"no model for it was found at start-up in {self.where or 'the model store'}; "
                  "train one with `aiops train`, then restart the server")
        raise NoModelError(field_name, f"{cluster}/{service}", f"service {cluster}/{service}: {detail}")


def discover(model_dir: Path) -> list[str]:
    """Model names with a champion in the local store or a deployed bundle under ``model_dir``."""
    registry = model_dir / "registry"
    names = ({p.name for p in registry.iterdir() if (p / "registry.json").is_file()}
             if registry.is_dir() else set())
    if model_dir.is_dir():
        names |= {p.name for p in model_dir.iterdir()
                  if "--" in p.name and (p / "manifest.json").is_file()}
    return sorted(names)


def load_service_models(model_dir: Path, names: Iterable[str] | None = None, *,
                        trust: Trust) -> ServiceModels:
    """Load the champion of each service under ``model_dir`` (or of ``names``), once.

    A bundle that fails its checks (``trust``: its signature; its hashes, digest, versions) is
    left out and its reason kept, so a request for that service says why instead of being
    scored by a model nobody vetted.
    """
    store = LocalModelStore(model_dir / "registry", trust)
    found = ServiceModels(where=str(model_dir))
    for name in names if names is not None else discover(model_dir):
        try:
            bundle = load_champion(store, name, fallback_dir=model_dir / name)
            found.models[name] = LoadedModel(name, scorer_for(bundle.model), bundle.source, bundle.digest)
        except (BundleError, OSError, ValueError, AttributeError, RuntimeError) as exc:
            found.problems[name] = str(exc).splitlines()[0]
            log.warning("model %s not loaded: %s", name, found.problems[name])
    log.info("scoring models loaded: %s", ", ".join(found.models) or "none")
    return found


@dataclass(frozen=True)
class ServiceResult:
    cluster: str
    service: str
    model: LoadedModel
    points: int
    anomalies: list[Anomaly]

    def to_dict(self) -> dict:
        return {"cluster": self.cluster, "service": self.service, "model": self.model.name,
                "scorer": self.model.scorer.kind, "points": self.points,
                "anomalies": [a.to_dict() for a in self.anomalies]}


def check_series(series: Sequence[Series], known_metrics: Iterable[str],
                 max_points: int) -> list[Timestamps]:
    """Refuse what the schema does not: unknown metrics, a series twice, lengths that differ,
    timestamps out of order or repeated, too many points.

    Returns each series' timestamps (series at the same instants, as a service's metrics
    usually are, share one ``Timestamps``). Raises PayloadError naming ``series[i].field``.
    """
    known = set(known_metrics)
    seen: dict[tuple[str, str, str], int] = {}
    shared: dict[tuple, Timestamps] = {}
    out = []
    total = 0
    for i, one in enumerate(series):
        if one.metric not in known:
            raise PayloadError(f"series[{i}].metric", f"unknown metric {one.metric!r}; known: "
                                                      f"{', '.join(sorted(known))}")
        key = (one.cluster, one.service, one.metric)
        if key in seen:
            raise PayloadError(f"series[{i}]", f"{one.name} {one.metric} is already series "
                                               f"[{seen[key]}]; send each metric of a service once")
        seen[key] = i
        if len(one.timestamps) != len(one.values):
            raise PayloadError(f"series[{i}].values", f"{len(one.values)} values for "
                                                      f"{len(one.timestamps)} timestamps; one value "
                                                      "per timestamp")
        if not one.timestamps.increasing:
            _increasing(one.timestamps, i)
        out.append(shared.setdefault(one.timestamps.key, one.timestamps))
        total += len(one.values)
    if total > max_points:
        raise PayloadError("series", f"{total:,} points in one request; at most {max_points:,}")
    return out


def _increasing(stamps: Timestamps, i: int) -> None:
    """Name the first timestamp of series ``i`` that repeats or goes back."""
    steps = np.diff(stamps.seconds)
    if len(steps) and not (steps > 0).all():
        j = int(np.flatnonzero(steps <= 0)[0]) + 1
        what = (f"repeats timestamps[{j - 1}]; send each point once" if steps[j - 1] == 0 else
                f"is before timestamps[{j - 1}] {stamps[j - 1].isoformat()}; send points in time order")
        raise PayloadError(f"series[{i}].timestamps", f"timestamps[{j}] {stamps[j].isoformat()} {what}")


def _shared_index(members: list[int], stamps: list[Timestamps]) -> pd.DatetimeIndex | None:
    """The one index of these series when they share their timestamps (``check_series`` gives
    equal timestamps one object); else None."""
    first = stamps[members[0]]
    return first.index if all(stamps[i] is first for i in members[1:]) else None


def score_series(series: Sequence[Series], models: ServiceModels, known_metrics: Iterable[str],
                 max_points: int) -> list[ServiceResult]:
    """Score every service's series with its champion; services in order of first appearance.

    Raises PayloadError (bad input, named) or NoModelError (a service without a model) before
    anything is scored.
    """
    stamps = check_series(series, known_metrics, max_points)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, one in enumerate(series):
        groups.setdefault((one.cluster, one.service), []).append(i)
    plan = []
    for (cluster, service), members in groups.items():
        model = models.get(cluster, service, f"series[{members[0]}].service")
        for i in members:
            if series[i].metric not in model.scorer.metrics:
                raise PayloadError(f"series[{i}].metric", f"the model of {series[i].name} has no baseline "
                                   f"for {series[i].metric}; it scores {', '.join(model.scorer.metrics)}")
        plan.append((cluster, service, model, members))
    found: dict[tuple[str, str], list[Anomaly]] = {key: [] for key in groups}
    stacked = models.tables
    by_table = [i for _, _, model, members in plan if model.name in stacked.offset for i in members]
    if by_table:   # every table model's series in one vectorised pass
        rows, specs = [], []
        for i in by_table:
            scorer = models.models[f"{series[i].cluster}--{series[i].service}"].scorer
            rows.append(stacked.offset[f"{series[i].cluster}--{series[i].service}"]
                        + scorer.row[series[i].metric])
            specs.append(scorer.specs)
        picked = [series[i] for i in by_table]
        seconds = [stamps[i].seconds for i in by_table]
        for k, anomaly in table_anomalies(stacked, rows, picked, specs, seconds):
            found[(picked[k].cluster, picked[k].service)].append(anomaly)
    fleet = [(cluster, service, model, members) for cluster, service, model, members in plan
             if model.name not in stacked.offset and model.name in models.fleet.detectors]
    if fleet:   # every ensemble of the request in one pass
        windows = {model.name: model.scorer.window([series[i] for i in members],
                                                   _shared_index(members, stamps))
                   for _, _, model, members in fleet}
        detected = models.fleet.detect(windows)
        for cluster, service, model, _ in fleet:
            found[(cluster, service)] = detected[model.name]
    for cluster, service, model, members in plan:
        if model.name not in stacked.offset and model.name not in models.fleet.detectors:
            found[(cluster, service)] = model.scorer.anomalies([series[i] for i in members])
    return [ServiceResult(cluster, service, model, sum(len(series[i].values) for i in members),
                          sorted(found[(cluster, service)], key=lambda a: (a.timestamp, a.metric)))
            for cluster, service, model, members in plan]
