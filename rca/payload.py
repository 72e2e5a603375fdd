"""The RCA payload operators already send, parsed and checked, and turned into features.

``{"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}``: anomaly
strings ``Name: value[unit] (expected value[unit])`` for CPU, Memory, Errors, Response
time/Latency and Requests, or structured ones (``{"metric": ..., "value": ..., "expected":
...}``), plus any subset of the canonical metrics' latest values. An optional ``context``
carries what ECS knows (minutes since the last deployment, tasks stopped with OutOfMemory).

Every problem raises :class:`PayloadError` naming the field at fault (``anomalies[0]``,
``metrics.cpu_utilization`` ...): the CLI exits 2 and the HTTP API answers 422 with it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from detection.metrics import DEFAULT_SPECS, spec_for
from rca.features import EcsContext, Features, context_features, log_ratio

MAX_ANOMALIES = 1000
MAX_TEXT = 300
CONTEXT_KEYS = ("minutes_since_deployment", "oom_stopped_tasks", "running_tasks", "desired_tasks")
TOP_LEVEL = ("anomalies", "metrics", "context", "cluster", "service")

# The names a person writes before the colon, lower-cased, and the canonical metric they mean.
LABELS = {
    "cpu": "cpu_utilization", "cpu utilization": "cpu_utilization", "cpu utilisation": "cpu_utilization",
    "memory": "memory_utilization", "memory utilization": "memory_utilization",
    "memory utilisation": "memory_utilization", "mem": "memory_utilization",
    "errors": "error_count", "error count": "error_count", "5xx": "error_count",
    "5xx errors": "error_count", "error_count": "error_count",
    "response time": "response_time", "latency": "response_time", "response_time": "response_time",
    "requests": "request_count", "request count": "request_count", "request_count": "request_count",
    "cpu_utilization": "cpu_utilization", "memory_utilization": "memory_utilization",
}
# Units accepted per canonical unit, with the factor to the canonical unit.
UNIT_FACTORS = {"%": {"%": 1.0}, "s": {"s": 1.0, "ms": 0.001}, "": {"": 1.0}}

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?)"
_ANOMALY = re.compile(
    rf"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9 _/-]*?)\s*:\s*(?P<value>{_NUMBER})\s*(?P<unit>[A-Za-z%]*)\s*"
    rf"\(\s*expected\s*[:=~≈]?\s*(?P<expected>{_NUMBER})\s*(?P<eunit>[A-Za-z%]*)\s*\)\s*$",
    re.IGNORECASE)


class PayloadError(ValueError):
    """A payload that cannot be diagnosed; ``field`` names the part at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParsedAnomaly:
    metric: str
    value: float
    expected: float
    score: float | None = None


@dataclass(frozen=True)
class RcaRequest:
    """A checked payload: anomalies and metric values in canonical units, and the ECS context."""

    anomalies: list[ParsedAnomaly]
    metrics: dict[str, float]
    context: EcsContext = field(default_factory=EcsContext)

    def features(self, metrics: list[str] | None = None, error_metric: str = "error_count") -> Features:
        """The incident's features, in the same names :func:`rca.features.incident_features` uses.

        A listed anomaly is anomalous, with its ratio to the expected value; its z-score is
        unknown (NaN) unless the payload gave a score. A metric given only as a value is not
        anomalous and its expectation is unknown. Absent metrics are marked missing.
        """
        out: Features = {}
        by_metric: dict[str, ParsedAnomaly] = {}
        for anomaly in self.anomalies:  # the strongest anomaly of each metric speaks for it
            held = by_metric.get(anomaly.metric)
            if held is None or abs(log_ratio(anomaly.metric, anomaly.value, anomaly.expected)) >= \
                    abs(log_ratio(held.metric, held.value, held.expected)):
                by_metric[anomaly.metric] = anomaly
        for metric in metrics or list(DEFAULT_SPECS):
            anomaly = by_metric.get(metric)
            value = self.metrics.get(metric, anomaly.value if anomaly else None)
            out[f"{metric}_missing"] = float(value is None)
            if value is None:
                out[f"{metric}_z"] = 0.0
                continue
            out[f"{metric}_value"] = float(value)
            out[f"{metric}_anomalous"] = float(anomaly is not None)
            if anomaly is None:
                out[f"{metric}_z"] = 0.0
                continue
            out[f"{metric}_z"] = math.nan if anomaly.score is None else float(anomaly.score)
            out[f"{metric}_expected"] = anomaly.expected
            out[f"{metric}_ratio"] = anomaly.value / max(abs(anomaly.expected), 1e-9)
            out[f"{metric}_log_ratio"] = log_ratio(metric, anomaly.value, anomaly.expected)
        if f"{error_metric}_value" in out:
            out["errors_in_period"] = out[f"{error_metric}_value"]
        out.update(context_features(self.context))
        return out


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(where, f"must be a number, got {json.dumps(value, default=str)[:60]}")
    try:
        number = float(value)
    except OverflowError:   # an integer beyond any float
        raise PayloadError(where, f"must be a finite number, got one of {len(str(value))} digits") from None
    if not math.isfinite(number):
        raise PayloadError(where, f"must be a finite number, got {value}")
    return number


