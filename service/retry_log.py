"""Logs AWS calls that needed botocore's retries, and those that failed after them.

Retrying itself is botocore's standard mode (``ClientFactory``: bounded attempts, exponential
backoff with jitter, a retry quota); this only makes it visible: one log line for each call that
was retried or failed, and counters a benchmark or ``aiops status`` can print.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

log = logging.getLogger("aiops.aws")


class RetryLog:
    """Counts, per ``service.Operation``, calls retried, attempts made and calls that failed.

    ``max_attempts_seen`` is the most attempts any one call took: the bound the retry
    configuration promises, measured.
    """

    def __init__(self, logger: logging.Logger = log):
        self.logger = logger
        self.calls: Counter = Counter()
        self.retried: Counter = Counter()
        self.retries: Counter = Counter()
        self.failed: Counter = Counter()
        self.max_attempts_seen = 0

    def attach(self, client: Any) -> Any:
        """Register on one boto3 client's events; returns the client."""
        service = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        events.register(f"needs-retry.{service}", self._attempt)
        events.register(f"after-call.{service}", self._after_call)
        events.register(f"after-call-error.{service}", self._after_error)
        return client

    @staticmethod
    def _name(model: Any) -> str:
        return f"{model.service_model.service_id.hyphenize()}.{model.name}"

    def _attempt(self, attempts: int = 0, request_dict: dict | None = None, **_: Any) -> None:
        if request_dict is not None:
            request_dict.setdefault("context", {})["aiops_attempts"] = attempts

    def _after_call(self, parsed: dict, model: Any, **_: Any) -> None:
        name = self._name(model)
        retries = int((parsed.get("ResponseMetadata") or {}).get("RetryAttempts", 0))
        self._count(name, retries + 1)
        error = (parsed.get("Error") or {}).get("Code")
        if error:
            self.failed[name] += 1
            self.logger.warning("%s failed with %s after %d attempt(s)", name, error, retries + 1)
        elif retries:
            self.logger.info("%s succeeded after %d retr%s", name, retries,
                             "y" if retries == 1 else "ies")

    def _after_error(self, exception: Exception, context: dict | None = None, model: Any = None,
                     **kwargs: Any) -> None:
        attempts = int((context or {}).get("aiops_attempts", 1))
        name = kwargs.get("event_name", "aws").split(".", 1)[-1]
        self._count(name, attempts)
        self.failed[name] += 1
        self.logger.warning("%s failed after %d attempt(s): %s", name, attempts, exception)

    def _count(self, name: str, attempts: int) -> None:
        self.calls[name] += 1
        if attempts > 1:
            self.retried[name] += 1
            self.retries[name] += attempts - 1
        self.max_attempts_seen = max(self.max_attempts_seen, attempts)

    def summary(self) -> dict:
        return {"calls": sum(self.calls.values()), "retried_calls": sum(self.retried.values()),
                "retries": sum(self.retries.values()), "failed_calls": sum(self.failed.values()),
                "max_attempts_per_call": self.max_attempts_seen}
