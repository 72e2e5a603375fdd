"""The playbook: the response matrix and the escalation path, loaded from an editable file."""

from __future__ import annotations

import tomllib
from enum import Enum
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator


class Severity(str, Enum):
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class Action(str, Enum):
    SCALE_UP = "scale_up"
    RESTART_TASKS = "restart_tasks"
    ROLLBACK = "rollback"
    ALERT_ONLY = "alert_only"


ROOT_CAUSES = ("high_cpu", "high_cpu_with_errors", "memory_leak", "error_rate_low",
               "error_rate_high", "slow_response", "unknown")


class Cause(BaseModel, frozen=True):
    """One row of the response matrix."""

    id: str
    title: str
    severity: Severity
    auto_action: Action
    manual_action: str

    @field_validator("id")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ROOT_CAUSES:
            raise ValueError(f"unknown root cause {value!r}; known: {', '.join(ROOT_CAUSES)}")
        return value


class EscalationStep(BaseModel, frozen=True):
    after_minutes: float = Field(ge=0)
    role: str = Field(min_length=1)


class OomPolicy(BaseModel, frozen=True):
    """When a memory leak's forecast time to OOM restarts the tasks before the anomaly detector
    would (the ``[oom]`` table).

    ``horizon_minutes``: restart when even the slowest plausible trend (the forecast interval's
    far end) reaches ``limit_percent`` within this many minutes; 0 turns the pre-emptive restart
    off (a memory_leak diagnosis still carries the forecast). ``lookback_minutes``: the history
    the trend is read from; ``confidence``: the level of the forecast's interval.
    """

    model_config = {"extra": "forbid"}

    limit_percent: float = Field(100.0, gt=0, le=100)
    horizon_minutes: float = Field(60.0, ge=0)
    lookback_minutes: float = Field(180.0, ge=15)
    confidence: float = Field(0.9, gt=0, lt=1)


class Playbook(BaseModel, frozen=True):
    """The response matrix as data: causes, the error boundary, the guards and the escalation path.

    ``recent_deployment_minutes``: a deployment this recent, with more than ``error_boundary``
    errors above their baseline, makes the cause ``error_rate_high`` whatever else is seen.
    ``min_confidence``: below it a classifier answers ``unknown`` (alert only).
    ``min_confidence_destructive``: a restart or a rollback needs at least this confidence.
    ``skip_after_failures``: an automatic action whose newest this-many verified outcomes for the
    same cause on the same service all failed is skipped, and the incident escalated at once
    (:mod:`rca.outcomes`); 0 never skips.
    """

    error_boundary: int = Field(ge=0)
    recent_deployment_minutes: float = Field(60.0, ge=0)
    min_confidence: float = Field(0.6, ge=0, le=1)
    min_confidence_destructive: float = Field(0.85, ge=0, le=1)
    skip_after_failures: int = Field(3, ge=0)
    causes: list[Cause]
    escalation: list[EscalationStep] = Field(min_length=1)
    oom: OomPolicy = OomPolicy()

    @model_validator(mode="after")
    def _complete(self) -> "Playbook":
        ids = [c.id for c in self.causes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"root cause(s) listed twice: {', '.join(dupes)}")
        missing = [c for c in ROOT_CAUSES if c not in ids]
        if missing:
            raise ValueError(f"playbook lacks root cause(s): {', '.join(missing)}")
        if self.cause("unknown").auto_action is not Action.ALERT_ONLY:
            raise ValueError("the 'unknown' cause must be alert_only: never act when unsure")
        if self.cause("error_rate_low").auto_action is not Action.ALERT_ONLY:
            raise ValueError("'error_rate_low' may only alert")
        if self.min_confidence_destructive < self.min_confidence:
            raise ValueError("min_confidence_destructive must be at least min_confidence: a restart "
                             "or a rollback needs more certainty than an alert")
        steps = [s.after_minutes for s in self.escalation]
        if steps != sorted(steps):
            raise ValueError("escalation steps must be in order of after_minutes")
        return self

    def cause(self, cause_id: str) -> Cause:
        for cause in self.causes:
            if cause.id == cause_id:
                return cause
        raise KeyError(f"no playbook row for root cause {cause_id!r}")


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message names the file and the field."""


def load_playbook(path: str | Path | None = None) -> Playbook:
    """Load and validate the playbook at ``path`` (the packaged default when None)."""
    if path is None:
        text = resources.files("rca").joinpath("playbook.toml").read_text()
        where = "the packaged playbook"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PlaybookError(f"cannot read playbook {where}: {exc.strerror}") from None
    try:
        return Playbook.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise PlaybookError(f"playbook {where} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'playbook'}: {e['msg']}"
                             for e in exc.errors())
        raise PlaybookError(f"playbook {where} is invalid: {problems}") from None
