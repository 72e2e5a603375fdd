"""The Numenta Anomaly Benchmark (NAB): corpus loading and NAB's scoring rules, in pandas/numpy.

This reimplements the scorer of NAB (github.com/numenta/NAB, ``nab/sweeper.py``,
``nab/optimizer.py``, ``nab/scorer.py``, ``Runner.normalize`` in ``nab/runner.py``) so that
our detectors and the published peers are scored by exactly the same rules:

- The first ``min(floor(0.15 * N), 750)`` rows of a file are a probationary period: they are
  neither detections nor misses, and a window whose rows all fall inside it is not scored.
- Each labelled window counts once. Its first detection scores ``tpWeight * S(p) / S(-1)``
  where ``S(x) = 2 / (1 + exp(5x)) - 1`` (the scaled sigmoid) and
  ``p = -(right - i + 1) / width`` is how early row ``i`` came (-1 at the left edge, near 0
  at the right edge); later detections in the same window add nothing. A window with no
  detection costs ``-fnWeight``.
- A detection outside every window costs ``fpWeight * S(d)`` where ``d`` is its distance past
  the end of the preceding window in window widths (``S`` is -1 beyond 3 widths), or the full
  ``-fpWeight`` when no window precedes it in the file.
- A row is a detection when its anomaly score is at least the threshold. One threshold per
  detector and profile is chosen to maximise the raw score summed over the whole corpus:
  sort every scorable row by anomaly score, sweep the threshold down through each distinct
  score and keep the best (ties go to the higher threshold, as in NAB).
- The raw score is normalised to ``100 * (raw - null) / (perfect - null)``, where ``null`` is
  the optimised score of NAB's null detector (a constant 0.5 everywhere) and ``perfect`` is
  ``tpWeight`` times the number of labelled windows.

Only this module knows the corpus layout (``data/``, ``labels/``, ``profiles.json``,
``results/<detector>/<folder>/<detector>_<file>.csv``); it does no other I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

NAB_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PEERS: tuple[str, ...] = ("numenta", "contextOSE", "ARTime", "randomCutForest", "windowedGaussian")
"""The five detectors whose published NAB results ship with the development corpus."""

PROFILES: tuple[str, ...] = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
"""NAB's three cost profiles, in the order NAB's scoreboard shows them."""

PROFILE_LABELS: dict[str, str] = {"standard": "Standard", "reward_low_FP_rate": "Low FP",
                                  "reward_low_FN_rate": "Low FN"}

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # NAB: probationPercent * 5000
NULL_SCORE = 0.5  # NAB's null detector answers 0.5 for every row
_NOTHING_DETECTED = 1.1  # NAB's starting threshold: above every score, so nothing is detected


class NabError(ValueError):
    """The corpus or a detector's scores cannot be scored; the message says what is wrong."""


@dataclass(frozen=True)
class CostMatrix:
    """The weights of one NAB profile."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


DEFAULT_PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostMatrix(1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostMatrix(1.0, 0.11, 2.0),
}
"""NAB's profiles.json, for corpora built in code (tests); ``load_corpus`` reads the file."""


@dataclass(frozen=True)
class NabCorpus:
    """A NAB corpus: its files, their timestamps, labelled windows and cost profiles.

    Attributes
    ----------
    root : the corpus folder (None for a corpus built in code).
    files : file names as NAB spells them, ``"folder/file.csv"``, sorted.
    timestamps : each file's timestamps, row for row (duplicates and gaps kept).
    windows : each file's anomaly windows, inclusive ``(start, end)`` timestamps, in time order.
    labels : each file's single labelled anomaly points (informational; scoring uses windows).
    profiles : cost matrices by profile name.
    """

    root: Path | None
    files: tuple[str, ...]
    timestamps: dict[str, pd.DatetimeIndex]
    windows: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]
    labels: dict[str, list[pd.Timestamp]] = field(default_factory=dict)
    profiles: dict[str, CostMatrix] = field(default_factory=lambda: dict(DEFAULT_PROFILES))

    @property
    def rows(self) -> int:
        """Total rows over all files."""
        return sum(len(t) for t in self.timestamps.values())

    @property
    def window_count(self) -> int:
        return sum(len(self.windows.get(f, [])) for f in self.files)


