"""Plots of an incident from the incident log alone: its recorded metric windows and anomalies.

The dashboard serves them and the RCA report embeds them; both read the log, so the plots
outlive CloudWatch's retention and the demo's local endpoint.
"""

from __future__ import annotations

import pandas as pd

from detection.anomaly import Anomaly
from rca.plots import metric_plot
from service.metric_window import incident_series
from service.store import IncidentStore


def recorded_series(events: list[dict]) -> dict[str, pd.DataFrame]:
    """Each metric's recorded window (observed, expected, lower, upper), {} when damaged."""
    try:
        return incident_series(events)
    except ValueError:  # a damaged window: the page still shows, with the anomalies only
        return {}


def plot_png(store: IncidentStore, incident_id: int, metric: str) -> bytes:
    """The PNG of one metric of an incident: the recorded window against its band, anomalies in red.

    Anomalous points outside the recorded windows (an escalated incident keeps collecting them)
    are drawn with the band they were judged by, and so is everything of an incident logged
    before windows were kept. Raises KeyError when the incident is unknown or has nothing to
    plot for ``metric``.
    """
    try:
        store.get(incident_id)
    except KeyError:
        raise KeyError(f"no incident {incident_id}") from None
    rows = [a for a in store.anomalies(incident_id) if a["metric"] == metric]
    marks = [Anomaly.build(a["metric"], a["timestamp"], a["value"], a["expected"], a["lower"],
                           a["upper"], a["score"]) for a in rows]
    points = pd.DataFrame({"observed": [a["value"] for a in rows],
                           **{c: [a[c] for a in rows] for c in ("expected", "lower", "upper")}},
                          index=pd.DatetimeIndex([pd.Timestamp(a["timestamp"]) for a in rows]),
                          dtype=float)
    window = recorded_series(store.events(incident_id)).get(metric)
    if window is None and points.empty:
        raise KeyError(f"incident {incident_id} has no {metric} data")
    frame = points if window is None else window.combine_first(points)
    frame = frame.sort_index()
    return metric_plot(metric, frame["observed"], frame["expected"], frame["lower"], frame["upper"], marks)