def _check_value(metric: str, value: float, where: str) -> None:
    if value < 0:
        kind = "a count" if spec_for(metric).count else "a measurement"
        raise PayloadError(where, f"{metric} is {kind} and cannot be negative, got {value:g}")


def _metric_name(name: str, where: str, known: list[str]) -> str:
    metric = LABELS.get(name.strip().lower(), name.strip())
    if metric not in known:
        raise PayloadError(where, f"unknown metric {name!r}; known: CPU, Memory, Errors, "
                                  f"Response time (Latency), Requests, or {', '.join(known)}")
    return metric


def _to_canonical(metric: str, number: float, unit: str, where: str) -> float:
    canonical = spec_for(metric).unit
    factors = UNIT_FACTORS.get(canonical, {canonical: 1.0})
    unit = unit.strip().lower() if unit else ""
    if unit == "" and canonical != "":
        return number  # "CPU: 60 (expected 4)": the canonical unit is understood
    if unit not in factors:
        allowed = ", ".join(repr(u) for u in factors if u) or "no unit (a count)"
        raise PayloadError(where, f"unit {unit!r} does not fit {metric}; use {allowed}")
    return number * factors[unit]


def parse_anomaly_text(text: str, where: str, known: list[str]) -> ParsedAnomaly:
    """``CPU: 60% (expected 4%)`` -> ParsedAnomaly("cpu_utilization", 60.0, 4.0)."""
    if len(text) > MAX_TEXT:
        raise PayloadError(where, f"anomaly text longer than {MAX_TEXT} characters")
    match = _ANOMALY.match(text)
    if not match:
        raise PayloadError(where, f"cannot parse {text!r}; expected 'Name: value[unit] (expected "
                                  "value[unit])', e.g. 'CPU: 60% (expected 4%)'")
    metric = _metric_name(match["name"], where, known)
    value, expected = float(match["value"]), float(match["expected"])
    for number, what in ((value, "value"), (expected, "expected value")):
        if not math.isfinite(number):
            raise PayloadError(where, f"the {what} must be a finite number, got {number}")
    unit, eunit = (match["unit"] or "").lower(), (match["eunit"] or "").lower()
    if unit and eunit and unit != eunit and {unit, eunit} != {"s", "ms"}:
        raise PayloadError(where, f"mismatched units: value in {unit!r}, expected value in {eunit!r}")
    value = _to_canonical(metric, value, unit or eunit, where)
    expected = _to_canonical(metric, expected, eunit or unit, where)
    _check_value(metric, value, where)
    _check_value(metric, expected, where)
    return ParsedAnomaly(metric, value, expected)