@dataclass(frozen=True)
class NabResult:
    """One detector's NAB result for one profile.

    ``score`` is the normalised NAB score (null detector 0, perfect 100); ``raw_score`` the sum
    of window and false-positive terms at ``threshold``. ``tp``/``fp``/``fn``/``tn`` count scorable
    rows as NAB does (a tp is any detected row inside a window); ``windows_detected`` counts
    windows with at least one detection out of ``windows_scored``.
    """

    profile: str
    score: float
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows_detected: int
    windows_scored: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# --------------------------------------------------------------------------------------------
# Loading


def load_corpus(root: Path | str) -> NabCorpus:
    """Read a NAB corpus folder: ``labels/combined_windows.json``, ``profiles.json``, ``data/``.

    The files are those named in the windows file (files without labels are not part of NAB).
    Every window bound must be a timestamp of its file.
    """
    root = Path(root)
    windows_path = root / "labels" / "combined_windows.json"
    if not windows_path.is_file():
        raise NabError(f"no NAB corpus at {root}: {windows_path} is missing")
    raw_windows = _read_json(windows_path)
    labels_path = root / "labels" / "combined_labels.json"
    raw_labels = _read_json(labels_path) if labels_path.is_file() else {}
    profiles_path = root / "profiles.json"
    profiles = (_parse_profiles(_read_json(profiles_path)) if profiles_path.is_file()
                else dict(DEFAULT_PROFILES))

    files = tuple(sorted(raw_windows))
    timestamps: dict[str, pd.DatetimeIndex] = {}
    windows: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for name in files:
        path = root / "data" / name
        if not path.is_file():
            raise NabError(f"{name} is labelled but {path} is missing")
        timestamps[name] = pd.DatetimeIndex(_read_csv(path, "timestamp")["timestamp"])
        windows[name] = sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in raw_windows[name])
    labels = {name: [pd.Timestamp(t) for t in raw_labels.get(name, [])] for name in files}
    corpus = NabCorpus(root, files, timestamps, windows, labels, profiles)
    for name in files:  # fail at load time, naming the file, rather than mid-score
        _window_bounds(corpus.timestamps[name], corpus.windows[name], name)
    return corpus


def read_series(corpus: NabCorpus, name: str) -> pd.DataFrame:
    """One data file as a frame with ``timestamp`` (datetime64) and ``value`` (float) columns."""
    if corpus.root is None:
        raise NabError("this corpus was built in code and has no data files")
    if name not in corpus.timestamps:
        raise NabError(f"{name} is not a file of the corpus at {corpus.root}")
    frame = _read_csv(corpus.root / "data" / name, "timestamp", "value")
    frame["value"] = pd.to_numeric(frame["value"], errors="raise").astype(float)
    return frame


def peer_results_path(corpus: NabCorpus, detector: str, name: str) -> Path:
    """Where NAB keeps ``detector``'s scores for data file ``name``."""
    if corpus.root is None:
        raise NabError("this corpus was built in code and has no results folder")
    folder, file = name.split("/", 1)
    return corpus.root / "results" / detector / folder / f"{detector}_{file}"


def load_peer_scores(corpus: NabCorpus, detector: str) -> dict[str, pd.DataFrame]:
    """A published detector's scores: ``{file: DataFrame(timestamp, anomaly_score)}``."""
    scores = {}
    for name in corpus.files:
        path = peer_results_path(corpus, detector, name)
        if not path.is_file():
            raise NabError(f"no {detector} results for {name} (expected {path})")
        scores[name] = _read_csv(path, "timestamp", "anomaly_score")[["timestamp", "anomaly_score"]]
    return scores


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NabError(f"cannot read {path}: {exc}") from None


_TABLES: dict[tuple, object] = {}  # files read by pyarrow in this process, by path, size and time


