"""Labelled real-system incident windows (the rca-dev layout), loaded and scored.

A case is a folder with ``history.csv``, ``window.csv`` and ``truth.json`` (``root_cause``,
``accept``: the causes counted right, ``harmful_if``: the automatic actions that would do harm,
``system``, ``inject_time``). Each is diagnosed exactly as ``aiops rca --history H --window W``
does (:func:`rca.window.window_features`; the CSV reader is handed in by the caller, so
training stays free of service code).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rca.features import Features
from rca.window import window_features


class DevSetError(ValueError):
    """A folder that is not a labelled case set."""


@dataclass(frozen=True)
class DevCase:
    name: str
    history_path: Path
    window_path: Path
    cause: str
    accept: tuple[str, ...]
    harmful_if: tuple[str, ...]
    system: str
    date: str

    @property
    def group(self) -> str:
        """The cross-validation group: one system on one day."""
        return f"{self.system}/{self.date}"


def load_cases(directory: str | Path) -> list[DevCase]:
    """Every case folder under ``directory`` (sorted by name)."""
    root = Path(directory)
    if not root.is_dir():
        raise DevSetError(f"{root} is not a folder of labelled cases")
    cases = []
    for folder in sorted(p for p in root.iterdir() if (p / "truth.json").is_file()):
        try:
            truth = json.loads((folder / "truth.json").read_text())
            cause = str(truth["root_cause"])
            accept = tuple(truth.get("accept") or [cause])
            harmful = tuple(truth.get("harmful_if") or [])
        except (ValueError, KeyError, TypeError) as exc:
            raise DevSetError(f"{folder / 'truth.json'}: {exc}") from None
        date = str(truth.get("inject_time", folder.name[:10]))[:10]
        cases.append(DevCase(folder.name, folder / "history.csv", folder / "window.csv", cause, accept,
                             harmful, str(truth.get("system", "unknown")), date))
    if not cases:
        raise DevSetError(f"{root} holds no case folders (a folder with truth.json each)")
    return cases


def dev_set(directory: str | Path, read: Callable[[Path, str], pd.DataFrame], threshold: float = 4.0,
            group_window: int = 3, name: str = "rca-dev"):
    """The cases as a :class:`training.rca_benchmark.LabelledSet`, featurised as
    ``aiops rca --history H --window W`` does (``read`` is its CSV reader); its cross-validation
    folds are system/date."""
    from training.rca_benchmark import LabelledSet

    cases = load_cases(directory)
    features: list[Features] = [
        window_features(read(c.history_path, "history"), read(c.window_path, "window"), threshold,
                        group_window).features for c in cases]
    return LabelledSet(name, features, [c.cause for c in cases], [c.accept for c in cases],
                       [c.harmful_if for c in cases], [c.name for c in cases], [c.group for c in cases])