def _structured(item: dict, where: str, known: list[str]) -> ParsedAnomaly:
    unknown = sorted(set(item) - {"metric", "value", "expected", "unit", "score", "timestamp", "text"})
    if unknown:
        raise PayloadError(f"{where}.{unknown[0]}", "unknown field; an anomaly has metric, value, "
                                                    "expected, and optionally unit and score")
    for key in ("metric", "value", "expected"):
        if key not in item:
            raise PayloadError(f"{where}.{key}", "required")
    if not isinstance(item["metric"], str):
        raise PayloadError(f"{where}.metric", "must be a metric name")
    metric = _metric_name(item["metric"], f"{where}.metric", known)
    unit = item.get("unit") or ""
    if not isinstance(unit, str):
        raise PayloadError(f"{where}.unit", "must be a string")
    value = _to_canonical(metric, _finite(item["value"], f"{where}.value"), unit, f"{where}.unit")
    expected = _to_canonical(metric, _finite(item["expected"], f"{where}.expected"), unit,
                             f"{where}.unit")
    _check_value(metric, value, f"{where}.value")
    _check_value(metric, expected, f"{where}.expected")
    score = item.get("score")
    return ParsedAnomaly(metric, value, expected,
                         None if score is None else _finite(score, f"{where}.score"))


def parse_payload(data: Any, known_metrics: list[str] | None = None) -> RcaRequest:
    """Check a decoded JSON payload and return it in canonical units.

    Raises PayloadError naming the field: not an object, unknown keys, an empty payload,
    unparseable anomaly text, unknown metrics, NaN or infinite numbers, negative values,
    mismatched units, too many anomalies.
    """
    known = list(known_metrics or DEFAULT_SPECS)
    if not isinstance(data, dict):
        raise PayloadError("payload", f"must be a JSON object, got {type(data).__name__}")
    extra = sorted(set(data) - set(TOP_LEVEL))
    if extra:
        raise PayloadError(extra[0] or '""', f"unknown field; a payload has {', '.join(TOP_LEVEL)}")
    raw_anomalies = data.get("anomalies", [])
    raw_metrics = data.get("metrics", {})
    if not isinstance(raw_anomalies, list):
        raise PayloadError("anomalies", "must be a list of anomaly strings or objects")
    if not isinstance(raw_metrics, dict):
        raise PayloadError("metrics", "must be an object of metric name to latest value")
    if not raw_anomalies and not raw_metrics:
        raise PayloadError("payload", "empty: give at least one anomaly (e.g. \"CPU: 60% (expected "
                                      "4%)\") or one metric value")
    if len(raw_anomalies) > MAX_ANOMALIES:
        raise PayloadError("anomalies", f"{len(raw_anomalies)} anomalies; at most {MAX_ANOMALIES}")
    anomalies = []
    for i, item in enumerate(raw_anomalies):
        where = f"anomalies[{i}]"
        if isinstance(item, str):
            anomalies.append(parse_anomaly_text(item, where, known))
        elif isinstance(item, dict):
            anomalies.append(_structured(item, where, known))
        else:
            raise PayloadError(where, "must be an anomaly string or an object with metric, value, "
                                      "expected")
    metrics = {}
    for name, value in raw_metrics.items():
        where = f"metrics.{name}"
        if name not in known:
            raise PayloadError(where, f"unknown metric; known: {', '.join(known)}")
        metrics[name] = _finite(value, where)
        _check_value(name, metrics[name], where)
    return RcaRequest(anomalies, metrics, _context(data.get("context")))


def _context(raw: Any) -> EcsContext:
    if raw is None:
        return EcsContext()
    if not isinstance(raw, dict):
        raise PayloadError("context", "must be an object")
    extra = sorted(set(raw) - set(CONTEXT_KEYS))
    if extra:
        raise PayloadError("context." + (extra[0] or '""'),
                           f"unknown field; context has {', '.join(CONTEXT_KEYS)}")
    values = {}
    for key, value in raw.items():
        if value is None:
            continue
        values[key] = _finite(value, f"context.{key}")
        if values[key] < 0:
            raise PayloadError(f"context.{key}", f"cannot be negative, got {values[key]:g}")
    return EcsContext(**values)
