"""How the streaming detector's NAB figures move when each global choice is halved or doubled.

The detector's settings are global (never per file); this prints, for the defaults and for
each setting at half and at twice its default, the Standard / Low FP / Low FN scores with the
threshold chosen on the whole corpus, the cross-validated ones (leave-one-file-out, and the
mean and sd of 5 x 4-fold; see ``training.nab.CrossValidation``), and windows detected and
false-positive rows at the Standard threshold. A setting is worth changing only when its
cross-validated figures move by more than their spread. Scored with the project's NAB scorer
(``training.nab``), on the corpus ``aiops benchmark nab`` uses.

Usage: ``python scripts/nab_sensitivity.py [--root PATH]``. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection.streaming import StreamingUnivariateDetector  # noqa: E402
from training.nab import PROFILES, load_corpus, read_series  # noqa: E402
from training.nab_benchmark import default_nab_root, scored_row  # noqa: E402

SCALED = ("window", "refractory", "sustained_window", "history", "warmup", "seasonal_cycles",
          "range_tolerance", "tail_index", "min_gain", "z_clip", "min_z")


def scaled(value, factor: float):
    """``value`` times ``factor``: a duration stays a duration, an integer an integer."""
    if isinstance(value, str):
        minutes = pd.Timedelta(value).total_seconds() / 60 * factor
        return f"{minutes:g}min"
    if isinstance(value, int):
        return max(1, int(round(value * factor)))
    return value * factor


def variants() -> list[tuple[str, dict]]:
    """(label, parameters) for the defaults and each setting halved and doubled."""
    defaults = StreamingUnivariateDetector().get_params()
    out: list[tuple[str, dict]] = [("defaults", {})]
    for name in SCALED:
        for factor in (0.5, 2.0):
            value = scaled(defaults[name], factor)
            out.append((f"{name} = {value}", {name: value}))
    for factor in (0.5, 2.0):
        windows = tuple(scaled(k, factor) for k in defaults["shift_windows"])
        out.append((f"shift_windows = {windows}", {"shift_windows": windows}))
    out.append(("seasonal_periods = ()", {"seasonal_periods": ()}))
    out.append(("seasonal_periods = (1D,)", {"seasonal_periods": ("1D",)}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="NAB corpus folder")
    args = parser.parse_args()
    corpus = load_corpus(args.root or default_nab_root())
    series = {name: read_series(corpus, name) for name in corpus.files}
    rows, lofo = [], []
    started = time.perf_counter()
    for label, params in variants():
        scores = {}
        for name, frame in series.items():
            detector = StreamingUnivariateDetector(**params)
            values = detector.fit_predict_stream(frame["value"].to_numpy(dtype=float),
                                                 pd.DatetimeIndex(frame["timestamp"]))
            scores[name] = pd.DataFrame({"timestamp": frame["timestamp"], "anomaly_score": values})
        row = scored_row(corpus, label, scores)
        standard = row.results["standard"]
        rows.append([label, *(f"{row.results[p].score:.2f}" for p in PROFILES),
                     *(row.cv_cell(p) for p in PROFILES),
                     f"{standard.windows_detected}/{standard.windows_scored}", standard.fp])
        lofo.append([row.lofo[p] for p in PROFILES])
    print(tabulate(rows, headers=["setting", "Standard", "Low FP", "Low FN", "CV Standard", "CV Low FP",
                                  "CV Low FN", "windows", "FP rows"],
                   tablefmt="github", disable_numparse=True))
    lofo = np.array(lofo)
    print(f"\nCV is leave-one-file-out (the mean \u00b1 sd of 5 x 4-fold). Defaults, leave-one-file-out: "
          f"{np.round(lofo[0], 2).tolist()}; over the {len(rows) - 1} variants each profile ranges "
          f"{np.round(lofo[1:].min(axis=0), 2).tolist()} .. {np.round(lofo[1:].max(axis=0), 2).tolist()} "
          f"({time.perf_counter() - started:.1f} s).")


if __name__ == "__main__":
    main()