def _read_fast(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """``columns`` of the file read by pyarrow's CSV reader (one thread), timestamps parsed as
    NAB writes them: several times faster than pandas' parser and date parsing. None where
    pyarrow is missing or refuses the file, which is then read the ordinary way (and its
    errors reported from there). A data file is read once per process (the corpus's
    timestamps, then its values)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pc
    except ImportError:
        return None
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        table = _TABLES.get(key)
        if table is None or not all(c in table.column_names for c in columns):
            data_file = path.parent.parent.name == "data" or path.parent.name == "data"
            wanted = ["timestamp", "value"] if data_file else list(columns)  # data: read twice
            table = pc.read_csv(path, read_options=pc.ReadOptions(use_threads=False),
                                convert_options=pc.ConvertOptions(
                                    include_columns=wanted, column_types={"timestamp": pa.timestamp("s")}))
            if data_file:
                _TABLES[key] = table
        return pd.DataFrame({c: table.column(c).to_numpy() for c in columns})
    except Exception:  # noqa: BLE001 - any refusal falls back to the reader that names the fault
        return None


def _read_csv(path: Path, *columns: str) -> pd.DataFrame:
    if "timestamp" in columns:
        fast = _read_fast(path, columns)
        if fast is not None:
            return fast
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NabError(f"cannot read {path}: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NabError(f"{path} has no {', '.join(missing)} column (header: {', '.join(frame.columns)})")
    try:
        try:  # NAB's own layout, parsed without guessing (several times faster)
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], format=NAB_TIME_FORMAT)
        except (ValueError, TypeError):
            frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    except (ValueError, TypeError) as exc:
        raise NabError(f"{path}: unreadable timestamp: {exc}") from None
    return frame


def _parse_profiles(raw: dict) -> dict[str, CostMatrix]:
    try:
        return {name: CostMatrix(float(p["CostMatrix"]["tpWeight"]), float(p["CostMatrix"]["fpWeight"]),
                                 float(p["CostMatrix"]["fnWeight"]))
                for name, p in raw.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise NabError(f"profiles.json: each profile needs CostMatrix tpWeight/fpWeight/fnWeight ({exc})") \
            from None


# --------------------------------------------------------------------------------------------
# Scoring


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid: ``2 / (1 + exp(5x)) - 1``, and -1 beyond 3 window widths."""
    x = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(rows: int) -> int:
    """Rows at the start of a file that NAB does not score."""
    return int(min(math.floor(PROBATION_FRACTION * rows), PROBATION_CAP))


@dataclass(frozen=True)
class _Rows:
    """Every scorable row of a corpus, profile-independent parts of its NAB score."""

    window: np.ndarray  # global window id, -1 outside any window
    tp_part: np.ndarray  # S(position) / S(-1) inside a window (times tpWeight)
    fp_part: np.ndarray  # S(distance past previous window) outside (times fpWeight)
    windows_scored: int  # windows with at least one scorable row


def _window_bounds(timestamps: pd.DatetimeIndex, windows, name: str) -> list[tuple[int, int]]:
    """Row indices of each window as NAB's sweeper finds them (first matching timestamp)."""
    values = timestamps.values
    bounds, cursor = [], 0
    for start, end in windows:
        starts = np.flatnonzero(values[cursor:] == np.datetime64(start))
        ends = np.flatnonzero(values == np.datetime64(end))
        if len(starts) == 0 or len(ends) == 0:
            bad = start if len(starts) == 0 else end
            raise NabError(f"{name}: window bound {bad} is not a timestamp of the file (at or after "
                           f"row {cursor})")
        left, right = cursor + int(starts[0]), int(ends[0])
        if right < left:
            raise NabError(f"{name}: window {start} .. {end} ends before it starts")
        bounds.append((left, right))
        cursor = right + 1
    return bounds


def _file_rows(n: int, bounds: list[tuple[int, int]], first_window_id: int):
    """Per-row window id, tp part and fp part of one file, probationary rows dropped."""
    index = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    tp_part = np.zeros(n)
    prev_right = np.full(n, -1, dtype=np.int64)  # right edge of the closest preceding window
    prev_width = np.zeros(n)
    for k, (left, right) in enumerate(bounds):
        width = right - left + 1
        inside = slice(left, right + 1)
        window[inside] = first_window_id + k
        tp_part[inside] = scaled_sigmoid(-(right - index[inside] + 1) / width) / _MAX_TP
        prev_right[right + 1:] = right
        prev_width[right + 1:] = width
    with np.errstate(divide="ignore", invalid="ignore"):
        past = np.abs(index - prev_right) / (prev_width - 1.0)  # a 1-row window: inf, so -1
    fp_part = np.where(prev_right < 0, -1.0, scaled_sigmoid(np.nan_to_num(past, nan=np.inf)))
    fp_part = np.where(window >= 0, 0.0, fp_part)
    keep = index >= probation_length(n)
    return window[keep], tp_part[keep], fp_part[keep], keep


def _check_scores(corpus: NabCorpus, name: str, frame: pd.DataFrame) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame) or "anomaly_score" not in frame.columns:
        raise NabError(f"{name}: scores must be a DataFrame with an anomaly_score column")
    expected = corpus.timestamps[name]
    if len(frame) != len(expected):
        raise NabError(f"{name}: {len(frame)} scores for {len(expected)} rows; score every row, "
                       f"duplicates included")
    if "timestamp" in frame.columns:
        column = frame["timestamp"]
        got = pd.DatetimeIndex(column if pd.api.types.is_datetime64_any_dtype(column)
                               else pd.to_datetime(column))
        mismatch = np.flatnonzero(got.values != expected.values)
        if len(mismatch):
            i = int(mismatch[0])
            raise NabError(f"{name}: row {i} has timestamp {got[i]}, the data has {expected[i]}")
    values = pd.to_numeric(frame["anomaly_score"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
    if len(bad):
        i = int(bad[0])
        raise NabError(f"{name}: anomaly_score must be a number in [0, 1]; row {i} is "
                       f"{frame['anomaly_score'].iloc[i]!r} ({len(bad)} such rows)")
    return values


class _Sweep:
    """Every scorable row of a corpus, ready to be swept by threshold for any profile."""

    def __init__(self, corpus: NabCorpus):
        parts, next_id = [], 0
        self.keep: dict[str, np.ndarray] = {}
        for name in corpus.files:
            bounds = _window_bounds(corpus.timestamps[name], corpus.windows.get(name, []), name)
            window, tp_part, fp_part, keep = _file_rows(len(corpus.timestamps[name]), bounds, next_id)
            next_id += len(bounds)
            parts.append((window, tp_part, fp_part))
            self.keep[name] = keep
        window = np.concatenate([p[0] for p in parts])
        self.rows = _Rows(window, np.concatenate([p[1] for p in parts]),
                          np.concatenate([p[2] for p in parts]), len(np.unique(window[window >= 0])))
        self.window_total = next_id
        self.files = tuple(corpus.files)
        self._null: dict[CostMatrix, tuple] = {}
        # the last scores checked and the last scores ranked: one detector is scored on every
        # profile, cross-validated and not, from the same arrays (checked and sorted once)
        self._checked: tuple | None = None
        self._ranked: tuple | None = None
        self._gains: dict[CostMatrix, tuple] = {}
        self._gains_for: np.ndarray | None = None

    def null_gains(self, cost: CostMatrix) -> tuple:
        """``gains`` of NAB's null detector (one constant score), computed once per profile."""
        if cost not in self._null:
            constant = self.constant(NULL_SCORE)
            self._null[cost] = (constant, *self.gains(constant, cost))
        return self._null[cost]

    def scores(self, corpus: NabCorpus, scores: Mapping[str, pd.DataFrame]) -> np.ndarray:
        if self._checked is not None and self._checked[0] is scores:
            return self._checked[1]
        missing = [f for f in corpus.files if f not in scores]
        if missing:
            raise NabError(f"no scores for {len(missing)} corpus file(s), e.g. {missing[0]}")
        anomaly = np.concatenate([_check_scores(corpus, f, scores[f])[self.keep[f]] for f in corpus.files])
        anomaly.setflags(write=False)
        self._checked = (scores, anomaly)
        return anomaly

    def _rank(self, anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows by descending score (stable), and the scores in that order."""
        if self._ranked is not None and self._ranked[0] is anomaly:
            return self._ranked[1]
        order = np.argsort(-anomaly, kind="stable")
        ranked = (order, anomaly[order])
        if not anomaly.flags.writeable:  # only arrays that cannot change under the cache
            self._ranked = (anomaly, ranked)
        return ranked

    def constant(self, value: float) -> np.ndarray:
        return np.full(len(self.rows.window), value)

    def file_of(self) -> np.ndarray:
        """The file (position in ``files``) of every scorable row, in the sweep's row order."""
        if not hasattr(self, "_file_of"):
            kept = [int(self.keep[f].sum()) for f in self.files]
            self._file_of = np.repeat(np.arange(len(self.files)), kept)
            window = self.rows.window
            labelled = window >= 0
            pairs = np.unique(np.stack([self._file_of[labelled], window[labelled]]), axis=1)
            self._scored = np.bincount(pairs[0], minlength=len(self.files)) if pairs.size \
                else np.zeros(len(self.files), dtype=np.int64)
        return self._file_of

    def windows_scored(self) -> np.ndarray:
        """Per file, its windows with at least one scorable row."""
        self.file_of()
        return self._scored

    def gains(self, anomaly: np.ndarray, cost: CostMatrix):
        """The rows by descending score, and what detecting each adds to the raw score.

        Returns ``(order, ranked scores, gain, inside a window, first detection of its window)``,
        all in that order; the raw score at a threshold is ``-fnWeight * windows`` plus the
        gains of the rows detected. Kept for the last (read-only) scores, per profile.
        """
        cached = self._gains.get(cost) if self._gains_for is anomaly else None
        if cached is None:
            cached = self._gains_of(anomaly, cost)
            if not anomaly.flags.writeable:
                if self._gains_for is not anomaly:
                    self._gains, self._gains_for = {}, anomaly
                self._gains[cost] = cached
        return cached

    def _gains_of(self, anomaly: np.ndarray, cost: CostMatrix):
        rows = self.rows
        order, ranked = self._rank(anomaly)
        window = rows.window[order]
        inside = window >= 0
        # Outside windows every detection adds its (negative) fp term.
        gain = np.where(inside, 0.0, rows.fp_part[order] * cost.fp_weight)
        first = np.zeros(len(order), dtype=np.int64)
        # Inside, a window's term is the best (earliest) detection so far, from -fnWeight.
        if inside.any():
            win_ids = window[inside]
            sweep = pd.Series(rows.tp_part[order][inside] * cost.tp_weight)
            best = sweep.groupby(win_ids).cummax()
            before = best.groupby(win_ids).shift(1).fillna(-cost.fn_weight)
            gain[inside] = (best - before).to_numpy()
            first[np.flatnonzero(inside)] = (~pd.Series(win_ids).duplicated()).to_numpy()
        return order, ranked, gain, inside, first

    def curve(self, anomaly: np.ndarray, cost: CostMatrix, gains: tuple | None = None) -> pd.DataFrame:
        """The raw NAB score and counts at every distinct threshold, highest threshold first.

        Row k is "detect every row whose score is >= threshold[k]"; the first row is NAB's
        1.1, nothing detected. ``gains``: ``self.gains(anomaly, cost)`` when already known.
        """
        rows = self.rows
        order, ranked, gain, inside, first = gains if gains is not None else self.gains(anomaly, cost)
        start = -cost.fn_weight * rows.windows_scored
        total = start + np.cumsum(gain)
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], len(ranked) > 0))
        tp = np.cumsum(inside)[ends]
        fp = np.cumsum(~inside)[ends]
        n_inside, n_outside = int(inside.sum()), int((~inside).sum())
        return pd.DataFrame({
            "threshold": np.concatenate([[_NOTHING_DETECTED], ranked[ends]]),
            "raw_score": np.concatenate([[start], total[ends]]),
            "tp": np.concatenate([[0], tp]),
            "fp": np.concatenate([[0], fp]),
            "fn": np.concatenate([[n_inside], n_inside - tp]),
            "tn": np.concatenate([[n_outside], n_outside - fp]),
            "windows_detected": np.concatenate([[0], np.cumsum(first)[ends]]),
        })


