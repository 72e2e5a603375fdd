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
from pathlib import Path

import click

from service.cli.common import handle_errors
from service.file_detection import FileResult, UnusableInput, plan

USAGE_ERROR = 2


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
    from service import usecases  # the bootstrap and its imports load when a command runs

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
            result = usecases.detect_file(source, destination, threshold)
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
