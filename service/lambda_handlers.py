"""AWS Lambda handlers: the payloads operators already send, the same use cases as the CLI and API.

Each handler accepts its payload either as the event itself (a direct invocation) or as the
JSON ``body`` of an API Gateway / function-URL event, and answers in the Lambda proxy shape
(``statusCode``, ``headers``, ``body`` as JSON text): 200 with the result, 422 with the field
at fault for bad input. Clients and models are made on the first call and kept for warm starts,
never at import time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sys
from collections.abc import Callable
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
    from service.requests import check_depth, load_json

    if isinstance(event, dict) and "body" in event and ("requestContext" in event or "headers" in event
                                                        or "httpMethod" in event):
        body = event.get("body")
        if body is None:
            body = ""
        if not isinstance(body, str):
            raise PayloadError("body", f"must be JSON text, got {type(body).__name__}")
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PayloadError("body", f"isBase64Encoded, but not valid base64: {exc}") from None
        return load_json(body, "body")
    return check_depth(event)


def _platform():
    """The platform, built once per container from the environment (``AIOPS_*``; the watch config
    from the file ``AIOPS_CONFIG`` names, else the TOML text of ``AIOPS_CONFIG_TOML``).

    Kept for warm starts, and built anew only if that environment changes (it does not in a
    Lambda container; it does between tests). In Lambda only /tmp is writable, so a relative
    data directory goes there.
    """
    import os

    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AIOPS_", "AWS_"))))
    if _cache.get("environment") != environment:
        from pathlib import Path

        from service.bootstrap import build_platform
        from service.settings import Settings

        try:
            settings = Settings()
            if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not settings.data_dir.is_absolute():
                settings = settings.model_copy(update={"data_dir": Path("/tmp") / settings.data_dir})
            config = os.environ.get("AIOPS_CONFIG")
            if config is None and os.environ.get("AIOPS_CONFIG_TOML"):
                from service.watch_config import parse_watch_config

                config = parse_watch_config(os.environ["AIOPS_CONFIG_TOML"])
            _cache["platform"] = build_platform(settings, config, notify_stream=sys.stdout,
                                                door="aiops Lambda")
        except (ValueError, OSError) as exc:  # ConfigError, a refused setting, an unusable store
            raise Misconfigured(str(exc).splitlines()[0]) from None
        _cache["environment"] = environment
    return _cache["platform"]


class Misconfigured(Exception):
    """The function's own configuration (environment, AIOPS_CONFIG) is unusable: a 500 naming it."""


def _answers(handler: Callable[[Any, Any], dict]) -> Callable[..., dict]:
    """Bad input answers 422 naming the field; a broken configuration 500 naming it."""
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any = None) -> dict:
        try:
            return handler(event, context)
        except PayloadError as exc:
            return _error(422, exc.field, exc.message)
        except Misconfigured as exc:
            return _error(500, "configuration", str(exc))
    return wrapper


@_answers
def rca_handler(event: Any, context: Any = None) -> dict:
    """Root cause of ``{"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}``."""
    from service import usecases

    payload = _payload(event)
    diagnosis, source = usecases.diagnose(_platform(), payload)
    return _response(200, {**diagnosis.to_dict(), "classifier": source})


# ---------------------------------------------------------------------- rollback


@_answers
def rollback_handler(event: Any, context: Any = None) -> dict:
    """Roll an ECS service back to its previous task-definition revision, guarded and logged.

    Takes the seed's ``{"cluster": ..., "service": ..., "reason": "Test"}`` (optionally
    ``to_revision`` and ``request_id``) and runs it through the same use case as
    ``aiops remediate rollback`` and ``POST /v1/remediate``: the mode (approve mode holds a
    rollback for a person; dry-run changes nothing), the allow-list (``AIOPS_CONFIG``'s, else
    the settings' target), one action in flight, the cooldown and daily cap (an alarm may invoke
    it again and again), no rollback while a deployment rolls out or without a previous revision.
    A retried invocation (same ``aws_request_id``, or the same ``request_id``) rolls back once;
    the key is the Lambda's own namespace, so it can never match one of the platform's actions.

    Answers 200 (rolled back, or a dry run), 409 (a guardrail or approve mode refused; ``reason``
    names it), 422 (bad payload; the field is named), 502 (ECS refused or failed), 500 (the
    function's own configuration is unusable; named).

    IAM: ecs:DescribeServices, ecs:ListTaskDefinitions, ecs:UpdateService.
    """
    from service import usecases
    from service.requests import RollbackCommand, parse

    command = parse(RollbackCommand, _payload(event)).action()
    platform = _platform()
    invocation = getattr(context, "aws_request_id", None)
    outcome = usecases.request_action(platform, command, "lambda",
                                      key=f"aws-{invocation}" if invocation else None)
    body = {"cluster": command.cluster, "service": command.service, **outcome.to_dict()}
    return _response(usecases.http_status(outcome), body)
