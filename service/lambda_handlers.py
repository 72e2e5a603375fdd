"""AWS Lambda handlers: the payloads operators already send, the same use cases as the CLI and API.

Each handler accepts its payload either as the event itself (a direct invocation) or as the
JSON ``body`` of an API Gateway / function-URL event, and answers in the Lambda proxy shape
(``statusCode``, ``headers``, ``body`` as JSON text): 200 with the result, 422 with the field
at fault for bad input. Clients and models are made on the first call and kept for warm starts,
never at import time.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from rca.payload import PayloadError

JSON_HEADERS = {"Content-Type": "application/json"}
_cache: dict[str, Any] = {}


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": dict(JSON_HEADERS), "body": json.dumps(body, default=str)}


def _error(status: int, field: str, message: str) -> dict:
    return _response(status, {"error": {"field": field, "message": message}})


def _payload(event: Any) -> Any:
    """The payload inside ``event``: its JSON body for HTTP events, else the event itself."""
    if isinstance(event, dict) and "body" in event and ("requestContext" in event or "headers" in event
                                                        or "httpMethod" in event):
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8")
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise PayloadError("body", f"not valid JSON: {exc}") from None
    return event


def _rca_classifier():
    """The classifier, loaded once per container (the trained bundle when present, else rules)."""
    if "rca" not in _cache:
        from rca.playbook import load_playbook
        from service.diagnose import load_rca_classifier
        from service.settings import Settings

        settings = Settings()
        _cache["rca"] = load_rca_classifier(settings, load_playbook(settings.playbook))
    return _cache["rca"]


def rca_handler(event: Any, context: Any = None) -> dict:
    """Root cause of ``{"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}``."""
    from service.diagnose import diagnose_payload

    try:
        payload = _payload(event)
        classifier, source = _rca_classifier()
        diagnosis = diagnose_payload(payload, classifier)
    except PayloadError as exc:
        return _error(422, exc.field, exc.message)
    return _response(200, {**diagnosis.to_dict(), "classifier": source})


# ---------------------------------------------------------------------- rollback

ROLLBACK_FIELDS = ("cluster", "service", "reason")
ROLLBACK_OPTIONAL = ("to_revision", "request_id")


def parse_rollback_payload(payload: Any) -> dict:
    """The rollback request in the seed's payload (plus optional ``to_revision``, ``request_id``)."""
    if not isinstance(payload, dict):
        raise PayloadError("payload", f"must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(ROLLBACK_FIELDS) - set(ROLLBACK_OPTIONAL))
    if unknown:
        raise PayloadError(unknown[0], f"unknown field; expected {', '.join(ROLLBACK_FIELDS)} and "
                                       f"optionally {', '.join(ROLLBACK_OPTIONAL)}")
    request: dict = {}
    for name in ROLLBACK_FIELDS:
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            raise PayloadError(name, "must be a non-empty string")
        request[name] = value.strip()
    revision = payload.get("to_revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)
                                 or revision < 1):
        raise PayloadError("to_revision", "must be a positive integer")
    request["to_revision"] = revision
    key = payload.get("request_id")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise PayloadError("request_id", "must be a non-empty string")
    request["request_id"] = key
    return request


def _lambda_settings():
    """Settings; in Lambda only /tmp is writable, so a relative data directory goes there."""
    import os
    from pathlib import Path

    from service.settings import Settings

    settings = Settings()
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not settings.data_dir.is_absolute():
        settings = settings.model_copy(update={"data_dir": Path("/tmp") / settings.data_dir})
    return settings


def rollback_handler(event: Any, context: Any = None) -> dict:
    """Roll an ECS service back to its previous task-definition revision, guarded and logged.

    Takes the seed's ``{"cluster": ..., "service": ..., "reason": "Test"}`` (optionally
    ``to_revision`` and ``request_id``) and runs it through the same guarded executor as
    ``aiops remediate rollback``: the allow-list (``AIOPS_CONFIG``'s, else the service named),
    one action in flight, the cooldown and daily cap (an alarm may invoke it again and again),
    no rollback while a deployment rolls out or without a previous revision. A retried
    invocation (same ``aws_request_id``, or the same ``request_id``) rolls back once.

    Answers 200 (rolled back, or a dry run), 409 (a guardrail refused; ``reason`` names it),
    422 (bad payload; the field is named), 502 (ECS refused or failed), 500 (the function's own
    configuration is unusable; named). The incident log is
    ``AIOPS_DATA_DIR`` (an EFS mount shares it with the watcher, so each sees the other's
    actions).

    IAM: ecs:DescribeServices, ecs:ListTaskDefinitions, ecs:UpdateService.
    """
    import os
    import sys

    from service.aws import ClientFactory
    from service.fleet import guarded_remediator
    from service.notify import ConsoleNotifier
    from service.settings import Mode
    from service.store import ActionRequest, IncidentStore
    from service.watch_config import load_watch_config

    try:
        request = parse_rollback_payload(_payload(event))
    except PayloadError as exc:
        return _error(422, exc.field, exc.message)
    try:
        settings = _lambda_settings()
        config = load_watch_config(os.environ.get("AIOPS_CONFIG"))
    except ValueError as exc:  # ConfigError, or a setting pydantic refused
        return _error(500, "configuration", str(exc).splitlines()[0])
    named = f"{request['cluster']}/{request['service']}"
    remediator = guarded_remediator(settings, config, ClientFactory(), IncidentStore(settings.db_path),
                                    ConsoleNotifier(sys.stdout), "on-call engineer",
                                    watched=config.watched() or [named])
    invocation = getattr(context, "aws_request_id", None)
    key = request["request_id"] or (f"lambda-{invocation}" if invocation else None)
    outcome = remediator.run(ActionRequest(
        request["cluster"], request["service"], "rollback", origin="lambda", reason=request["reason"],
        key=key, params={"to_revision": request["to_revision"]} if request["to_revision"] else {},
        dry_run=settings.mode is Mode.DRY_RUN), settings.clock())
    body = {"cluster": request["cluster"], "service": request["service"], **outcome.to_dict()}
    status = {"refused": 409, "failed": 502}.get(outcome.status, 200)
    return _response(status, body)