def _pick(curve: pd.DataFrame, threshold: float | None) -> pd.Series:
    if threshold is None:
        return curve.iloc[int(np.argmax(curve["raw_score"].to_numpy()))]  # first max: higher threshold
    at_or_above = np.flatnonzero(curve["threshold"].to_numpy() >= threshold)
    return curve.iloc[int(at_or_above[-1]) if len(at_or_above) else 0]


def score_corpus(corpus: NabCorpus, scores: Mapping[str, pd.DataFrame],
                 profiles: Iterable[str] = PROFILES,
                 thresholds: Mapping[str, float] | None = None,
                 sweep: "Sweep | None" = None) -> dict[str, NabResult]:
    """Score a detector's anomaly scores on the corpus under NAB's rules.

    Parameters
    ----------
    corpus : the corpus (``load_corpus``).
    scores : ``{file: DataFrame}`` for every corpus file, with an ``anomaly_score`` column in
        [0, 1] row for row with the data file (and, optionally, its ``timestamp`` column,
        which is then checked against the data).
    profiles : the profiles to score.
    thresholds : a fixed threshold per profile; by default (as NAB) the threshold that
        maximises the corpus score is chosen for each profile.

    sweep : ``Sweep(corpus)``, built once when several detectors are scored on one corpus.

    Returns
    -------
    ``{profile: NabResult}``.
    """
    sweep = _sweep_of(corpus, sweep)
    anomaly = sweep.scores(corpus, scores)
    results = {}
    for profile in profiles:
        if profile not in corpus.profiles:
            raise NabError(f"unknown profile {profile!r}; the corpus has {', '.join(corpus.profiles)}")
        results[profile] = _result(sweep, anomaly, corpus.profiles[profile], profile,
                                   (thresholds or {}).get(profile))
    return results


