"""The score use case: metric points of one or many services in, explained anomalies out.

Each service is scored with its champion model bundle (``models.store.load_champion``: the local
store's champion, else the deployed bundle under the data dir), loaded once when the server
starts and kept in memory; a request never reads a bundle from disk.

A fitted :class:`~detection.zscore.RobustZDetector` (the per-metric baselines) is scored through
:class:`BaselineTable`: its hour-of-week centre and spread read once, through the baseline's
public ``expected``, into 168-slot arrays, so a point costs a table look-up instead of a pandas
round trip (about 5 ms per service per call otherwise, too slow for a scoring API; the tests
check that it finds exactly what ``detect`` finds). Any other detector (the ensemble) is scored
with its own ``detect``.
"""

from __future__ import annotations

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
from models.store import LocalModelStore, load_champion
from rca.payload import PayloadError

log = logging.getLogger("aiops.scoring")
HOURS_OF_WEEK = 168
# Monday 00:00 UTC: the reference week whose hours give every hour-of-week slot.
_REFERENCE_WEEK = pd.date_range("2024-01-01", periods=HOURS_OF_WEEK, freq="h", tz="UTC")


@dataclass(frozen=True)
class Series:
    """One metric of one service: timestamps (aware, strictly increasing) and finite values."""

    cluster: str
    service: str
    metric: str
    timestamps: Sequence[datetime]
    values: Sequence[float]

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
    _DIRECTIONS = ("up", "down", "both")

    def __init__(self, detector: RobustZDetector):
        detector._check_fitted()
        self.threshold = float(detector.threshold)
        self.specs = detector.specs
        self.metrics = list(detector.metrics_)
        self.row = {metric: i for i, metric in enumerate(self.metrics)}
        expected = [detector.baseline_.expected(m, _REFERENCE_WEEK) for m in self.metrics]
        self.centre = np.concatenate([np.asarray(e.centre, dtype=float) for e in expected])
        self.spread = np.concatenate([np.asarray(e.spread, dtype=float) for e in expected])
        self.direction = np.array([self._DIRECTIONS.index(spec_for(m, self.specs).direction)
                                   for m in self.metrics])

    def anomalies(self, series: list[Series]) -> list[Anomaly]:
        """All of a service's series in one vectorised pass; anomalies built for the hits only."""
        if not series:
            return []
        lengths = [len(one.values) for one in series]
        slots = np.concatenate(_slots_of(series))
        values = np.fromiter((v for one in series for v in one.values), dtype=float, count=len(slots))
        rows = np.repeat([self.row[one.metric] for one in series], lengths)
        cell = rows * HOURS_OF_WEEK + slots
        centre, spread = self.centre[cell], self.spread[cell]
        z = (values - centre) / spread
        direction = self.direction[rows]
        scores = np.where(direction == 0, np.maximum(z, 0.0),
                          np.where(direction == 1, np.maximum(-z, 0.0), np.abs(z)))
        hits = np.flatnonzero(scores > self.threshold)
        if len(hits) == 0:
            return []
        starts = np.cumsum([0, *lengths])
        found = []
        for i in hits:
            k = int(np.searchsorted(starts, i, side="right") - 1)
            one, band = series[k], self.threshold * spread[i]
            found.append(Anomaly.build(one.metric, pd.Timestamp(one.timestamps[i - starts[k]]), values[i],
                                       centre[i], centre[i] - band, centre[i] + band, scores[i],
                                       self.specs))
        return sorted(found, key=lambda a: (a.timestamp, a.metric))


def _slots_of(series: list[Series]) -> list[np.ndarray]:
    """Each series' hours of the week; series sharing their timestamps (a service's metrics
    usually do) compute them once."""
    seen: dict[tuple, np.ndarray] = {}
    out = []
    for one in series:
        key = tuple(one.timestamps)
        if key not in seen:
            seen[key] = hours_of_week(one.timestamps)
        out.append(seen[key])
    return out


class DetectorScorer:
    """Any fitted detector with ``detect(frame)`` and ``metrics_``: the series as one frame."""

    kind = "detector"

    def __init__(self, detector: Any):
        self.detector = detector
        self.metrics = list(detector.metrics_)
        self.kind = type(detector).__name__

    def anomalies(self, series: list[Series]) -> list[Anomaly]:
        columns = {s.metric: pd.Series(list(s.values), index=pd.DatetimeIndex(list(s.timestamps)),
                                       dtype=float) for s in series}
        frame = pd.DataFrame(columns).sort_index()
        return self.detector.detect(frame)


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
    seconds = np.fromiter((t.timestamp() for t in timestamps), dtype=float, count=len(timestamps))
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
        return all(isinstance(m.scorer, BaselineTable) for m in self.models.values())

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
    names = set(LocalModelStore(model_dir / "registry").names())
    if model_dir.is_dir():
        names |= {p.name for p in model_dir.iterdir()
                  if "--" in p.name and (p / "manifest.json").is_file()}
    return sorted(names)


def load_service_models(model_dir: Path, names: Iterable[str] | None = None) -> ServiceModels:
    """Load the champion of each service under ``model_dir`` (or of ``names``), once.

    A bundle that fails its checks is left out and its reason kept, so a request for that
    service says why instead of being scored by a model nobody vetted.
    """
    store = LocalModelStore(model_dir / "registry")
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


def check_series(series: Sequence[Series], known_metrics: Iterable[str], max_points: int) -> int:
    """Refuse what the schema cannot see: unknown metrics, a series twice, too many points.

    Returns the number of points. Raises PayloadError naming ``series[i].field``.
    """
    known = set(known_metrics)
    seen: dict[tuple[str, str, str], int] = {}
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
                                                      f"{len(one.timestamps)} timestamps")
        total += len(one.values)
    if total > max_points:
        raise PayloadError("series", f"{total:,} points in one request; at most {max_points:,}")
    return total


def score_series(series: Sequence[Series], models: ServiceModels, known_metrics: Iterable[str],
                 max_points: int) -> list[ServiceResult]:
    """Score every service's series with its champion; services in order of first appearance.

    Raises PayloadError (bad input, named) or NoModelError (a service without a model) before
    anything is scored.
    """
    check_series(series, known_metrics, max_points)
    groups: dict[tuple[str, str], list[tuple[int, Series]]] = {}
    for i, one in enumerate(series):
        groups.setdefault((one.cluster, one.service), []).append((i, one))
    plan = []
    for (cluster, service), members in groups.items():
        model = models.get(cluster, service, f"series[{members[0][0]}].service")
        for i, one in members:
            if one.metric not in model.scorer.metrics:
                raise PayloadError(f"series[{i}].metric", f"the model of {one.name} has no baseline "
                                   f"for {one.metric}; it scores {', '.join(model.scorer.metrics)}")
        plan.append((cluster, service, model, [one for _, one in members]))
    return [ServiceResult(cluster, service, model, sum(len(s.values) for s in members),
                          model.scorer.anomalies(members))
            for cluster, service, model, members in plan]
