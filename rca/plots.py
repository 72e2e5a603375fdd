"""One PNG per metric of an incident: the baseline band, the observations and the anomalies.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no display), into
bytes, so a report can embed or attach them and nothing here touches the file system.
"""

from __future__ import annotations

import io

import pandas as pd

from detection.anomaly import Anomaly
from detection.metrics import spec_for


def metric_plot(metric: str, observed: pd.Series, centre: pd.Series, lower: pd.Series,
                upper: pd.Series, anomalies: list[Anomaly]) -> bytes:
    """A PNG of one metric: band between ``lower`` and ``upper``, centre, points, anomalies."""
    spec = spec_for(metric)
    # matplotlib is imported when a plot is drawn, not with the module: the rollback Lambda's
    # package (which imports the watcher, never draws) does not carry it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    index = observed.index
    axes.fill_between(index, lower.reindex(index).clip(lower=0), upper.reindex(index), alpha=0.2,
                      color="tab:blue", label="baseline band", step="mid")
    axes.plot(index, centre.reindex(index), color="tab:blue", linewidth=1, linestyle="--",
              label="expected")
    axes.plot(index, observed, color="black", linewidth=1.2, marker=".", markersize=3, label="observed")
    hits = [a for a in anomalies if a.metric == metric]
    if hits:
        axes.scatter([a.timestamp for a in hits], [a.value for a in hits], color="tab:red", zorder=3,
                     s=18, label="anomaly")
    axes.set_title(f"{spec.label}" + (f" ({spec.unit})" if spec.unit else ""), fontsize=10)
    axes.tick_params(labelsize=8)
    axes.legend(fontsize=7, loc="upper left", ncol=4, frameon=False)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def involved_metrics(anomalies: list[Anomaly], evidence: list[dict], columns: list[str]) -> list[str]:
    """The metrics a report plots: those with anomalies, then those named as evidence."""
    out = []
    for metric in [a.metric for a in anomalies] + [e.get("feature") for e in evidence]:
        if metric in columns and metric not in out:
            out.append(metric)
    return out