@dataclass(frozen=True)
class HeldOut:
    """One cross-validation fold's result for one profile: its files scored at ``threshold``,
    the threshold chosen on the other files; ``score`` normalised on the fold's own files."""

    files: tuple[str, ...]
    profile: str
    threshold: float
    raw_score: float
    score: float


class _FileCurves:
    """Every file's raw NAB score at every threshold of the corpus, one row per file.

    NAB's raw score is a sum over files (each window term and false-positive term belongs to
    one file), so the score of any set of files at any threshold is a sum of these rows, and
    a threshold can be chosen on the other files without sweeping them again.
    """

    def __init__(self, corpus: NabCorpus, sweep: "_Sweep", anomaly: np.ndarray, cost: CostMatrix):
        self.files = list(corpus.files)
        self.index = {f: i for i, f in enumerate(self.files)}
        self.windows = np.array([len(corpus.windows.get(f, [])) for f in self.files])
        self.tp_weight = cost.tp_weight
        file_of = sweep.file_of()  # the file of every scorable row, in the sweep's row order
        start = -cost.fn_weight * sweep.windows_scored()  # each file's raw score, nothing detected
        order, ranked, gain, _, _ = sweep.gains(anomaly, cost)
        ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], len(ranked) > 0))
        # the thresholds NAB sweeps: nothing detected, then every distinct score, descending.
        # Only those where some file gains can be the first maximum of a sum of files (between
        # them every file's raw score falls or stays), so only those are kept: "candidates".
        positive = np.concatenate([[0], np.cumsum(gain > 0)[ends]])
        steps = np.flatnonzero(np.diff(positive) > 0) + 1  # grid columns reached by a gain
        self.candidates = np.concatenate([[0], steps])
        self.grid = np.concatenate([[_NOTHING_DETECTED], ranked[ends]])[self.candidates]
        at = ends[steps - 1]  # the last ranked row of each candidate threshold
        # each file's running sum of its own gains, in ranked order (the zeros of the other
        # files' rows add nothing, so these are the bits a full matrix's cumsum would give)
        self.raw = np.repeat(start[:, None].astype(float), len(self.candidates), axis=1)
        owner = file_of[order]
        by_file = np.argsort(owner, kind="stable")  # each file's ranked rows, in ranked order
        bounds = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(self.files)))])
        for i in range(len(self.files)):
            mine = by_file[bounds[i]:bounds[i + 1]]
            if len(mine) == 0:
                continue
            running = np.cumsum(gain[mine])
            last = np.searchsorted(mine, at, side="right") - 1
            self.raw[i, 1:] = start[i] + np.where(last >= 0, running[np.maximum(last, 0)], 0.0)
        # NAB's null detector (one constant score): each file's raw score detecting nothing, all
        _, null_order, _, null_gain, _, _ = sweep.null_gains(cost)
        everything = np.bincount(file_of[null_order], weights=null_gain, minlength=len(self.files))
        self.null = np.column_stack([start, start + everything])

    def held_out(self, files: Sequence[str], profile: str) -> HeldOut:
        rows = np.zeros(len(self.files), dtype=bool)
        rows[[self.index[f] for f in files]] = True
        train = self.raw[~rows].sum(axis=0)
        k = int(np.argmax(train))  # the first maximum: the highest threshold, as NAB's sweep
        raw = float(self.raw[rows, k].sum())
        null = float(self.null[rows].sum(axis=0).max())
        perfect = self.tp_weight * float(self.windows[rows].sum())
        score = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
        return HeldOut(tuple(files), profile, float(self.grid[k]), raw, score)


