"""``aiops detect``: replay CSV metrics through the streaming detector and write the scores.

INPUT is a CSV file with a header holding ``timestamp`` and ``value`` columns (others are kept),
or a folder searched recursively for ``*.csv``, whose files are written to OUTPUT under the same
relative paths. Each output row is the input row plus ``anomaly_score`` (in [0, 1], row ``i``
scored from rows ``0..i`` only) and ``anomaly`` (1 where the score reaches the detector's
threshold).

What counts as unusable, and what is defined instead:

- unusable (a one-line ``aiops: error: FILE: ...`` and exit code 2): an empty file, no
  ``timestamp,value`` header, no data rows or a single one, a timestamp that is not a date,
  a value that is not a number, an infinite value, no value at all. In a folder the other
  files are still written, and the exit code is 2 if any file was unusable.
- defined: an empty or ``nan``/``NA``/``null`` value is a missing row (score 0, anomaly 0);
  duplicate, missing, unevenly spaced or unsorted timestamps are kept in file order and
  scored; a constant series, or one no longer than the detector's warm-up (150 values),
  scores 0 everywhere, and a note on stderr says so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd

from service.cli.common import handle_errors
from training.metric_files import MetricFileError, read_metric_file

USAGE_ERROR = 2


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


def refuse(message: str) -> None:
    click.echo(f"aiops: error: {message}", err=True)
    sys.exit(USAGE_ERROR)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output CSV (INPUT a file) or folder (INPUT a folder, mirrored).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Score at or above which a row is an anomaly [detector default: 0.5].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No per-file progress on stderr.")
@handle_errors
def detect(input_path: Path, output: Path, threshold: float | None, as_json: bool, quiet: bool) -> None:
    """Score CSV metrics (timestamp,value) row by row, as a live stream would have.

    Writes every row with anomaly_score (0..1, using earlier rows only) and anomaly (0/1).
    A folder is processed file by file into OUTPUT with the same relative paths. Missing
    values score 0; a constant series scores 0 (and says so); unusable files are named on
    stderr and make the exit code 2.
    """
    try:
        jobs = plan(input_path, output)
    except UnusableInput as exc:
        refuse(str(exc))
    results: list[FileResult] = []
    failures: list[str] = []
    show_progress = len(jobs) > 1 and not quiet
    for k, (source, destination) in enumerate(jobs, 1):
        name = source.relative_to(input_path) if input_path.is_dir() else source
        try:
            result = detect_file(source, destination, threshold)
        except UnusableInput as exc:
            failures.append(f"{name}: {exc}")
            if len(jobs) == 1:
                refuse(failures[0])
            click.echo(f"[{k}/{len(jobs)}] {name}: unusable, {exc}", err=True)
            continue
        results.append(result)
        if result.note:
            click.echo(f"aiops: note: {name}: {result.note}", err=True)
        if show_progress:
            click.echo(f"[{k}/{len(jobs)}] {name}: {result.rows} rows, {result.anomalies} anomalies",
                       err=True)
    summary = {
        "input": str(input_path), "output": str(output), "files": len(results),
        "rows": sum(r.rows for r in results), "anomalies": sum(r.anomalies for r in results),
        "unusable": failures,
        "results": [{"file": str(r.source), "output": str(r.output), "rows": r.rows,
                     "missing": r.missing, "anomalies": r.anomalies, "note": r.note} for r in results],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"Wrote {summary['files']} file(s), {summary['rows']} rows, "
                   f"{summary['anomalies']} anomalies, to {output}.")
    if failures:
        refuse(f"{len(failures)} of {len(jobs)} file(s) unusable (reasons above): "
               + ", ".join(f.split(": ", 1)[0] for f in failures))
