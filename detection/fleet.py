"""Score a whole fleet's tick in one vectorised pass over stacked state.

``ServiceDetector.score`` costs tens of milliseconds per service, almost all of it overhead
(pandas frames per member, a scikit-learn call that starts a thread pool, one calibrator call
per member): numbers of a 16-minute window are few. ``FleetScorer`` stacks the fitted state of
many services once (hour-of-week tables, STL curves on a shared grid, isolation forests as node
arrays, calibration quantiles) and scores every service's window in one pass of numpy over
arrays shaped (services, rows, metrics). It computes exactly what each detector's ``score``
computes, in the same floating-point operations where it matters (interpolations, medians,
the forest's walk), so the scores equal the per-service ones (``tests/unit/test_fleet_scorer.py``:
within 1e-9).

What it stacks: ``ServiceDetector`` with the members ``zscore``, ``seasonal`` (fitted on two
weeks or more, the weekly repeat), ``iforest`` and ``shift`` in any combination and weights,
either combiner, with or without recalibration; ``RobustZDetector`` (its table). Detectors that
share a layout (metrics, members, settings, the seasonal grid) form one group. The additive
``streaming`` member (on by default) is stacked too: the live states of every service's metrics
are rows of one ``detection.streaming_stack.StreamStack``, moved together by each 5-minute
bucket that closes (``detection.streaming.score_together``, equal to each member's own
``score``), and its calibrated score is added to the stacked final scores as the detector adds
it. Anything else (a cold-start seasonal member, a frame whose rows are not one regular
index shared by the group) is scored by the detector itself, so every detector gets its answer.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detection.anomaly import Anomaly
from detection.baseline import HOUR_NS, hour_of_week_ns
from detection.ensemble import ServiceDetector
from detection.forest import CompiledForest
from detection.metrics import spec_for
from detection.zscore import DIRECTION_CODES, RobustZDetector, by_directions


# ------------------------------------------------------------------------- numpy primitives
def _sliding(values: np.ndarray, before: int, length: int, keep: slice = slice(None)) -> np.ndarray:
    """Windows along axis 1: for row i (of the rows ``keep``) the rows
    ``i - before - length + 1 .. i - before`` (NaN where they fall before the frame).
    Shape (S, rows kept, M, length)."""
    s, r, m = values.shape
    pad = np.full((s, before + length - 1, m), np.nan)
    padded = np.concatenate([pad, values], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, length, axis=1)
    return windows[:, :r][:, keep]


def _nan_median(windows: np.ndarray) -> np.ndarray:
    """``np.nanmedian(windows, axis=-1)``; an all-NaN window gives NaN, as pandas does."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(windows, axis=-1)