class CrossValidation:
    """A detector's scores on the corpus, scored with thresholds chosen without the files scored.

    Parameters
    ----------
    corpus, scores : as for ``score_corpus``.
    profiles : the profiles to cross-validate.
    """

    def __init__(self, corpus: NabCorpus, scores: Mapping[str, pd.DataFrame],
                 profiles: Iterable[str] = PROFILES, sweep: "Sweep | None" = None):
        self.corpus = corpus
        sweep = _sweep_of(corpus, sweep)
        anomaly = sweep.scores(corpus, scores)
        self.curves = {p: _FileCurves(corpus, sweep, anomaly, corpus.profiles[p]) for p in profiles}

    def folds(self, folds: Iterable[Iterable[str]]) -> dict[str, list[HeldOut]]:
        """Each fold's held-out files scored at the threshold chosen on the other files.

        Each fold is normalised on its own files (their windows make the perfect score, NAB's
        null detector on them the zero); a fold with no labelled window has no scale and is
        refused. ``{profile: [HeldOut per fold]}``, in fold order.
        """
        folds = [sorted(set(fold)) for fold in folds]
        for fold in folds:
            if not any(self.corpus.windows.get(f) for f in fold):
                raise NabError(f"fold {fold[:3]} holds no labelled window: it cannot be normalised")
        return {p: [curves.held_out(fold, p) for fold in folds] for p, curves in self.curves.items()}

    def leave_one_file_out(self) -> dict[str, float]:
        """The corpus score when every file is scored at the threshold chosen on the others.

        NAB's raw score is a sum over files, so the held-out files' raw scores add up to a
        corpus raw score, normalised as ``score_corpus`` does (null and perfect of the corpus).
        """
        out = {}
        for profile, curves in self.curves.items():
            raw = sum(curves.held_out([f], profile).raw_score for f in self.corpus.files)
            null = float(curves.null.sum(axis=0).max())
            perfect = curves.tp_weight * float(curves.windows.sum())
            out[profile] = 100.0 * (raw - null) / (perfect - null)
        return out


