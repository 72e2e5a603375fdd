"""AWS API faults, injected the way a failing endpoint would produce them.

A ``before-send`` hook on a boto3 client answers some requests itself, before they leave the
process: a throttling error, a 5xx, an access-denied error, or a read timeout. botocore's own
retry logic then sees them exactly as it would see AWS's, so the code under test retries,
gives up and logs as it would in production. The plan is data: a rate per kind for random
faults (seeded), or a queue of faults for the next calls of one operation.
"""

from __future__ import annotations

import json
import random
from collections import Counter, deque
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

KINDS = ("throttling", "server_error", "timeout", "access_denied")

_JSON_ERRORS = {
    "throttling": (400, "ThrottlingException", "Rate exceeded"),
    "server_error": (500, "InternalFailure", "The request processing has failed"),
    "access_denied": (400, "AccessDeniedException", "User is not authorized to perform this action"),
}
_QUERY_ERRORS = {
    "throttling": (400, "Throttling", "Rate exceeded"),
    "server_error": (500, "InternalFailure", "The request processing has failed"),
    "access_denied": (403, "AccessDenied", "User is not authorized to perform this action"),
}


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: Any):
        yield self.data


class ApiFaults:
    """Injects faults into the AWS calls of the clients it is attached to.

    Parameters
    ----------
    rates : probability per call of each fault kind (``{"throttling": 0.1, ...}``).
    operations : only calls whose ``service.Operation`` (e.g. ``ecs.UpdateService``) or
        service (``ecs``) is listed get random faults; every call when None.
    seed : fixes the random draws.
    """

    def __init__(self, rates: dict[str, float] | None = None, operations: list[str] | None = None,
                 seed: int = 0):
        unknown = [k for k in (rates or {}) if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
        self.rates = dict(rates or {})
        self.operations = set(operations) if operations is not None else None
        self.rng = random.Random(seed)
        self.queued: dict[str, deque] = {}
        self.injected: Counter = Counter()
        self.enabled = True

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_id.hyphenize()
        protocol = client.meta.service_model.resolved_protocol \
            if hasattr(client.meta.service_model, "resolved_protocol") else client.meta.service_model.protocol
        client.meta.events.register(f"before-send.{service}",
                                    lambda request, event_name, **_: self._before_send(
                                        request, event_name, protocol))
        return client

    def queue(self, operation: str, *kinds: str) -> None:
        """Make the next calls of ``operation`` (``ecs.UpdateService``) fail with ``kinds``, in order."""
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        self.queued.setdefault(operation, deque()).extend(kinds)

    def _pick(self, operation: str) -> str | None:
        queued = self.queued.get(operation)
        if queued:
            return queued.popleft()
        if not self.enabled or not self.rates:
            return None
        service = operation.split(".", 1)[0]
        if self.operations is not None and operation not in self.operations \
                and service not in self.operations:
            return None
        draw = self.rng.random()
        for kind, rate in self.rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    def _before_send(self, request: Any, event_name: str, protocol: str) -> AWSResponse | None:
        _, service, op = event_name.split(".", 2)
        operation = f"{service}.{op}"
        kind = self._pick(operation)
        if kind is None:
            return None
        self.injected[(operation, kind)] += 1
        if kind == "timeout":
            raise ReadTimeoutError(endpoint_url=request.url, error="injected read timeout")
        return _response(request.url, kind, protocol)

    def summary(self) -> dict:
        by_kind: Counter = Counter()
        for (_, kind), n in self.injected.items():
            by_kind[kind] += n
        return dict(by_kind)


def _response(url: str, kind: str, protocol: str) -> AWSResponse:
    if protocol in ("json", "rest-json"):
        status, code, message = _JSON_ERRORS[kind]
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "injected",
                   "x-amzn-query-error": f"{code};Sender"}
    else:
        status, code, message = _QUERY_ERRORS[kind]
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>injected</RequestId>"
                f"</ErrorResponse>").encode()
        headers = {"Content-Type": "text/xml", "x-amzn-RequestId": "injected"}
    return AWSResponse(url, status, headers, _Body(body))
