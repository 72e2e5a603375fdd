"""The one reader of metric files, for every command that takes one.

``aiops train --history``, ``aiops rca --history/--window``, ``aiops detect`` and the RCA dev set
all read files through :func:`read_metric_file`: CSV or Parquet, a ``timestamp`` column (any
ISO 8601 or common date-time form; without a zone it is UTC), metric columns, and optionally
``cluster``/``service`` key columns for files that hold several services. CSV cells are read as
text first, so an error names the line a person must fix (line 1 is the header). A missing
value (an empty cell, ``nan``, ``NA``, ``null``, ``none``) is NaN; a value that is not a number
or is infinite is an error, never a silent guess. What each command then requires of the rows
(sorted, unique, enough of them) is that command's rule, applied to the parsed file.

Errors are :class:`MetricFileError`, the service-level input error
(:class:`~rca.payload.PayloadError`) with the file's name as its field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rca.payload import PayloadError

MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
KEY_COLUMNS = ("cluster", "service")
PARQUET = (".parquet", ".pq")


class MetricFileError(PayloadError):
    """A metric file that cannot be used; ``field`` names the file, the message the problem."""


@dataclass(frozen=True)
class MetricFile:
    """A parsed metric file: its rows as read, their timestamps, and numeric access by column."""

    name: str
    table: pd.DataFrame          # as read, header included: CSV cells as text (to write back), Parquet typed
    stamps: pd.DatetimeIndex     # UTC, in file order (unsorted and duplicate stamps are kept)
    text: bool                   # whether ``table`` holds CSV text (errors then give line numbers)

    def column(self, name: str) -> str:
        """The header of canonical column ``name`` (matched without regard to case)."""
        return {c.lower(): c for c in self.table.columns}[name]

    @property
    def metrics(self) -> list[str]:
        """The metric columns: all but the timestamp and the key columns."""
        return [c for c in self.table.columns if c.lower() not in ("timestamp", *KEY_COLUMNS)]

    @property
    def keys(self) -> list[str]:
        return [k for k in KEY_COLUMNS if k in {c.lower() for c in self.table.columns}]

    def values(self, column: str) -> np.ndarray:
        """One column as floats, NaN where missing; a number that is not one is an error."""
        cells = self.table[self.column(column.lower()) if column not in self.table else column]
        if self.text:
            cells = cells.str.strip()
            missing = cells.str.lower().isin(MISSING).to_numpy()
            values = pd.to_numeric(cells.where(~missing, None), errors="coerce").to_numpy(dtype=float)
            bad = np.flatnonzero(np.isnan(values) & ~missing)
        else:
            if not (pd.api.types.is_numeric_dtype(cells) or cells.isna().all()):
                raise MetricFileError(self.name, f"column {column} is not numeric ({cells.dtype})")
            values = cells.to_numpy(dtype=float, na_value=np.nan)
            bad = np.array([], dtype=int)
        if bad.size:
            raise MetricFileError(self.name, f"{self._where(bad[0])}: {column} "
                                             f"{cells.iloc[bad[0]]!r} is not a number")
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise MetricFileError(self.name, f"{self._where(infinite[0])}: {column} "
                                             f"{cells.iloc[infinite[0]]!r} is infinite")
        return values

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The metric columns (or ``columns``) as floats on the timestamps, and the key columns
        (``cluster``, ``service``) as text."""
        columns = list(self.metrics if columns is None else columns)
        frame = pd.DataFrame({c: self.values(c) for c in columns},
                             index=pd.DatetimeIndex(self.stamps, name="timestamp"))
        for key in self.keys:
            frame[key] = self.table[self.column(key)].astype(str).str.strip().to_numpy()
        return frame

    def _where(self, row: int) -> str:
        return f"line {row + 2}" if self.text else f"row {row + 1}"


def read_metric_file(path: str | Path, name: str | None = None, *,
                     required: Sequence[str] = ()) -> MetricFile:
    """Read a CSV or Parquet metric file with a ``timestamp`` column and the ``required`` ones
    (header names are matched without regard to case or surrounding spaces). ``name`` is how
    errors name the file (its path by default).

    Raises MetricFileError for a file that is missing, empty, unreadable, without the columns it
    needs or without data rows, or with a timestamp that is not a date/time.
    """
    path = Path(path)
    name = name or str(path)
    if not path.is_file():
        raise MetricFileError(name, f"no such file: {path}")
    if path.stat().st_size == 0:
        raise MetricFileError(name, "the file is empty")
    text = path.suffix.lower() not in PARQUET
    table = _read_csv(path, name) if text else _read_parquet(path, name)
    table.columns = [str(c).strip() for c in table.columns]
    present = {c.lower() for c in table.columns}
    needed = ["timestamp", *required]
    if any(c not in present for c in needed):
        wanted = f"{' and '.join(needed)} columns" if required else "a timestamp column"
        raise MetricFileError(name, f"needs a header with {wanted}; the columns are "
                                    f"{', '.join(table.columns) or 'none'}")
    if len(table) == 0:
        raise MetricFileError(name, "has a header but no data rows")
    parsed = MetricFile(name, table, pd.DatetimeIndex([]), text)
    if not parsed.metrics:
        raise MetricFileError(name, "has no metric columns besides the timestamp")
    stamps = _stamps(table[parsed.column("timestamp")], name, text)
    return MetricFile(name, table, stamps, text)


def _read_csv(path: Path, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise MetricFileError(name, "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise MetricFileError(name, f"not a readable CSV: {str(exc).splitlines()[0]}") from None


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except (ValueError, OSError, ImportError) as exc:
        raise MetricFileError(name, f"not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    if "timestamp" not in table.columns and isinstance(table.index, pd.DatetimeIndex):
        table = table.rename_axis("timestamp").reset_index()
    return table.reset_index(drop=True)


def _stamps(cells: pd.Series, name: str, text: bool) -> pd.DatetimeIndex:
    """The timestamps in UTC; the first one that is not a date/time is named with its line."""
    if text:
        cells = cells.str.strip()
    try:
        stamps = pd.to_datetime(cells, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise MetricFileError(name, f"timestamps could not be read: {str(exc).splitlines()[0]}") from None
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        where = f"line {bad[0] + 2}" if text else f"row {bad[0] + 1}"
        raise MetricFileError(name, f"{where}: timestamp {cells.iloc[bad[0]]!r} is not a date/time")
    return pd.DatetimeIndex(stamps)