def cv_folds(corpus: NabCorpus, k: int = 4, repeats: int = 5, seed: int = 0) -> list[tuple[str, ...]]:
    """``repeats`` random partitions of the files into ``k`` folds, each fold's held-out files.

    Files with labelled windows and files without are dealt separately, so every fold holds
    windows (and can be normalised) and about its share of quiet files.
    """
    rng = np.random.default_rng(seed)
    labelled = [f for f in corpus.files if corpus.windows.get(f)]
    quiet = [f for f in corpus.files if not corpus.windows.get(f)]
    if len(labelled) < k:
        raise NabError(f"{k} folds need at least {k} files with labelled windows; "
                       f"the corpus has {len(labelled)}")
    out = []
    for _ in range(repeats):
        order = [labelled[i] for i in rng.permutation(len(labelled))] + \
                [quiet[i] for i in rng.permutation(len(quiet))]
        out.extend(tuple(sorted(order[j::k])) for j in range(k))
    return out


def _result(sweep: "_Sweep", anomaly: np.ndarray, cost: CostMatrix, profile: str,
            threshold: float | None) -> NabResult:
    """The normalised result of ``anomaly`` on ``sweep`` at ``threshold`` (None: the best)."""
    best = _pick(sweep.curve(anomaly, cost), threshold)
    null_raw = float(_pick(sweep.curve(sweep.constant(NULL_SCORE), cost, sweep.null_gains(cost)[1:]),
                           None)["raw_score"])
    perfect = cost.tp_weight * sweep.window_total
    raw = float(best["raw_score"])
    normalised = 100.0 * (raw - null_raw) / (perfect - null_raw) if perfect != null_raw else 0.0
    return NabResult(profile=profile, score=normalised, threshold=float(best["threshold"]), raw_score=raw,
                     null_score=null_raw, perfect_score=perfect, tp=int(best["tp"]), fp=int(best["fp"]),
                     fn=int(best["fn"]), tn=int(best["tn"]), windows_detected=int(best["windows_detected"]),
                     windows_scored=sweep.rows.windows_scored)


Sweep = _Sweep  # public name: build one per corpus and hand it to score_corpus and CrossValidation


def _sweep_of(corpus: NabCorpus, sweep: "_Sweep | None") -> "_Sweep":
    if sweep is None:
        return _Sweep(corpus)
    if sweep.files != tuple(corpus.files):
        raise NabError("this sweep was built for another corpus")
    return sweep


def threshold_curve(corpus: NabCorpus, scores: Mapping[str, pd.DataFrame],
                    profile: str = "standard") -> pd.DataFrame:
    """The raw score and counts at every distinct threshold (for plots and diagnosis)."""
    sweep = _Sweep(corpus)
    return sweep.curve(sweep.scores(corpus, scores), corpus.profiles[profile])
