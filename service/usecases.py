"""The use cases every door calls: the CLI, the HTTP API and the Lambda handlers only parse, call
and format.

They hold the policy, so it is the same whichever door a request comes through:

- **mode**: dry-run decides and logs without changing anything; approve mode holds the actions of
  the playbook's CRITICAL rows for a person (the guardrails refuse them ``approval_required``
  from every door; approving the incident lets the watcher run it);
- **guardrails**: every action goes through the platform's one guarded remediator;
- **idempotency**: a caller's key lives in its door's namespace (``api:...``, ``lambda:...``,
  ``manual:...``); the platform's own keys (``incident-N``) have no colon, so no caller can
  name one and suppress the platform's own action;
- **resolve** writes and sends the incident's RCA report, whoever resolves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rca.diagnosis import Diagnosis
from service.bootstrap import Platform
from service.incident import IncidentStateError
from service.remediation import Outcome
from service.reporting import resolve_and_report
from service.requests import ActionCommand
from service.settings import Settings
from service.store import ActionRequest, Incident

if TYPE_CHECKING:
    from service.file_detection import FileResult
    from service.scoring import Series, ServiceModels, ServiceResult

DOORS = ("manual", "api", "lambda")    # the origins of actions a caller asks for
STATUS_CODES = {"refused": 409, "failed": 502}   # an outcome's HTTP status (else 200)


def caller_key(origin: str, key: str | None) -> str | None:
    """A caller's idempotency key in its door's namespace (platform keys have no colon)."""
    if origin not in DOORS:
        raise ValueError(f"unknown door {origin!r}; known: {', '.join(DOORS)}")
    return None if key is None else f"{origin}:{key}"


def http_status(outcome: Outcome) -> int:
    """200 done or dry run, 409 refused by a guardrail or by approve mode, 502 ECS failed."""
    return STATUS_CODES.get(outcome.status, 200)


def request_action(platform: Platform, command: ActionCommand, origin: str,
                   key: str | None = None) -> Outcome:
    """Run a caller's action (``origin``: manual, api or lambda) through the platform's policy.

    ``key`` is the idempotency key when the door has one of its own (a Lambda invocation id);
    else the command's ``request_id``. Raises KeyError for an unknown incident, before any action.
    """
    target = platform.settings.target
    if command.incident_id is not None:
        platform.store.get(command.incident_id)
    dry_run = command.dry_run or platform.remediator().dry_run
    request = ActionRequest(command.cluster or target.cluster, command.service or target.service,
                            command.action, origin=origin, incident_id=command.incident_id,
                            reason=command.reason.strip(), params=command.params,
                            key=caller_key(origin, command.request_id or key), dry_run=dry_run)
    return platform.remediator(dry_run).run(request, platform.clock())


def approve(platform: Platform, incident_id: int, by: str) -> Incident:
    """Approve the action an incident waits for; the watcher runs it on its next tick, guarded."""
    return platform.store.approve(incident_id, platform.clock(), by)


def acknowledge(platform: Platform, incident_id: int, by: str) -> Incident:
    """Someone owns the incident: escalation stops paging."""
    return platform.store.acknowledge(incident_id, platform.clock(), by)


def resolve(platform: Platform, incident_id: int, by: str, note: str = "") -> tuple[Incident, str | None]:
    """Resolve by hand and send the RCA report to the on-call role; the report's message id."""
    return resolve_and_report(platform.store, platform.notifier, incident_id, by, note or "",
                              platform.on_call, platform.settings.reports_dir, platform.clock())


def alert(platform: Platform, incident_id: int, by: str, note: str = "") -> Outcome:
    """Page the on-call role now with an open incident's diagnosis (the playbook's alert, asked
    for by a person); logged on its timeline. Raises KeyError for an unknown incident and
    IncidentStateError for one that is closed or not yet diagnosed."""
    incident = platform.store.get(incident_id)
    if not incident.status.is_open:
        raise IncidentStateError(f"incident {incident_id} is {incident.status}; "
                                 "there is nothing to page about")
    if incident.diagnosis is None:
        raise IncidentStateError(f"incident {incident_id} has no diagnosis yet; page when it has one")
    return platform.remediator().alert(incident_id, incident.diagnosis, platform.clock(), by=by, note=note)


def diagnose(platform: Platform, payload: Any) -> tuple[Diagnosis, str]:
    """The root cause of an operator's payload, and which classifier named it."""
    from service.diagnose import diagnose_payload
    from service.requests import check_depth

    classifier, source = platform.classifier()
    return diagnose_payload(check_depth(payload), classifier), source


def score(models: ServiceModels, series: Sequence[Series], settings: Settings) -> list[ServiceResult]:
    """Score metric points with each service's champion model (``POST /v1/score``).

    Only the configured metrics, at most ``settings.api_max_points`` points; raises PayloadError
    (bad input, named) or NoModelError (a service without a model) before anything is scored.
    """
    from service.scoring import score_series

    return score_series(series, models, list(settings.metrics), settings.api_max_points)


def detect_file(source: Path, output: Path, threshold: float | None = None) -> FileResult:
    """Score one metric file row by row as a live stream would have, and write it with
    ``anomaly_score`` and ``anomaly`` appended (``aiops detect``); raises UnusableInput."""
    from service.file_detection import detect_file as run

    return run(source, output, threshold)
