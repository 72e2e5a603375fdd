"""Scoring metric files as a live stream would have: the ``detect_file`` use case behind ``aiops detect``.

What counts as unusable, and what is defined instead, is documented on the command
(:mod:`service.cli.detect`); this module reads, scores and writes, and raises UnusableInput.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.metric_files import MetricFileError, read_metric_file


class UnusableInput(ValueError):
    """A CSV that cannot be scored, with the reason a person can fix."""


@dataclass(frozen=True)
class FileResult:
    """What one file gave."""

    source: Path
    output: Path
    rows: int
    missing: int
    anomalies: int
    note: str = ""


def read_series(path: Path) -> tuple[pd.DataFrame, pd.DatetimeIndex, np.ndarray]:
    """The file's rows as text (to write back unchanged), its timestamps and its values.

    Read by the one metric-file reader; raises UnusableInput naming the first problem and the
    line it is on (line 1 is the header).
    """
    try:
        parsed = read_metric_file(path, required=("value",))
        values = parsed.values("value")
    except MetricFileError as exc:
        raise UnusableInput(exc.message) from None
    if len(values) == 1:
        raise UnusableInput("has a single data row; at least 2 are needed to score a series")
    if np.isnan(values).all():
        raise UnusableInput("has no values, only missing ones")
    return parsed.table, parsed.stamps, values


def detect_file(source: Path, output: Path, threshold: float | None) -> FileResult:
    """Score one CSV and write it with ``anomaly_score`` and ``anomaly`` appended."""
    from detection.streaming import StreamingUnivariateDetector

    frame, stamps, values = read_series(source)
    detector = StreamingUnivariateDetector()
    if threshold is not None:
        detector.set_params(threshold=threshold)
    scores = detector.fit_predict_stream(values, stamps)
    flags = detector.predict(scores)
    present = values[~np.isnan(values)]
    note = ""
    if np.all(present == present[0]):
        note = f"constant series (every value is {present[0]:g}): every score is 0"
    elif len(present) <= detector.rows_.warmup:
        note = (f"only {len(present)} values, within the detector's {detector.rows_.warmup}-row "
                f"warm-up ({detector.warmup} at one row per {detector.sampling_period_}): every score is 0")
    out = frame.copy()
    out["anomaly_score"] = np.round(scores, 6)
    out["anomaly"] = flags
    output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output, index=False)
    return FileResult(source, output, len(values), int(np.isnan(values).sum()), int(flags.sum()), note)


def plan(input_path: Path, output: Path) -> list[tuple[Path, Path]]:
    """(source, destination) pairs: one file, or every CSV of a folder mirrored under OUTPUT."""
    if input_path.is_file():
        destination = output / input_path.name if output.is_dir() else output
        if destination.resolve() == input_path.resolve():
            raise UnusableInput("OUTPUT is the input file itself; choose another path")
        return [(input_path, destination)]
    sources = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not sources:
        raise UnusableInput(f"no .csv files under {input_path}")
    if output.exists() and not output.is_dir():
        raise UnusableInput(f"INPUT is a folder, so OUTPUT must be a folder; {output} is a file")
    if output.resolve() == input_path.resolve():
        raise UnusableInput("OUTPUT is the input folder itself; choose another folder")
    return [(p, output / p.relative_to(input_path)) for p in sources]
