"""The Anomaly type and its "CPU: 60% (expected 4%)" rendering."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd

from detection.metrics import MetricSpec, spec_for


@dataclass(frozen=True)
class Anomaly:
    """One metric at one time, outside what its baseline expects.

    ``score`` is the detector's raw score (higher is more anomalous); ``lower``/``upper`` is the
    band the baseline allows at that hour of the week. ``members`` optionally lists what each
    detector of an ensemble scored the point (calibrated, [0, 1]), strongest first, so an
    operator can see which model raised it.
    """

    metric: str
    timestamp: pd.Timestamp
    value: float
    expected: float
    lower: float
    upper: float
    score: float
    label: str
    unit: str = ""
    count: bool = False
    members: tuple[tuple[str, float], ...] = ()

    @property
    def spec(self) -> MetricSpec:
        return MetricSpec(self.metric, self.label, self.unit, count=self.count)

    def render(self) -> str:
        """The operator's text: ``CPU: 60% (expected 4%)``."""
        spec = self.spec
        return f"{self.label}: {spec.format_value(self.value)} (expected {spec.format_value(self.expected)})"

    def to_dict(self) -> dict:
        """A JSON-ready dict (the timestamp as ISO 8601) with the rendered text."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}   # asdict() deep-copies: slower
        out["timestamp"] = pd.Timestamp(self.timestamp).isoformat()
        out["members"] = {name: score for name, score in self.members}
        out["text"] = self.render()
        return out

    @classmethod
    def build(cls, metric: str, timestamp, value: float, expected: float, lower: float,
              upper: float, score: float, specs: dict[str, MetricSpec] | None = None,
              members: dict[str, float] | None = None) -> "Anomaly":
        """Make an anomaly, taking label and unit from the metric's spec."""
        spec = spec_for(metric, specs)
        parts = tuple(sorted(((str(k), float(v)) for k, v in (members or {}).items()),
                             key=lambda kv: -kv[1]))
        return cls(metric, pd.Timestamp(timestamp), float(value), float(expected), float(lower),
                   float(upper), float(score), spec.label, spec.unit, spec.count, parts)