def _nan_mean(windows: np.ndarray) -> np.ndarray:
    """``np.nanmean(windows, axis=-1)`` by numpy's own steps (NaN as 0 in a contiguous copy,
    summed, divided by the count), NaN for an all-NaN window without a warning to silence: a
    warnings filter is process-wide state, and this runs on every request."""
    present = ~np.isnan(windows)
    total = np.where(present, windows, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / present.sum(axis=-1, dtype=np.intp)


# ------------------------------------------------------------------------ stacked calibrators
@dataclass
class _Calibrators:
    """``TailCalibrator``s of many services stacked: one row per (service, column).

    ``services``: the stacked services this calibrator answers for, in order (a group's subset
    shares the whole group's tables and only names its rows: nothing is copied per request);
    None for all of them."""

    quantiles: np.ndarray   # (S*K, n) each column's quantiles
    references: np.ndarray  # (n,) the uniform references every column shares
    start: np.ndarray       # (S, K)
    scale: np.ndarray
    level: np.ndarray
    services: np.ndarray | None = None

    @classmethod
    def of(cls, calibrators: Sequence[Any]) -> "_Calibrators":
        qs = [c.quantiles_ for c in calibrators]
        n = {q.quantiles_.shape[0] for q in qs}
        if len(n) != 1:
            raise _Unstackable("calibrators with different numbers of quantiles")
        quantiles = np.concatenate([q.quantiles_.T for q in qs])
        references = qs[0].references_
        if any(not np.array_equal(q.references_, references) for q in qs):
            raise _Unstackable("calibrators with different references")
        return cls(np.ascontiguousarray(quantiles), np.ascontiguousarray(references),
                   np.stack([c.tail_start_ for c in calibrators]),
                   np.stack([c.tail_scale_ for c in calibrators]),
                   np.stack([c.tail_level_ for c in calibrators]))

    def of_services(self, index: np.ndarray) -> "_Calibrators":
        """The calibrators of some of these services (positions ``index``), sharing the tables."""
        out = copy.copy(self)
        out.services = index if self.services is None else self.services[index]
        out.start, out.scale, out.level = self.start[index], self.scale[index], self.level[index]
        return out

    def _calibrate(self, x: np.ndarray, surprise: bool) -> np.ndarray:
        from detection.kernels import calibrate

        s, _, k = x.shape
        rows = (np.arange(s * k).reshape(s, k) if self.services is None else
                self.services[:, None] * k + np.arange(k)[None, :])
        return calibrate(np.ascontiguousarray(x, dtype=float), self.quantiles, self.references, rows,
                         self.start, self.scale, self.level, surprise)

    def surprise(self, x: np.ndarray) -> np.ndarray:
        """``TailCalibrator.surprise`` for every service at once (x: (S, R, K))."""
        return self._calibrate(x, surprise=True)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``TailCalibrator.transform`` for every service at once."""
        return self._calibrate(x, surprise=False)


class _Unstackable(ValueError):
    """A detector this scorer cannot stack; the detector scores itself instead."""


# --------------------------------------------------------------------------------- one group
@dataclass
class _Group:
    """Services that share one layout, with their state stacked (see ``_Group.of``)."""

    names: list[str]
    metrics: list[str]
    members: tuple[str, ...]
    tables: dict[str, np.ndarray]
    direction: np.ndarray
    parts: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def key(detector: Any) -> tuple:
        if isinstance(detector, RobustZDetector):
            legacy = ("hour_of_day", "global")
            if not hasattr(detector, "baseline_") or detector.baseline_.resolution_ in legacy:
                raise _Unstackable("not a fitted hour-of-week baseline")
            return ("robust_z", tuple(detector.metrics_))
        if not isinstance(detector, ServiceDetector) or not hasattr(detector, "calibrators_"):
            raise _Unstackable("not a fitted ServiceDetector")
        if not hasattr(detector.baseline_, "tolerance_"):
            raise _Unstackable("a baseline from before day types")
        members = tuple(detector.members_)
        config = detector.config_
        added = tuple(detector._additive(members))
        if not set(members) <= {"zscore", "seasonal", "iforest", "shift", *added} \
                or not set(added) <= {"streaming"}:
            raise _Unstackable(f"members {members}")
        out: list = ["ensemble", tuple(detector.metrics_), members, config.combiner,
                     tuple(sorted((n, config.weight(n)) for n in members)), detector.final_ is not None]
        if "seasonal" in members:
            seasonal = detector.members_["seasonal"]
            if seasonal._by_day_type() or any(len(seasonal.spread_[m]) != 24 for m in seasonal.metrics_):
                raise _Unstackable("cold-start seasonal model")
            out += [seasonal.centres_[0], seasonal.centres_.size, seasonal.step_, seasonal.repeat_,
                    seasonal.max_cycles, tuple(seasonal.metrics_)]
        if "shift" in members:
            shift = detector.members_["shift"]
            out += [shift.recent_, shift.reference_, tuple(shift.metrics_)]
        if "iforest" in members:
            forest = detector.members_["iforest"]
            out += [forest.change_window, tuple(forest.feature_names_), tuple(forest.metrics_)]
        return tuple(out)

    @classmethod
    def of(cls, names: list[str], detectors: list[Any]) -> "_Group":
        first = detectors[0]
        metrics = list(first.metrics_)
        direction = np.array([[DIRECTION_CODES[spec_for(m, d.specs).direction] for m in metrics]
                              for d in detectors])
        baselines = [d.baseline_ for d in detectors]
        tables = {name: np.stack([[getattr(b, f"{name}_")[m].to_numpy(dtype=float) for m in metrics]
                                  for b in baselines]) for name in ("centre", "spread", "tolerance")}
        if isinstance(first, RobustZDetector):
            group = cls(names, metrics, ("robust_z",), tables, direction)
            group.parts["threshold"] = np.array([d.threshold for d in detectors], dtype=float)
            return group
        members = tuple(first.members_)
        group = cls(names, metrics, members, tables, direction)
        parts = group.parts
        parts["calibrators"] = {n: _Calibrators.of([d.calibrators_[n] for d in detectors]) for n in members}
        parts["final"] = _Calibrators.of([d.final_ for d in detectors]) if first.final_ is not None else None
        parts["weights"] = np.array([first.config_.weight(n) for n in members])
        parts["combiner"] = first.config_.combiner
        parts["threshold"] = np.array([d.threshold_ for d in detectors])
        if "streaming" in members:  # additive (see key): each service's own live member
            streaming = np.empty(len(detectors), dtype=object)
            streaming[:] = [d.members_["streaming"] for d in detectors]
            top = max(first.config_.weight(n) for n in members)
            parts["streaming"] = {"members": streaming, "ratio": first.config_.weight("streaming") / top}
        if "seasonal" in members:
            seasonal = [d.members_["seasonal"] for d in detectors]
            parts["seasonal"] = {
                "model": seasonal[0],
                "curves": np.stack([[s.fitted_[m] for m in metrics] for s in seasonal]),
                "spread": np.stack([[s.spread_[m] for m in metrics] for s in seasonal]),
                "relative_floor": np.array([s.relative_floor for s in seasonal], dtype=float),
                "min_spread": np.array([[spec_for(m, s.specs).min_spread for m in metrics]
                                        for s in seasonal], dtype=float),
                "count": np.array([[spec_for(m, s.specs).count for m in metrics] for s in seasonal],
                                  dtype=bool),
            }
            if any(not np.array_equal(s.centres_, seasonal[0].centres_) for s in seasonal):
                raise _Unstackable("seasonal grids differ")
        if "shift" in members:
            shift = [d.members_["shift"] for d in detectors]
            parts["shift"] = {"model": shift[0],
                              "scale": np.array([[s.scale_[m] for m in metrics] for s in shift])}
        if "iforest" in members:
            forests = [d.members_["iforest"] for d in detectors]
            compiled = [f.forest_ if isinstance(f.forest_, CompiledForest)
                        else CompiledForest.from_sklearn(f.forest_) for f in forests]
            names_f = forests[0].feature_names_
            parts["iforest"] = {
                "model": forests[0], "forests": StackedForests(compiled),
                "centre": np.stack([f.feature_centre_[names_f].to_numpy(dtype=float) for f in forests]),
                "scale": np.stack([f.feature_scale_[names_f].to_numpy(dtype=float) for f in forests]),
            }
        return group

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Each service's row in the stacked state."""
        return {name: k for k, name in enumerate(self.names)}

    # ------------------------------------------------------------------------------ scoring
    def score(self, values: np.ndarray, index: pd.DatetimeIndex, newest: int | None = None,
              members: dict[str, np.ndarray] | None = None,
              expected: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Final scores (S, n, M) of the newest ``n`` rows (all rows when None) of the stacked
        values (S, R, M) at ``index``; the older rows are the context the level shift and the
        forest's change feature look back on, as in the detector's own ``score``."""
        # the members read the index as UTC epoch nanoseconds (what an aware index holds, in any
        # zone), not through pandas per call
        ns = index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8
        newest = min(newest, len(index)) if newest else None
        slots = hour_of_week_ns(ns)
        centre = self.tables["centre"][:, :, slots].transpose(0, 2, 1)
        spread = self.tables["spread"][:, :, slots].transpose(0, 2, 1)
        tolerance = self.tables["tolerance"][:, :, slots].transpose(0, 2, 1)
        direction = self.direction[:, None, :]
        keep = slice(len(index) - newest if newest else 0, len(index))
        if self.members == ("robust_z",):
            if expected is not None:
                expected.update(centre=centre[:, keep], spread=spread[:, keep],
                                tolerance=tolerance[:, keep])
            return by_directions((values - centre) / spread, direction)[:, keep]
        streaming = self._streaming(values, index, keep) if "streaming" in self.members else None
        resid = values - centre
        tolerant = np.sign(resid) * np.maximum(np.abs(resid) - tolerance, 0.0) / spread
        raw = {"zscore": by_directions(tolerant, direction)[:, keep]}
        culprit = None
        if "shift" in self.members:
            raw["shift"] = self._shift(values, centre, ns, direction, keep)
        if "iforest" in self.members:
            raw["iforest"], culprit = self._iforest(values, centre, tolerant, ns, keep)
        values = values[:, keep]
        if expected is not None:   # the baseline's centre, spread, tolerance: detect()'s band
            expected.update(centre=centre[:, keep], spread=spread[:, keep],
                            tolerance=tolerance[:, keep])
        if "seasonal" in self.members:
            raw["seasonal"] = self._seasonal(values, ns[keep])
        surprises = {}
        for name in self.members:
            if name == "streaming":  # added after the combination (see _streaming)
                continue
            s = self.parts["calibrators"][name].surprise(raw[name])
            if name == "iforest":
                table = np.full(values.shape, np.nan)
                hit = culprit >= 0
                sv, rv = np.nonzero(hit)
                table[sv, rv, culprit[hit]] = s[hit][:, 0] if s[hit].ndim == 2 else s[hit]
                s = table
            surprises[name] = s
        if members is not None:   # each member's calibrated score, as detect() reports them
            for name in ("zscore", "seasonal", "shift", "iforest"):
                if name in surprises:
                    members[name] = -np.expm1(-surprises[name])
            if streaming is not None:
                members["streaming"] = -np.expm1(-streaming)
        combined = self._combine(surprises, values)
        final = self.parts["final"]
        out = final.transform(combined) if final is not None else -np.expm1(-combined)
        if streaming is not None:  # the additive member, as ServiceDetector._add
            missing = np.isnan(out)
            out = np.fmax(out, -np.expm1(-streaming * self.parts["streaming"]["ratio"]))
            out[missing] = np.nan
        return out

    def _streaming(self, values: np.ndarray, index: pd.DatetimeIndex, keep: slice) -> np.ndarray:
        """The additive streaming member's calibrated surprise (S, n, M): each service's member
        judges the whole window (moving its live state on by the new rows, as the detector's
        own ``score`` does), the newest rows are kept."""
        from detection.streaming import score_together

        raw = score_together(self.parts["streaming"]["members"], self.metrics, values, index)[:, keep]
        return self.parts["calibrators"]["streaming"].surprise(raw)

    def _combine(self, surprises: dict[str, np.ndarray], values: np.ndarray) -> np.ndarray:
        # the order ServiceDetector combines in (its sums are then the same sums)
        names = [n for n in ("zscore", "seasonal", "shift", "iforest")
                 if n in self.members and self.parts["weights"][self.members.index(n)] > 0]
        w = np.array([self.parts["weights"][self.members.index(n)] for n in names])[:, None, None, None]
        stack = np.stack([surprises[n] for n in names])
        with np.errstate(invalid="ignore"):
            if self.parts["combiner"] == "max":
                scaled = np.where(np.isnan(stack), -np.inf, stack * w / w.max())
                combined = scaled.max(axis=0)
                combined[np.isneginf(combined)] = np.nan
            else:
                spoke = ~np.isnan(stack)
                total = np.where(spoke, stack * w, 0.0).sum(axis=0)
                combined = total / np.where(spoke, w, 0.0).sum(axis=0)
        combined[np.isnan(values)] = np.nan
        return combined

    def _seasonal(self, values: np.ndarray, ns: np.ndarray) -> np.ndarray:
        """``SeasonalResidualDetector.score`` (weekly repeat) for every service at once, at
        the UTC epoch nanoseconds ``ns``."""
        from detection.kernels import seasonal_centres, seasonal_deviation

        part = self.parts["seasonal"]
        model = part["model"]
        t = ns / 1e9
        centres, curves = model.centres_, part["curves"]           # (G,), (S, M, G)
        slack, repeat = model.step_.total_seconds(), model.repeat_.total_seconds()
        lo = np.ceil((t - centres[-1] - slack) / repeat)
        hi = np.floor((t - centres[0] + slack) / repeat)
        base = np.where(lo >= 1, lo - 1, np.where(hi <= -1, hi + 1, 0))
        reach = int(min(model.max_cycles, max(0.0, np.max(np.maximum(hi - base, base - lo)))))
        order = np.array([k for r in range(1, reach + 1) for k in (r, -r)], dtype=float)
        k = base[:, None] + order[None, :]
        valid = (k >= lo[:, None]) & (k <= hi[:, None]) & (k != 0)
        at = t[:, None] - k * repeat                                 # (R, K)
        use = valid & (np.cumsum(valid, axis=1) <= model.max_cycles)
        s, m, g = curves.shape
        flat = np.ascontiguousarray(curves.reshape(s * m, g), dtype=float)
        # the mean of the used cycles' curve values, or the curve at t (one compiled loop; the
        # grid is shared, so each position's place in it is found once)
        centre = seasonal_centres(np.ascontiguousarray(t, dtype=float), np.ascontiguousarray(at, dtype=float),
                                  np.ascontiguousarray(use), np.ascontiguousarray(centres, dtype=float), flat)
        # the spread of the UTC hour, floored; the residual in spreads, the bad way (one loop)
        return seasonal_deviation(centre, np.ascontiguousarray(values, dtype=float), part["spread"],
                                  ns // HOUR_NS % 24, part["min_spread"], part["count"],
                                  part["relative_floor"], self.direction)

    def _rows(self, duration: Any, step: int) -> int:
        """How many rows of ``step`` ns a duration (a timedelta) spans."""
        rows = pd.Timedelta(duration).value / step
        if rows != int(rows):
            raise _Unstackable("a window that is not whole rows")
        return int(rows)

    def _shift(self, values: np.ndarray, centre: np.ndarray, ns: np.ndarray,
               direction: np.ndarray, keep: slice) -> np.ndarray:
        """``LevelShiftDetector.score`` of the rows ``keep`` on a regular index (epoch
        nanoseconds ``ns``), for every service at once."""
        model = self.parts["shift"]["model"]
        step = int(ns[1] - ns[0])
        recent, reference = self._rows(model.recent_, step), self._rows(model.reference_, step)
        offsets = ns[keep] - ns[0]
        covered = (offsets >= pd.Timedelta(model.recent_ + model.reference_ / 2).value)[None, :, None]
        if not covered.any():   # a window too short to judge a shift in (a request's few minutes)
            return np.full(values[:, keep].shape, np.nan)
        deviation = values - centre
        now = _nan_median(_sliding(deviation, 0, recent, keep))
        before = _nan_median(_sliding(deviation, recent, reference, keep))
        now, before = np.where(covered, now, np.nan), np.where(covered, before, np.nan)
        with np.errstate(invalid="ignore"):
            up = np.where(now > 0, np.maximum(now - np.maximum(before, 0.0), 0.0), 0.0)
            down = np.where(now < 0, np.minimum(now - np.minimum(before, 0.0), 0.0), 0.0)
            shift = np.where(np.isnan(now) | np.isnan(before), np.nan, up + down)
        scores = by_directions(shift / self.parts["shift"]["scale"][:, None, :], direction)
        return np.where(np.isnan(values[:, keep]), np.nan, scores)

    def _iforest(self, values: np.ndarray, centre: np.ndarray, tolerant_z: np.ndarray,
                 ns: np.ndarray, keep: slice) -> tuple[np.ndarray, np.ndarray]:
        """The forest's raw score per row and its culprit metric (-1 for none), for every
        service at once (``IsolationForestDetector``'s features, score and attribution)."""
        from detection.kernels import forest_features

        part = self.parts["iforest"]
        model = part["model"]
        window = self._rows(model.change_window, int(ns[1] - ns[0]))
        past = _nan_mean(_sliding(values, 1, window, keep))
        values, centre, tolerant_z = values[:, keep], centre[:, keep], tolerant_z[:, keep]
        features, culprit = forest_features(*(np.ascontiguousarray(a, dtype=float)
                                              for a in (values, centre, tolerant_z, past)),
                                            part["centre"], part["scale"], self.direction)
        raw = -part["forests"].score_samples(features)
        present = ~np.isnan(values).all(axis=2)
        return np.where(present, raw, np.nan)[:, :, None], culprit


class StackedForests:
    """Compiled isolation forests of many services walked together: rows of service ``s`` go
    through service ``s``'s trees only.

    Stored compactly, about 12 bytes a node rather than 15 (2,000 services x 100 trees of up
    to 511 nodes: 1.2 GB rather than 1.5), since a request's walk is paced by how much of the
    trees it must fetch from memory: trees in pre-order (a split's left child is the next node, so only the
    right one is stored), the split feature in one byte, the threshold as the largest float32
    not above it (the features are float32, so every comparison comes out as with the float64
    threshold), and a leaf's path length, a float64, in a table of the tree's leaves that the
    leaf's ``right`` points into."""

    def __init__(self, forests: Sequence[CompiledForest]):
        trees = {f.left.shape[0] for f in forests}
        features = {f.n_features_in_ for f in forests}
        if len(trees) != 1 or len(features) != 1:
            raise _Unstackable("forests of different sizes")
        parts = [_compact(f) for f in forests]
        nodes = max(p["feature"].shape[1] for p in parts)
        leaves = max(p["leaves"].shape[1] for p in parts)
        index = np.int16 if max(nodes, leaves) < np.iinfo(np.int16).max else np.int32
        feature = np.int8 if max(features) < np.iinfo(np.int8).max else np.int16

        def pad(name, size, fill, dtype) -> np.ndarray:
            return np.stack([np.pad(p[name], ((0, 0), (0, size - p[name].shape[1])), constant_values=fill)
                             .astype(dtype, copy=False) for p in parts])

        self.feature = pad("feature", nodes, -1, feature)   # -1: a leaf
        self.right = pad("right", nodes, 0, index)          # at a leaf: its place in ``leaves``
        self.threshold = pad("threshold", nodes, 0.0, np.float32)
        self.missing_left = pad("missing_left", nodes, False, bool)
        self.leaves = pad("leaves", leaves, 0.0, np.float64)
        self.denominator = np.array([f.denominator for f in forests])
        self.services = np.arange(len(forests))   # the services scored, by position in the arrays

    def of_services(self, index: np.ndarray) -> "StackedForests":
        """The forests of some of these services (positions ``index``), sharing the node arrays."""
        out = copy.copy(self)
        out.services = self.services[index]
        return out

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """(S, R) scores of rows X (S, R, F): scikit-learn's ``score_samples`` per service."""
        from detection.kernels import forest_depths

        X = np.ascontiguousarray(X, dtype=np.float32)
        depths = forest_depths(self.feature, self.right, self.threshold, self.missing_left, self.leaves,
                               self.services, X)   # (S, R): the leaves' path lengths, summed
        denominator = self.denominator[self.services][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator == 0, -1.0, -(2.0 ** (-depths / denominator)))


def _compact(forest: CompiledForest) -> dict[str, np.ndarray]:
    """One forest's arrays as ``StackedForests`` keeps them (trees x nodes, and trees x leaves)."""
    left, right, feature = forest.left, forest.right, forest.feature
    threshold, missing, depth = forest.threshold, forest.missing_left, forest.leaf_depth
    n_trees, n_nodes = left.shape
    split = left >= 0
    if not (left[split] == np.nonzero(split)[1] + 1).all():   # scikit-learn builds pre-order
        order = _preorder(left, right)
        rank = np.argsort(order, axis=1)   # old node -> new node
        rows = np.arange(n_trees)[:, None]
        left, right = (np.where(a[rows, order] >= 0, rank[rows, np.maximum(a[rows, order], 0)], -1)
                       for a in (left, right))
        feature, threshold, missing, depth = (a[rows, order] for a in (feature, threshold, missing, depth))
        split = left >= 0
    reached = np.zeros((n_trees, n_nodes), dtype=bool)
    reached[:, 0] = True
    t = np.nonzero(split)[0]
    reached[t, left[split]] = reached[t, right[split]] = True
    leaf = reached & ~split
    place = np.cumsum(leaf, axis=1) - 1
    leaves = np.zeros((n_trees, max(int(leaf.sum(axis=1).max()), 1)))
    t_leaf, n_leaf = np.nonzero(leaf)
    leaves[t_leaf, place[leaf]] = depth[t_leaf, n_leaf]
    down = threshold.astype(np.float32)
    above = down.astype(np.float64) > threshold
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return {"feature": np.where(split, feature, -1), "threshold": np.where(split, down, np.float32(0.0)),
            "right": np.where(split, right, np.where(leaf, place, 0)), "missing_left": missing & split,
            "leaves": leaves}


def _preorder(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per tree, its nodes in pre-order (each split followed by its left subtree), then the
    nodes no split reaches."""
    n_trees, n_nodes = left.shape
    order = np.empty((n_trees, n_nodes), dtype=np.int64)
    for t in range(n_trees):
        seen, stack = [], [0]
        while stack:
            node = stack.pop()
            seen.append(node)
            if left[t, node] >= 0:
                stack += [int(right[t, node]), int(left[t, node])]
        rest = sorted(set(range(n_nodes)) - set(seen))
        order[t] = seen + rest
    return order


# ------------------------------------------------------------------------------- the scorer
@dataclass(frozen=True)
class Window:
    """One service's rows as arrays: what a metric frame holds (a time index, the metric of
    each column, values rows x metrics), without building one. A request's services share
    one index; making a frame for each costs more than scoring its numbers."""

    index: pd.DatetimeIndex
    columns: list[str]
    values: np.ndarray

    @classmethod
    def of(cls, frame: "pd.DataFrame | Window") -> "Window":
        if isinstance(frame, Window):
            return frame
        return cls(frame.index, list(frame.columns), frame.to_numpy(dtype=float))

    def frame(self) -> pd.DataFrame:
        """The window as the frame a detector's own ``score``/``detect`` takes."""
        return pd.DataFrame(self.values, index=self.index, columns=self.columns)


class FleetScorer:
    """Every service's detector, stacked by layout; ``score`` answers for all of them at once.

    Parameters
    ----------
    detectors : service name -> fitted detector (``ServiceDetector`` or ``RobustZDetector``).
    """

    def __init__(self, detectors: Mapping[str, Any]):
        self.detectors = dict(detectors)
        by_key: dict[tuple, list[str]] = {}
        self.alone: dict[str, str] = {}
        for name, detector in self.detectors.items():
            try:
                by_key.setdefault(_Group.key(detector), []).append(name)
            except _Unstackable as exc:
                self.alone[name] = str(exc)
        self.groups: list[_Group] = []
        for names in by_key.values():
            try:
                self.groups.append(_Group.of(names, [self.detectors[n] for n in names]))
            except _Unstackable as exc:
                self.alone.update({n: str(exc) for n in names})

    def warm(self) -> None:
        """Make now what the first window would: the streaming members' stacked states and the
        compiled kernels (loaded from numba's cache, or compiled once)."""
        from detection import kernels
        from detection.streaming import stack_together

        kernels.warm()
        for group in self.groups:
            if "streaming" in group.members:
                stack_together(group.parts["streaming"]["members"], group.metrics)

    def score(self, frames: Mapping[str, "pd.DataFrame | Window"],
              newest: int | None = None) -> dict[str, pd.DataFrame]:
        """Final scores per service, as each detector's ``score(frame)`` gives them (the newest
        ``newest`` rows of each frame only, when given).

        The services of a group whose frames share one regular index are scored in one pass;
        any other frame is scored by its own detector.
        """
        windows = {name: Window.of(frame) for name, frame in frames.items()}
        out: dict[str, pd.DataFrame] = {}
        for block in self.score_stacked(windows, newest):
            for i, name in enumerate(block.names):
                table = pd.DataFrame(block.scores[i], index=block.index, columns=block.metrics)
                out[name] = table[windows[name].columns]
        for name, window in windows.items():
            if name not in out:
                scores = self.detectors[name].score(window.frame())
                out[name] = scores.iloc[len(scores) - newest:] if newest else scores
        return out

    def score_stacked(self, frames: Mapping[str, "pd.DataFrame | Window"],
                      newest: int | None = None) -> list["StackedScores"]:
        """The stacked services' scores as arrays, one block per group (no per-service frame
        is built: what a fleet-wide tick reads its anomalies from). Services left out (see
        ``score``) are in no block."""
        frames = {name: Window.of(frame) for name, frame in frames.items()}
        blocks = []
        for group in self.groups:
            for names, index, values, sub in self._blocks(group, frames):
                try:
                    scores = sub.score(values, index, newest)
                except _Unstackable:
                    continue
                shown = index[len(index) - min(newest, len(index)):] if newest else index
                blocks.append(StackedScores(names, shown, group.metrics, scores))
        return blocks


    def detect(self, frames: Mapping[str, "pd.DataFrame | Window"],
               newest: int | None = None) -> dict[str, list[Anomaly]]:
        """Every service's anomalies, as its detector's ``detect(frame)`` gives them (those of
        the newest ``newest`` rows only, when given): the stacked services from one pass, the
        others from their own ``detect``."""
        frames = {name: Window.of(frame) for name, frame in frames.items()}
        out: dict[str, list[Anomaly]] = {}
        for group in self.groups:
            for names, index, values, sub in self._blocks(group, frames):
                said: dict[str, np.ndarray] = {}
                band: dict[str, np.ndarray] = {}
                try:
                    scores = sub.score(values, index, newest, members=said, expected=band)
                except _Unstackable:
                    continue   # these services are detected by their own detectors below
                centre, spread, tolerance = band["centre"], band["spread"], band["tolerance"]
                shown = index[len(index) - min(newest, len(index)):] if newest else index
                kept = values[:, len(index) - len(shown):]
                robust = sub.members == ("robust_z",)
                threshold = sub.parts["threshold"]
                out.update((name, []) for name in names)
                with np.errstate(invalid="ignore"):   # one search over every service's scores
                    hot_points = np.argwhere(scores > threshold[:, None, None])
                for i in np.unique(hot_points[:, 0]).tolist():
                    name, found = names[i], []
                    hot = hot_points[hot_points[:, 0] == i, 1:].tolist()
                    detector = self.detectors[name]
                    columns = set(frames[name].columns)
                    for r, m in hot:
                        metric = group.metrics[m]
                        if metric not in columns:
                            continue
                        c = centre[i, r, m]
                        if robust:
                            half = threshold[i] * spread[i, r, m]
                            extra = {}
                        else:
                            half = tolerance[i, r, m] + float(detector.band_z_[metric]) * spread[i, r, m]
                            extra = {"members": {n: float(v[i, r, m]) for n, v in said.items()
                                                 if not np.isnan(v[i, r, m])}}
                        found.append(Anomaly.build(metric, shown[r], kept[i, r, m], c, c - half, c + half,
                                                   scores[i, r, m], detector.specs, **extra))
                    out[name] = sorted(found, key=lambda a: (a.timestamp, a.metric))
        for name, window in frames.items():
            if name not in out:
                found = self.detectors[name].detect(window.frame())
                if newest:
                    rows = len(window.index)
                    first = window.index[rows - newest] if rows >= newest else window.index[0]
                    found = [a for a in found if a.timestamp >= first]
                out[name] = found
        return out

    def _blocks(self, group: _Group, frames: Mapping[str, Window]):
        """(names, index, stacked values, the group restricted to them) for the windows of the
        group's services that share one regular index."""
        chosen = [n for n in group.names if n in frames]
        if not chosen:
            return
        index = frames[chosen[0]].index
        if not (isinstance(index, pd.DatetimeIndex) and len(index) >= 2 and index.tz is not None
                and (np.diff(index.asi8) == index.asi8[1] - index.asi8[0]).all()):
            return
        position = {m: k for k, m in enumerate(group.metrics)}
        stacked, rows = [], []
        for name in chosen:
            window = frames[name]
            if window.index is not index and not window.index.equals(index):
                continue
            if window.columns == group.metrics:
                rows.append(window.values)
            elif set(window.columns) <= set(group.metrics):
                values = np.full((len(index), len(group.metrics)), np.nan)
                values[:, [position[m] for m in window.columns]] = window.values
                rows.append(values)
            else:
                continue
            stacked.append(name)
        if stacked:
            where = group.position
            yield stacked, index, np.stack(rows), _subset(group, [where[n] for n in stacked])


@dataclass(frozen=True)
class StackedScores:
    """Scores of many services at once: ``scores[i]`` is service ``names[i]``'s (rows x metrics)."""

    names: list[str]
    index: pd.DatetimeIndex
    metrics: list[str]
    scores: np.ndarray


def _subset(group: _Group, rows: list[int]) -> _Group:
    """The group restricted to some of its services (all of them: the group itself)."""
    if rows == list(range(len(group.names))):
        return group
    index = np.asarray(rows)

    def take(value):
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == len(group.names):
            return value[index]
        if isinstance(value, dict):
            return {k: take(v) for k, v in value.items()}
        if isinstance(value, _Calibrators):
            return value.of_services(index)
        if isinstance(value, StackedForests):
            return value.of_services(index)
        return value

    return _Group([group.names[i] for i in rows], group.metrics, group.members,
                  {k: v[index] for k, v in group.tables.items()}, group.direction[index],
                  {k: take(v) for k, v in group.parts.items()})
