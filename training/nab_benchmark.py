"""The NAB benchmark: replay a detector over the corpus as a stream and score it beside the peers.

``run_nab_benchmark`` reads every corpus file, runs a fresh detector on it through the streaming
protocol (``detection.streaming_baseline.StreamingDetector``), checks on a few prefixes that no
score looked ahead and, for a detector with a live path (``stream_state``), that feeding the
last rows one at a time to the state the replay left gives the same scores, scores the result
with NAB's rules (``training.nab``) and the published peers' results the same way, and times
the replay. ``log_to_mlflow`` records a report as one MLflow run.

What the default measures: the ``streaming`` member of ``ServiceDetector``, the ensemble that
``aiops train`` fits and ``aiops watch`` runs, replayed alone with the member's settings
(``EnsembleConfig().streaming`` is empty: the detector's defaults). The ensemble's other members
(hour-of-week z-score, STL residual, isolation forest, level shift) are fitted on weeks of a
service's history, which a NAB file does not have, so they are not in these figures.

Detectors are named in ``DETECTORS`` as ``"module:Class"`` strings, imported on use, so adding one
is one line and a detector module that is still being written cannot break the others.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from training.nab import (
    PEERS,
    PROFILE_LABELS,
    PROFILES,
    CrossValidation,
    NabCorpus,
    NabError,
    NabResult,
    Sweep,
    cv_folds,
    load_corpus,
    load_peer_scores,
    read_series,
    score_corpus,
)

DETECTORS: dict[str, str] = {
    "streaming": "detection.streaming:StreamingUnivariateDetector",
    "service": "detection.ensemble:ServiceDetector",
    "baseline": "detection.streaming_baseline:RollingRobustZ",
}
"""Streaming detectors the benchmark can run, by name: ``"module:Class"`` (built with no arguments).

``streaming`` is the detector of the ensemble's ``streaming`` member with its default settings,
the ones the default ensemble runs (``tests/unit/test_ensemble.py`` checks they are the same);
it loads in a fraction of the ensemble's start-up (no scikit-learn, no statsmodels).
``service`` replays ``ServiceDetector.fit_predict_stream``: the same member's detector with
whatever ``config.streaming`` says, the same figures while that is empty."""

DESCRIPTIONS: dict[str, str] = {
    "streaming": "the streaming member of ServiceDetector (the ensemble aiops watch runs), replayed alone",
    "service": "ServiceDetector's univariate streaming mode (its streaming member), replayed alone",
    "baseline": "a rolling robust z-score (the floor to beat)",
}

DEFAULT_DETECTOR = "streaming"
LIVE_CHECK_ROWS = 200  # rows at the end of each checked file fed one at a time to the live state
NAB_ROOT_ENV = "AIOPS_NAB_ROOT"
CAUSALITY_CHECKS = 3  # files whose prefix is replayed again to check that no score looked ahead
CV_FOLDS, CV_REPEATS = 4, 5  # the k-fold cross-validation: 5 random partitions into 4 folds of files


def default_nab_root() -> Path:
    """``$AIOPS_NAB_ROOT``, else the shared corpus beside the checkout (``../shared/data/nab``)."""
    if os.environ.get(NAB_ROOT_ENV):
        return Path(os.environ[NAB_ROOT_ENV])
    candidates = [Path.cwd() / ".." / "shared" / "data" / "nab",
                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nab"]
    for candidate in candidates:
        if (candidate / "labels" / "combined_windows.json").is_file():
            return candidate.resolve()
    return candidates[-1].resolve()


def detector_factory(name: str) -> Callable[[], object]:
    """The class registered under ``name`` (a ValueError naming the known ones otherwise)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    module_name, _, class_name = DETECTORS[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"detector {name!r} ({DETECTORS[name]}) cannot be loaded: {exc}") from None


