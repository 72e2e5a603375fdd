"""Request and response bodies of the HTTP API, as pydantic models (they are the OpenAPI schema).

What a schema can say, it says (types, required fields, finite non-negative numbers, aware and
strictly increasing timestamps, sizes); FastAPI answers anything else 422 with the field at
fault. What needs the server's state (known metrics, which services have a model) is checked
by the use cases and answered in the same shape.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WrapValidator

from service.requests import Name
from service.timestamps import remembered

MAX_SERIES = 1_000
MAX_POINTS_PER_SERIES = 10_080                        # one week of one-minute points

Value = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# Parsed once per distinct short list, with their epoch seconds (``service.timestamps``); the
# ``Timestamps`` tuple is dumped as the list the schema declares.
Stamps = Annotated[list[AwareDatetime], WrapValidator(remembered),
                   PlainSerializer(list, return_type=list[AwareDatetime])]

SCORE_EXAMPLE = {"series": [
    {"service": "aiops-platform-service", "metric": "cpu_utilization",
     "timestamps": ["2026-11-02T10:00:00Z", "2026-11-02T10:01:00Z"], "values": [31.5, 60.2]},
    {"service": "aiops-platform-service", "metric": "error_count",
     "timestamps": ["2026-11-02T10:00:00Z", "2026-11-02T10:01:00Z"], "values": [0, 2]},
]}


class SeriesIn(BaseModel):
    """One metric of one service: equally long lists of timestamps and values (one per timestamp)."""

    model_config = ConfigDict(extra="forbid")

    cluster: Name | None = Field(None, description="ECS cluster [the server's AIOPS_TARGET__CLUSTER]")
    service: Name
    metric: str = Field(min_length=1, max_length=100, examples=["cpu_utilization"],
                        description="A canonical metric the service's model scores")
    timestamps: Stamps = Field(min_length=1, max_length=MAX_POINTS_PER_SERIES,
                               description="ISO 8601 with a time zone, strictly increasing (checked "
                                           "with the known metrics, by the use case)")
    values: list[Value] = Field(min_length=1, max_length=MAX_POINTS_PER_SERIES,
                                description="Finite, non-negative, in the metric's unit")


class ScoreRequest(BaseModel):
    """A batch of metric points for one or many services."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SCORE_EXAMPLE]})

    series: list[SeriesIn] = Field(min_length=1, max_length=MAX_SERIES)


class AnomalyOut(BaseModel):
    metric: str
    timestamp: str
    value: float
    expected: float
    lower: float
    upper: float
    score: float
    label: str
    unit: str
    count: bool
    members: dict[str, float]
    text: str = Field(examples=["CPU: 60% (expected 4%)"])


class ServiceScore(BaseModel):
    cluster: str
    service: str
    model: str
    scorer: str
    points: int
    anomalies: list[AnomalyOut]


class ScoreResponse(BaseModel):
    points: int
    anomalies: int
    services: list[ServiceScore]


class RemediateResponse(BaseModel):
    cluster: str
    service: str
    action: str
    status: str = Field(description="done | dry_run | refused | failed | interrupted")
    change: str
    error: str | None = None
    reason: str | None = Field(None, description="The guardrail's reason code when refused")
    action_id: int | None = None
    started_at: str | None = None
