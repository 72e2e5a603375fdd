"""Settings: the one place that maps canonical metrics onto CloudWatch and holds every knob.

Read from the environment (prefix ``AIOPS_``, nested with ``__``), a ``.env`` file, or passed
in by the CLI; unsafe or impossible values are refused at start-up with the field named.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.clock import SystemClock

MIN_TOKEN_LENGTH = 16


class Mode(str, Enum):
    AUTO = "auto"
    APPROVE = "approve"
    DRY_RUN = "dry-run"


class StoreKind(str, Enum):
    """Where the incident log lives: an embedded SQLite file, or a DynamoDB table replicas share."""

    SQLITE = "sqlite"
    DYNAMODB = "dynamodb"


class MetricMapping(BaseModel, frozen=True):
    """Where a canonical metric lives in CloudWatch.

    ``dimensions`` maps a CloudWatch dimension name to the ServiceTarget field that fills it.
    """

    namespace: str
    metric_name: str
    statistic: str = "Average"
    dimensions: dict[str, str]


class ServiceTarget(BaseModel, frozen=True):
    """One ECS service behind an ALB: what the metrics' dimensions and ECS calls name."""

    cluster: str = "aiops-platform-cluster"
    service: str = "aiops-platform-service"
    load_balancer: str = "app/aiops-platform-alb/50dc6c495c0c9188"
    target_group: str = "targetgroup/aiops-platform-tg/73e2d6bc24d8a067"

    def dimension_value(self, field: str) -> str:
        try:
            return str(getattr(self, field))
        except AttributeError:
            raise ValueError(f"metric dimension refers to unknown target field {field!r}") from None


_ECS = {"ClusterName": "cluster", "ServiceName": "service"}
_ALB = {"LoadBalancer": "load_balancer", "TargetGroup": "target_group"}

CANONICAL_METRICS: dict[str, MetricMapping] = {
    "cpu_utilization": MetricMapping(namespace="AWS/ECS", metric_name="CPUUtilization", dimensions=_ECS),
    "memory_utilization": MetricMapping(namespace="AWS/ECS", metric_name="MemoryUtilization",
                                        dimensions=_ECS),
    "error_count": MetricMapping(namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count",
                                 statistic="Sum", dimensions=_ALB),
    "response_time": MetricMapping(namespace="AWS/ApplicationELB", metric_name="TargetResponseTime",
                                   dimensions=_ALB),
    "request_count": MetricMapping(namespace="AWS/ApplicationELB", metric_name="RequestCount",
                                   statistic="Sum", dimensions=_ALB),
}


class Settings(BaseSettings):
    """Every setting of the platform, with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="AIOPS_", env_nested_delimiter="__",
                                      env_file=".env", extra="ignore")

    data_dir: Path = Path("aiops-data")
    target: ServiceTarget = ServiceTarget()
    metrics: dict[str, MetricMapping] = Field(default_factory=lambda: dict(CANONICAL_METRICS))
    period_seconds: int = Field(60, ge=60, description="scoring period; CloudWatch's finest standard")
    threshold: float = Field(4.0, gt=0, description="detector score above which a point is anomalous")
    open_after: int = Field(2, ge=1, description="anomalous periods within the grouping window "
                                                 "that open an incident")
    group_window: int = Field(3, ge=1, description="periods in the alarm-grouping window")
    verify_after_minutes: float = Field(15, gt=0)
    history_days: int = Field(14, ge=1)
    clock_offset_seconds: float = Field(0.0, description="shift of 'now' from the wall clock: the "
                                        "offset `aiops simulate run --start` prints, so every "
                                        "command agrees with a simulator running at another time")
    mode: Mode = Mode.AUTO
    playbook: Path | None = None
    store: StoreKind = Field(StoreKind.SQLITE, description="the incident log: `sqlite` (DATA_DIR/"
                             "incidents.sqlite) or `dynamodb` (one table every replica, the API and "
                             "the Lambdas share)")
    dynamodb_table: str = Field("aiops-incidents", pattern=r"^[A-Za-z0-9_.-]{3,255}$",
                                description="the DynamoDB table of the incident log (store=dynamodb)")
    dynamodb_retention_days: int = Field(400, ge=7, description="days a DynamoDB item lives (TTL) "
                                         "after it is written; an incident's after it is resolved")
    replica_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:/-]{1,128}$",
                                   description="this watcher replica's name in the service leases "
                                   "(AIOPS_REPLICA_ID) [host name and process id]")
    lease_seconds: int = Field(150, ge=60, description="a replica owns a service this long after its "
                               "last renewal (store=dynamodb): the longest a dead replica's services "
                               "wait for another to take them over")
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="bearer tokens the HTTP API accepts on mutating endpoints "
                                          "(AIOPS_API_TOKENS: comma-separated or a JSON list)")
    api_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body the "
                                                                         "HTTP API reads (413 above)")
    api_max_points: int = Field(100_000, ge=1, description="most metric points one /v1/score request "
                                                           "may carry")
    signing_key: SecretStr | None = Field(None, description="the key that signs and checks model "
                                          "bundles (AIOPS_SIGNING_KEY, 32+ characters); else "
                                          "signing_secret_id, else <data dir>/signing.key")
    signing_secret_id: str | None = Field(None, description="an AWS Secrets Manager secret holding "
                                          "the signing key (AIOPS_SIGNING_SECRET_ID)")
    allow_unsigned: bool = Field(False, description="load model bundles whose signature is missing "
                                 "or wrong (AIOPS_ALLOW_UNSIGNED; local experiments only)")

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """Accept ``a,b`` or a JSON list from the environment; refuse empty or short tokens."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                value = json.loads(text)
            else:
                value = [t.strip() for t in text.split(",") if t.strip()]
        for token in value if isinstance(value, list) else []:
            raw = token.get_secret_value() if isinstance(token, SecretStr) else str(token)
            if len(raw) < MIN_TOKEN_LENGTH:
                raise ValueError(f"an API token must be at least {MIN_TOKEN_LENGTH} characters "
                                 "(e.g. `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.open_after > self.group_window:
            raise ValueError(f"open_after ({self.open_after}) cannot exceed group_window "
                             f"({self.group_window})")
        return self

    @property
    def clock(self) -> SystemClock:
        """The clock every door reads 'now' from (the wall clock, shifted by the offset)."""
        return SystemClock(self.clock_offset_seconds)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "incidents.sqlite"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"