@dataclass(frozen=True)
class DetectorRow:
    """One detector's line of the table."""

    name: str
    results: dict[str, NabResult]
    ours: bool = False
    lofo: dict[str, float] = field(default_factory=dict)
    folds: dict[str, list[float]] = field(default_factory=dict)

    def scores(self) -> dict[str, float]:
        return {p: r.score for p, r in self.results.items()}

    def cv_cell(self, profile: str) -> str:
        """``LOFO (k-fold mean ± sd)`` for one profile."""
        folds = np.asarray(self.folds[profile])
        return f"{self.lofo[profile]:.2f} ({folds.mean():.1f} ± {folds.std():.1f})"


@dataclass(frozen=True)
class NabBenchmarkReport:
    """Our detector and the peers on one corpus, and how fast our replay ran."""

    detector: str
    detector_class: str
    detector_params: dict
    root: Path
    files: int
    windows: int
    rows: int
    replay_seconds: float
    scoring_seconds: float
    causality_checked: list[str]
    live_checked: list[str] = field(default_factory=list)
    table: list[DetectorRow] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.replay_seconds if self.replay_seconds > 0 else float("inf")

    def headers(self) -> list[str]:
        return ["detector", *(PROFILE_LABELS.get(p, p) for p in PROFILES)]

    @property
    def description(self) -> str:
        return DESCRIPTIONS.get(self.detector, self.detector_class)

    def rows_for_table(self) -> list[list]:
        return [[f"{row.name} (ours)" if row.ours else row.name,
                 *(f"{row.results[p].score:.2f}" for p in PROFILES)] for row in self.table]

    def render(self, fmt: str = "simple") -> str:
        """The tables of scores (``fmt`` as tabulate's tablefmt, e.g. "github" for Markdown):
        thresholds chosen on the whole corpus (NAB's rule), then cross-validated."""
        aligned = dict(tablefmt=fmt, disable_numparse=True, colalign=("left", "right", "right", "right"))
        fitted = tabulate(self.rows_for_table(), headers=self.headers(), **aligned)
        cv = tabulate([[f"{row.name} (ours)" if row.ours else row.name,
                        *(row.cv_cell(p) for p in PROFILES)] for row in self.table],
                      headers=self.headers(), **aligned)
        return (f"Threshold per profile chosen on the whole corpus (NAB's rule):\n{fitted}\n\n"
                f"Cross-validated: threshold chosen without the file(s) scored. Leave-one-file-out "
                f"(and, in brackets, the mean \u00b1 sd of {CV_REPEATS} x {CV_FOLDS}-fold, each fold "
                f"normalised on its own files):\n{cv}")

    def summary(self) -> str:
        live = (f" The live path (the state the replay left, fed the last {LIVE_CHECK_ROWS} rows one at a "
                f"time) gave the same scores on {len(self.live_checked)} files."
                if self.live_checked else "")
        return (f"Measured: {self.detector} = {self.description} ({self.detector_class}).{live}\n"
                f"NAB corpus {self.root}: {self.files} files, {self.windows} windows, {self.rows} rows. "
                f"Detector replay: {self.rows} rows in {self.replay_seconds:.2f} s "
                f"({self.rows_per_second:,.0f} rows/s, the detector's calls only); "
                f"scoring and cross-validating the six detectors {self.scoring_seconds:.2f} s.")

    def to_dict(self) -> dict:
        return {
            "detector": self.detector, "detector_class": self.detector_class,
            "detector_params": self.detector_params, "root": str(self.root), "files": self.files,
            "windows": self.windows, "rows": self.rows,
            "replay_seconds": round(self.replay_seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "scoring_seconds": round(self.scoring_seconds, 3),
            "causality_checked": self.causality_checked, "live_checked": self.live_checked,
            "measured": self.description,
            "table": [{"detector": r.name, "ours": r.ours,
                       **{p: {"score": round(r.results[p].score, 4),
                              "threshold": r.results[p].threshold,
                              "windows_detected": r.results[p].windows_detected,
                              "false_positive_rows": r.results[p].fp,
                              "cv_leave_one_file_out": round(r.lofo[p], 4),
                              "cv_folds": [round(x, 4) for x in r.folds[p]]} for p in PROFILES}}
                      for r in self.table],
        }


def replay(detector_cls: Callable[[], object], series: pd.DataFrame) -> np.ndarray:
    """One file through a fresh detector; scores checked for shape and range."""
    values = series["value"].to_numpy(dtype=float)
    scores = np.asarray(detector_cls().fit_predict_stream(values, pd.DatetimeIndex(series["timestamp"])),
                        dtype=float)
    if scores.shape != values.shape:
        raise ValueError(f"the detector returned {scores.shape} scores for {values.shape} rows")
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        raise ValueError(f"the detector returned a score outside [0, 1] at row {int(np.flatnonzero(bad)[0])}")
    return scores


def check_no_lookahead(detector_cls: Callable[[], object], series: pd.DataFrame, full: np.ndarray,
                       name: str) -> None:
    """Replay a prefix (about 60% of the file) and require the same scores as the full replay."""
    cut = max(1, int(len(series) * 0.6))
    prefix = replay(detector_cls, series.iloc[:cut])
    if not np.allclose(prefix, full[:cut], rtol=0, atol=1e-9):
        row = int(np.flatnonzero(~np.isclose(prefix, full[:cut], rtol=0, atol=1e-9))[0])
        raise ValueError(f"{name}: the score of row {row} changed when rows after {cut} were appended; "
                         "a streaming detector may use rows 0..i only")


def check_live_path(detector_cls: Callable[[], object], series: pd.DataFrame, full: np.ndarray,
                    name: str) -> bool:
    """Replay all but the last rows, then feed those one at a time to the state the replay left
    (the watcher's path); require the full replay's scores. False for a detector without one."""
    detector = detector_cls()
    if hasattr(detector, "stream_detector"):
        detector = detector.stream_detector()
    if not hasattr(detector, "stream_state"):
        return False
    cut = max(1, len(series) - LIVE_CHECK_ROWS)
    values = series["value"].to_numpy(dtype=float)
    stamps = pd.DatetimeIndex(series["timestamp"])
    detector.fit_predict_stream(values[:cut], stamps[:cut])
    state = detector.stream_state()
    seconds = stamps.as_unit("s").asi8.astype(float)
    live = np.array([state.update(float(v), float(t)).score
                     for v, t in zip(values[cut:], seconds[cut:], strict=True)])
    if not np.allclose(live, full[cut:], rtol=0, atol=1e-9):
        row = cut + int(np.flatnonzero(~np.isclose(live, full[cut:], rtol=0, atol=1e-9))[0])
        raise ValueError(f"{name}: row {row} scored {live[row - cut]:.6f} live (one row at a time) but "
                         f"{full[row]:.6f} in the replay; the live path must give the replay's scores")
    return True


def run_nab_benchmark(root: Path | None = None, detector: str = DEFAULT_DETECTOR,
                      peers: Sequence[str] = PEERS) -> NabBenchmarkReport:
    """Replay ``detector`` over the NAB corpus at ``root`` and score it beside ``peers``."""
    root = Path(root) if root is not None else default_nab_root()
    corpus = load_corpus(root)
    detector_cls = detector_factory(detector)
    scores, replay_seconds, checked, live = _replay_corpus(corpus, detector_cls)
    started = time.perf_counter()
    sweep = Sweep(corpus)
    table = [scored_row(corpus, detector, scores, ours=True, sweep=sweep)]
    for peer in peers:
        try:
            table.append(scored_row(corpus, peer, load_peer_scores(corpus, peer), sweep=sweep))
        except NabError as exc:
            raise NabError(f"peer {peer}: {exc}") from None
    scoring_seconds = time.perf_counter() - started
    table[1:] = sorted(table[1:], key=lambda r: -r.results["standard"].score)
    instance = detector_cls()
    if hasattr(instance, "stream_detector"):  # the service's detector: the settings it streams with
        instance = instance.stream_detector()
    params = instance.get_params() if hasattr(instance, "get_params") else {}
    return NabBenchmarkReport(
        detector=detector, detector_class=DETECTORS[detector], detector_params=params, root=root,
        files=len(corpus.files), windows=corpus.window_count, rows=corpus.rows,
        replay_seconds=replay_seconds, scoring_seconds=scoring_seconds, causality_checked=checked,
        live_checked=live, table=table)


def scored_row(corpus: NabCorpus, name: str, scores: dict[str, pd.DataFrame],
               ours: bool = False, sweep: Sweep | None = None) -> DetectorRow:
    """One detector's scores on the corpus: NAB's figures and the cross-validated ones."""
    sweep = sweep or Sweep(corpus)
    cv = CrossValidation(corpus, scores, sweep=sweep)
    folds = cv.folds(cv_folds(corpus, CV_FOLDS, CV_REPEATS))
    return DetectorRow(name, score_corpus(corpus, scores, sweep=sweep), ours=ours,
                       lofo=cv.leave_one_file_out(),
                       folds={p: [r.score for r in results] for p, results in folds.items()})


def _replay_corpus(corpus: NabCorpus,
                   detector_cls) -> tuple[dict[str, pd.DataFrame], float, list[str], list[str]]:
    scores: dict[str, pd.DataFrame] = {}
    elapsed = 0.0
    every = max(1, len(corpus.files) // CAUSALITY_CHECKS)
    checked, live = [], []
    for k, name in enumerate(corpus.files):
        series = read_series(corpus, name)
        started = time.perf_counter()
        try:
            values = replay(detector_cls, series)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        elapsed += time.perf_counter() - started
        if k % every == 0 and len(checked) < CAUSALITY_CHECKS:
            check_no_lookahead(detector_cls, series, values, name)
            checked.append(name)
            if check_live_path(detector_cls, series, values, name):
                live.append(name)
        scores[name] = pd.DataFrame({"timestamp": series["timestamp"], "anomaly_score": values})
    return scores, elapsed, checked, live


def log_to_mlflow(report: NabBenchmarkReport, tracking_uri: str,
                  experiment: str = "nab-benchmark") -> str:
    """Record the report as one MLflow run (params, metrics, the table as artifacts); its run id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"nab-{report.detector}") as run:
        mlflow.log_params({"detector": report.detector, "detector_class": report.detector_class,
                           "corpus": str(report.root), "files": report.files,
                           "windows": report.windows, "rows": report.rows,
                           **{f"detector.{k}": v for k, v in report.detector_params.items()}})
        metrics = {"rows_per_second": report.rows_per_second, "replay_seconds": report.replay_seconds}
        for row in report.table:
            prefix = "nab" if row.ours else f"peer.{row.name}"
            for profile, result in row.results.items():
                metrics[f"{prefix}.{profile}"] = result.score
                metrics[f"{prefix}.{profile}.cv_lofo"] = row.lofo[profile]
                metrics[f"{prefix}.{profile}.cv_mean"] = float(np.mean(row.folds[profile]))
                metrics[f"{prefix}.{profile}.cv_sd"] = float(np.std(row.folds[profile]))
                if row.ours:
                    metrics[f"nab.{profile}.threshold"] = result.threshold
                    metrics[f"nab.{profile}.windows_detected"] = result.windows_detected
                    metrics[f"nab.{profile}.false_positive_rows"] = result.fp
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "nab_table.md").write_text(report.render("github") + "\n\n" + report.summary() + "\n")
            Path(tmp, "nab_report.json").write_text(json.dumps(report.to_dict(), indent=2))
            mlflow.log_artifacts(tmp)
        return run.info.run_id
