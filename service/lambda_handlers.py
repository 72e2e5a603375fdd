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
