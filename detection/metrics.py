"""What each signal is called, how it is shown to a person, and which way is bad.

The canonical metrics and their CloudWatch mapping are configuration (``service.settings``);
this module only holds the type and the defaults a person sees when no configuration says
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "both"]


@dataclass(frozen=True)
class MetricSpec:
    """How one canonical metric is named, rendered and judged.

    Parameters
    ----------
    name : canonical name, e.g. ``cpu_utilization``.
    label : the short name in rendered anomalies, e.g. ``CPU``.
    unit : ``%``, ``s`` or ``""`` (a count per scoring period).
    direction : which deviations are a problem: a CPU drop is not an incident.
    health : whether verification checks it; load indicators such as request counts are
        inputs, not symptoms, and stay high after a successful fix of a load surge.
    count : a count per period (errors, requests): its spread has a Poisson floor.
    min_spread : the smallest spread a baseline may have, in the metric's unit, so a flat
        history does not make every wobble an anomaly.
    """

    name: str
    label: str
    unit: str = ""
    direction: Direction = "up"
    health: bool = True
    count: bool = False
    min_spread: float = 0.5

    def format_value(self, value: float) -> str:
        """Render a value as a person reads it: ``60%``, ``1.25s``, ``14``."""
        if self.unit == "%":
            return f"{value:.0f}%"
        if self.unit == "s":
            return f"{value:.2f}s"
        if self.count:
            return f"{value:.0f}"
        return f"{value:.3g}{self.unit}"


DEFAULT_SPECS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("cpu_utilization", "CPU", "%"),
        MetricSpec("memory_utilization", "Memory", "%"),
        MetricSpec("error_count", "Errors", "", count=True, min_spread=1.0),
        MetricSpec("response_time", "Response time", "s", min_spread=0.01),
        MetricSpec("request_count", "Requests", "", direction="both", health=False, count=True,
                   min_spread=1.0),
    )
}


def spec_for(name: str, specs: dict[str, MetricSpec] | None = None) -> MetricSpec:
    """The spec of ``name``, or a neutral one for a metric configured without a spec."""
    table = DEFAULT_SPECS if specs is None else specs
    return table.get(name) or MetricSpec(name, name.replace("_", " ").capitalize(), direction="both")
