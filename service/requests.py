"""One validated request model per operation, shared by the CLI, the HTTP API and the Lambda handlers.

Every door parses its input into these models (pydantic): the same types, bounds and sizes
everywhere, and one error type for bad input, :class:`~rca.payload.PayloadError`, naming the field
at fault (HTTP answers it 422, the CLI in one line, Lambda 422). :func:`load_json` is the one way
text becomes a payload: size and nesting depth are bounded before anything deeper runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from rca.payload import PayloadError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$"   # what ECS accepts for clusters and services
MAX_ID = 2**63 - 1                                    # SQLite's largest integer
MAX_DEPTH = 32                                        # nesting of a JSON payload
MAX_PAYLOAD_BYTES = 1_000_000

Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["aiops-platform-service"])]
Reason = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S", description="Why, for the log")]
Key = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
Count = Annotated[int, Field(strict=True, ge=0, le=10_000)]        # JSON integers only: "2" is refused
Revision = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
Id = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
ACTIONS = ("scale_up", "scale_to", "restart_tasks", "rollback")

M = TypeVar("M", bound=BaseModel)


class ActionCommand(BaseModel):
    """An ECS action on one service, judged by the guardrails and logged before and after."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"service": "aiops-platform-service", "action": "scale_up", "reason": "latency climbing"}]})

    cluster: Name | None = Field(None, description="[the server's AIOPS_TARGET__CLUSTER]")
    service: Name | None = Field(None, description="[the server's AIOPS_TARGET__SERVICE]")
    action: Literal["scale_up", "scale_to", "restart_tasks", "rollback"]
    reason: Reason
    count: Count | None = Field(None, validate_default=True,
                                description="Desired count (scale_to only)")
    to_revision: Revision | None = Field(None, description="Revision (rollback only) [the previous one]")
    incident_id: Id | None = Field(None, description="Log it on this incident's timeline")
    dry_run: bool = Field(False, strict=True, description="Decide and log; change nothing")
    request_id: Key | None = Field(None, description="Idempotency key: the same id again is one action")

    @field_validator("count")
    @classmethod
    def _count_only_for_scale_to(cls, count: int | None, info: ValidationInfo) -> int | None:
        action = info.data.get("action")
        if action == "scale_to" and count is None:
            raise ValueError("scale_to needs the desired count")
        if count is not None and action is not None and action != "scale_to":
            raise ValueError(f"only scale_to takes a count, not {action}")
        return count

    @field_validator("to_revision")
    @classmethod
    def _revision_only_for_rollback(cls, revision: int | None, info: ValidationInfo) -> int | None:
        action = info.data.get("action")
        if revision is not None and action is not None and action != "rollback":
            raise ValueError(f"only rollback takes a revision, not {action}")
        return revision

    @property
    def params(self) -> dict:
        """The action's parameters, as the executor takes them."""
        if self.action == "scale_to":
            return {"count": self.count}
        if self.action == "rollback" and self.to_revision is not None:
            return {"to_revision": self.to_revision}
        return {}


class RollbackCommand(BaseModel):
    """The rollback Lambda's payload (the seed's): ``{"cluster", "service", "reason"}``, optionally
    ``to_revision`` and ``request_id``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    cluster: Name
    service: Name
    reason: Reason
    to_revision: Revision | None = None
    request_id: Key | None = None

    def action(self) -> ActionCommand:
        return ActionCommand(cluster=self.cluster, service=self.service, action="rollback",
                             reason=self.reason, to_revision=self.to_revision,
                             request_id=self.request_id)


class PersonStep(BaseModel):
    """Who approves, acknowledges or resolves an incident (written to its timeline)."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200, pattern=r"\S", examples=["alice"])
    note: str | None = Field(None, max_length=2000)


def parse(model: type[M], payload: Any) -> M:
    """``payload`` as ``model``; a :class:`PayloadError` naming the first field at fault."""
    if not isinstance(payload, dict):
        raise PayloadError("payload", f"must be a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "payload"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field; expected {', '.join(model.model_fields)}"
        raise PayloadError(field, message) from None


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once past ``limit`` (no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_depth(value: Any, field: str = "payload", limit: int = MAX_DEPTH) -> Any:
    """``value`` itself, or a PayloadError when it nests deeper than ``limit``."""
    if _depth(value, limit) > limit:
        raise PayloadError(field, f"nested deeper than {limit} levels")
    return value


def load_json(text: str | bytes, field: str = "payload", max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Parse JSON text with bounded size and depth; a PayloadError naming ``field`` otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(field, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(text) > max_bytes:
        raise PayloadError(field, f"larger than {max_bytes} bytes")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(field, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(field, f"nested deeper than {MAX_DEPTH} levels") from None
    return check_depth(value, field)
