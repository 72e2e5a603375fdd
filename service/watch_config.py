"""The watch config file: which services to watch, the mode, the guardrails and who gets paged.

A TOML file (``aiops watch --config FILE``, or ``AIOPS_CONFIG``); every table is optional and
every value is checked on load, with the file and the field named when one is wrong::

    mode = "approve"                      # auto | approve | dry-run

    [guardrails]
    allowed_services = ["prod/web", "prod/api"]   # default: exactly the services below
    max_desired_count = 12
    max_actions_per_day = 6
    respect_autoscaling = true
    [guardrails.cooldown_minutes]
    scale_up = 10
    restart_tasks = 30
    rollback = 60

    # services = ["prod/web", "prod/api"]   # short for [[services]] tables without ALB dimensions
    # cluster = "prod"; services = ["web", "api"]   # the same
    [[services]]
    cluster = "prod"
    service = "web"
    load_balancer = "app/prod-alb/50dc6c495c0c9188"
    target_group = "targetgroup/web/73e2d6bc24d8a067"
    # bundle = "models/prod--web"         # default: the service's champion model

    [notify]
    sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:aiops-escalations"
    # or one topic per role (what the stack in deploy/ makes):
    # sns_topics = {"on-call engineer" = "arn:...:aiops-on-call", "team lead" = "arn:...:aiops-team-lead"}
    webhook_url = "https://hooks.example.com/aiops"
    [notify.email]
    sender = "aiops@example.com"
    [notify.email.recipients]
    "on-call engineer" = ["oncall@example.com"]
    "team lead" = ["lead@example.com"]
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from service.guardrails import GuardrailConfig
from service.settings import Mode, ServiceTarget


class ConfigError(ValueError):
    """A watch config file that cannot be used; the message names the file and the field."""


class ServiceConfig(BaseModel, frozen=True):
    """One watched service; the ALB dimensions default to the settings' target."""

    model_config = {"extra": "forbid"}

    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    load_balancer: str | None = None
    target_group: str | None = None
    bundle: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.cluster}/{self.service}"

    def target(self, default: ServiceTarget) -> ServiceTarget:
        return ServiceTarget(cluster=self.cluster, service=self.service,
                             load_balancer=self.load_balancer or default.load_balancer,
                             target_group=self.target_group or default.target_group)


class EmailConfig(BaseModel, frozen=True):
    model_config = {"extra": "forbid"}

    sender: str = Field(min_length=3)
    recipients: dict[str, list[str]] = Field(min_length=1)

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"sender {value!r} is not an e-mail address")
        return value


class NotifyConfig(BaseModel, frozen=True):
    """The channels pages and reports go through; the console is always one of them."""

    model_config = {"extra": "forbid"}

    sns_topic_arn: str | None = None
    sns_topics: dict[str, str] = Field(default_factory=dict, description="role -> its own SNS topic")
    webhook_url: str | None = None
    email: EmailConfig | None = None

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url {value!r} must start with http:// or https://")
        return value


class WatchConfig(BaseModel, frozen=True):
    """Everything ``aiops watch`` needs beyond the settings."""

    model_config = {"extra": "forbid"}

    mode: Mode | None = None
    cluster: str | None = Field(None, min_length=1, description="the cluster of services listed by name")
    services: list[ServiceConfig] = Field(default_factory=list)
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @model_validator(mode="before")
    @classmethod
    def _short_names(cls, data: object) -> object:
        """``"cluster/service"`` is short for ``{cluster = ..., service = ...}``, and ``"service"``
        for a service of the top-level ``cluster``."""
        if not isinstance(data, dict) or not isinstance(data.get("services"), list):
            return data
        out = []
        for entry in data["services"]:
            if isinstance(entry, str):
                cluster, sep, service = entry.rpartition("/")
                cluster = cluster if sep else data.get("cluster")
                if not cluster or not service or "/" in cluster:
                    raise ValueError(f"service {entry!r} must be written cluster/service (or set "
                                     "the top-level cluster)")
                entry = {"cluster": cluster, "service": service}
            out.append(entry)
        return {**data, "services": out}

    @model_validator(mode="after")
    def _unique(self) -> "WatchConfig":
        names = [s.name for s in self.services]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"service(s) listed twice: {', '.join(twice)}")
        return self

    def watched(self) -> list[str]:
        return [s.name for s in self.services]


def load_watch_config(path: str | Path | None) -> WatchConfig:
    """Load and validate the config at ``path``; the empty config when None."""
    if path is None:
        return WatchConfig()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return parse_watch_config(text, str(path))


def parse_watch_config(text: str, path: str = "AIOPS_CONFIG_TOML") -> WatchConfig:
    """The config from TOML text (``path`` names where it came from in errors): what a container
    or a function gets in its environment (``AIOPS_CONFIG_TOML``) when it has no file."""
    try:
        return WatchConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"config {path} is invalid: {problems}") from None
