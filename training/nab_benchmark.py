"""The NAB benchmark: replay a detector over the corpus as a stream and score it beside the peers.

``run_nab_benchmark`` reads every corpus file, runs a fresh detector on it through the streaming
protocol (``detection.streaming_baseline.StreamingDetector``), checks on a few prefixes that no
score looked ahead, scores the result with NAB's rules (``training.nab``) and the published
peers' results the same way, and times the replay. ``log_to_mlflow`` records a report as one
MLflow run.

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
    cv_folds,
    load_corpus,
    load_peer_scores,
    read_series,
    score_corpus,
)

DETECTORS: dict[str, str] = {
    "service": "detection.ensemble:ServiceDetector",
    "streaming": "detection.streaming:StreamingUnivariateDetector",
    "baseline": "detection.streaming_baseline:RollingRobustZ",
}
"""Streaming detectors the benchmark can run, by name: ``"module:Class"`` (built with no arguments).

``service`` is the class ``aiops train`` fits and ``aiops watch`` runs, in its univariate
streaming mode (``ServiceDetector.fit_predict_stream``: its ``streaming`` member's detector,
with the member's settings, the same figures as ``streaming`` while those are the defaults).
The member is off in the default ensemble for now (see the README's NAB section)."""

DEFAULT_DETECTOR = "streaming"
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
    table: list[DetectorRow] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.replay_seconds if self.replay_seconds > 0 else float("inf")

    def headers(self) -> list[str]:
        return ["detector", *(PROFILE_LABELS.get(p, p) for p in PROFILES)]

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
        return (f"NAB corpus {self.root}: {self.files} files, {self.windows} windows, {self.rows} rows. "
                f"Streaming replay of {self.detector}: {self.rows} rows in {self.replay_seconds:.2f} s "
                f"({self.rows_per_second:,.0f} rows/s); scoring {self.scoring_seconds:.2f} s.")

    def to_dict(self) -> dict:
        return {
            "detector": self.detector, "detector_class": self.detector_class,
            "detector_params": self.detector_params, "root": str(self.root), "files": self.files,
            "windows": self.windows, "rows": self.rows,
            "replay_seconds": round(self.replay_seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "scoring_seconds": round(self.scoring_seconds, 3),
            "causality_checked": self.causality_checked,
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


def run_nab_benchmark(root: Path | None = None, detector: str = DEFAULT_DETECTOR,
                      peers: Sequence[str] = PEERS) -> NabBenchmarkReport:
    """Replay ``detector`` over the NAB corpus at ``root`` and score it beside ``peers``."""
    root = Path(root) if root is not None else default_nab_root()
    corpus = load_corpus(root)
    detector_cls = detector_factory(detector)
    scores, replay_seconds, checked = _replay_corpus(corpus, detector_cls)
    started = time.perf_counter()
    table = [scored_row(corpus, detector, scores, ours=True)]
    for peer in peers:
        try:
            table.append(scored_row(corpus, peer, load_peer_scores(corpus, peer)))
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
        table=table)


def scored_row(corpus: NabCorpus, name: str, scores: dict[str, pd.DataFrame],
               ours: bool = False) -> DetectorRow:
    """One detector's scores on the corpus: NAB's figures and the cross-validated ones."""
    cv = CrossValidation(corpus, scores)
    folds = cv.folds(cv_folds(corpus, CV_FOLDS, CV_REPEATS))
    return DetectorRow(name, score_corpus(corpus, scores), ours=ours, lofo=cv.leave_one_file_out(),
                       folds={p: [r.score for r in results] for p, results in folds.items()})


def _replay_corpus(corpus: NabCorpus, detector_cls) -> tuple[dict[str, pd.DataFrame], float, list[str]]:
    scores: dict[str, pd.DataFrame] = {}
    elapsed = 0.0
    every = max(1, len(corpus.files) // CAUSALITY_CHECKS)
    checked = []
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
        scores[name] = pd.DataFrame({"timestamp": series["timestamp"], "anomaly_score": values})
    return scores, elapsed, checked


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
