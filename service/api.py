"""The HTTP API: a FastAPI app made by one factory from settings (OpenAPI at /docs).

``create_app(settings)`` builds what the routes share once (:class:`ApiContext`: the champion
model of every service, the root-cause classifier, the incident log, the metrics registry, the
guarded remediator made on first use) and mounts one router per concern. Routes call the same
use-case functions as the CLI and the Lambda handlers. Every mutating route depends on the
bearer-token guard (:mod:`service.http_auth`). Bad input is answered 4xx with the field at
fault, in FastAPI's usual ``detail`` shape: 422 for invalid content, 404 for a service with no
model or an unknown incident, 413 for a body above ``api_max_body_bytes``.

Another router (a dashboard page, say) mounts with one line in ``create_app``; it finds the
shared pieces on ``app.state.context``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from rca.diagnosis import RootCauseClassifier
from rca.payload import PayloadError
from service import usecases
from service.api_schemas import RemediateResponse, ScoreRequest, ScoreResponse
from service.bootstrap import Platform, build_platform
from service.clock import Clock
from service.dashboard import dashboard_router
from service.http_auth import bearer_auth
from service.http_metrics import ApiMetrics
from service.requests import MAX_ID, ActionCommand, PersonStep
from service.scoring import NoModelError, Series, ServiceModels, load_service_models
from service.settings import Settings
from service.store import STATUSES, IncidentStateError, IncidentStore

SEED_EXAMPLE = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}


# ---------------------------------------------------------------------- shared pieces


@dataclass
class ApiContext:
    """Everything the routes share, built once per app: the platform (log, remediator, classifier,
    clock) and what only HTTP has (the served models, the metrics registry, the token guard)."""

    platform: Platform
    models: ServiceModels
    metrics: ApiMetrics
    require_token: Callable[..., None]

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    @property
    def store(self) -> IncidentStore:
        return self.platform.store

    @property
    def clock(self) -> Clock:
        return self.platform.clock


def _field_error(status: int, field_path: str, message: str) -> JSONResponse:
    loc = ["body", *field_path.replace("]", "").replace("[", ".").split(".")]
    return JSONResponse(status_code=status, content={"detail": [
        {"loc": [int(p) if p.isascii() and p.isdigit() else p for p in loc if p], "msg": message,
         "type": "value_error"}]})


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as text: JSON has no NaN, and an error must still render."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, except that an offending NaN or infinity is echoed as text (FastAPI's own
    handler fails to render it and answers 500)."""
    errors = []
    for error in exc.errors():
        context = error.get("ctx")
        if isinstance(context, dict) and isinstance(context.get("error"), Exception):
            error = {**error, "ctx": {**context, "error": str(context["error"])}}
        errors.append(error)
    return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(errors))})


async def _payload_error(request: Request, exc: PayloadError) -> JSONResponse:
    return _field_error(422, exc.field, exc.message)


async def _no_model(request: Request, exc: NoModelError) -> JSONResponse:
    return _field_error(404, exc.field, exc.message)


# ---------------------------------------------------------------------- routers


# A request of at most this many points is scored on the event loop itself: with ensemble
# champions 500 points (20 services x 5 metrics x 5 minutes) take about 5 ms of CPU, and the hop
# to the thread pool and back cost more than it spared (`aiops benchmark load --detector
# ensemble --rate 100`: 7.5 -> 7.2 ms of server CPU a request, p99 175 -> 27 ms); a larger
# request goes to the thread pool, so the loop keeps answering others while it is scored.
INLINE_POINTS = 1_000


def score_router(ctx: ApiContext) -> APIRouter:
    """POST /v1/score: metric points in, anomalies with their explanation out."""
    router = APIRouter(tags=["score"])

    @router.post("/v1/score", response_model=ScoreResponse, summary="Score metric points",
                 responses={404: {"description": "A service has no model loaded"},
                            413: {"description": "Body larger than the server's limit"}})
    async def score(request: ScoreRequest) -> dict:
        """Score a batch of metric points (one or many services) with each service's champion
        model; every point above its baseline's band comes back as an anomaly with its text
        (``CPU: 60% (expected 4%)``)."""
        started = time.perf_counter()
        default_cluster = ctx.settings.target.cluster
        series = [Series(s.cluster or default_cluster, s.service, s.metric, s.timestamps, s.values)
                  for s in request.series]
        points = sum(len(s.values) for s in series)
        if ctx.models.all_fast or points <= INLINE_POINTS:   # cheaper than a hop to the thread pool
            results = usecases.score(ctx.models, series, ctx.settings)
        else:                     # a long scoring (ms per hundred points): off the event loop
            results = await run_in_threadpool(usecases.score, ctx.models, series, ctx.settings)
        out = [r.to_dict() for r in results]
        found = [a for r in results for a in r.anomalies]
        metrics = ctx.metrics
        metrics.latency.observe(time.perf_counter() - started)
        metrics.points.inc(points)
        for anomaly in found:
            metrics.anomalies.labels(anomaly.metric).inc()
        return {"points": points, "anomalies": len(found), "services": out}

    return router


def rca_router(ctx: ApiContext) -> APIRouter:
    """POST /v1/rca: the operator's payload in, the diagnosis contract out."""
    router = APIRouter(tags=["rca"])

    @router.post("/v1/rca", summary="Name the root cause of an incident")
    def rca(payload: Any = Body(..., examples=[SEED_EXAMPLE])) -> dict:  # noqa: B008 - FastAPI idiom
        """Anomaly strings (``CPU: 60% (expected 4%)``) or objects, metric values, optional ECS
        context -> root cause, severity, actions, confidence, explanation, evidence."""
        diagnosis, source = usecases.diagnose(ctx.platform, payload)
        return {**diagnosis.to_dict(), "classifier": source}

    return router


def remediate_router(ctx: ApiContext) -> APIRouter:
    """POST /v1/remediate: a guarded ECS action (bearer token required)."""
    router = APIRouter(tags=["remediate"], dependencies=[Depends(ctx.require_token)])

    @router.post("/v1/remediate", response_model=RemediateResponse,
                 summary="Run a guarded ECS action on a service",
                 responses={401: {"description": "Missing or invalid bearer token"},
                            404: {"description": "Unknown incident"},
                            409: {"description": "Refused by a guardrail or by approve mode"},
                            502: {"description": "ECS refused or failed"}})
    def remediate(body: ActionCommand) -> JSONResponse:
        """Scale up, scale to N, restart tasks or roll back one service, through the same guarded
        executor as ``aiops remediate`` and the rollback Lambda: the allow-list, one action in
        flight, the cooldown and daily cap (an HTTP caller may be a script in a loop), the
        desired-count and autoscaling caps, the rollback rules. ``dry-run`` mode (or
        ``dry_run``) decides and logs without changing anything; ``approve`` mode leaves the
        actions of CRITICAL rows (restart, rollback) to a person. 200 done or dry run, 409
        refused (``reason`` names the rule), 502 ECS failed."""
        try:
            outcome = usecases.request_action(ctx.platform, body, "api")
        except KeyError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None
        held = outcome.reason == "approval_required"
        ctx.metrics.remediations.labels(body.action, "approval_required" if held else outcome.status).inc()
        target = ctx.settings.target
        base = {"cluster": body.cluster or target.cluster, "service": body.service or target.service,
                "action": body.action}
        return JSONResponse(status_code=usecases.http_status(outcome),
                            content={**base, **outcome.to_dict()})

    return router


IncidentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The incident's id")]
IncidentStatus = Literal[STATUSES]


def incidents_router(ctx: ApiContext) -> APIRouter:
    """GET /v1/incidents, /v1/incidents/{id}; approve, acknowledge, resolve (bearer token)."""
    router = APIRouter(tags=["incidents"])
    guarded = [Depends(ctx.require_token)]

    def found(incident_id: int):
        try:
            return ctx.store.get(incident_id)
        except KeyError as exc:
            raise HTTPException(404, detail=str(exc.args[0])) from None

    @router.get("/v1/incidents", summary="Incidents, newest first")
    def list_incidents(status: Annotated[IncidentStatus | None, Query(description="Only this status")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict:
        return {"incidents": [i.to_dict() for i in ctx.store.list(status=status, limit=limit)]}

    @router.get("/v1/incidents/{incident_id}", summary="One incident with its timeline",
                responses={404: {"description": "Unknown incident"}})
    def show_incident(incident_id: IncidentId) -> dict:
        """The incident, its anomalies, its actions and its timeline (every event, oldest first:
        opened, diagnosed, decision, action, verification, escalation...)."""
        incident = found(incident_id)
        return {"incident": incident.to_dict(), "anomalies": ctx.store.anomalies(incident_id),
                "actions": [a.to_dict() for a in ctx.store.actions(incident_id=incident_id)],
                "timeline": ctx.store.events(incident_id)}

    def person_step(step: str, call: Callable[..., Any]):
        def handler(incident_id: IncidentId, body: PersonStep) -> dict:
            found(incident_id)
            try:
                if step == "resolve":
                    incident, sent = call(ctx.platform, incident_id, body.by, body.note or "")
                    return {"incident": incident.to_dict(), "report_message_id": sent}
                if step == "alert":
                    outcome = call(ctx.platform, incident_id, body.by, body.note or "")
                    if outcome.status == "failed":
                        raise HTTPException(502, detail=f"the page was not sent: {outcome.error}")
                    return {"incident": ctx.store.get(incident_id).to_dict(), "outcome": outcome.to_dict()}
                incident = call(ctx.platform, incident_id, body.by)
            except IncidentStateError as exc:
                raise HTTPException(409, detail=str(exc)) from None
            return {"incident": incident.to_dict()}
        return handler

    responses = {401: {"description": "Missing or invalid bearer token"},
                 404: {"description": "Unknown incident"},
                 409: {"description": "The incident's status does not allow it"}}
    for step, call, summary in (
            ("approve", usecases.approve, "Approve the action an incident waits for (approve mode)"),
            ("acknowledge", usecases.acknowledge, "Acknowledge an incident: escalation stops paging"),
            ("resolve", usecases.resolve, "Resolve an incident by hand and send its RCA report"),
            ("alert", usecases.alert, "Page the on-call role now with the incident's diagnosis")):
        router.add_api_route(f"/v1/incidents/{{incident_id}}/{step}", person_step(step, call),
                             methods=["POST"], summary=summary, dependencies=guarded,
                             responses=responses, name=f"{step}_incident")
    return router


def health_router(ctx: ApiContext) -> APIRouter:
    """GET /healthz (the process answers) and /readyz (models loaded, the incident log answers)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness and what the app runs with")
    def healthz() -> dict:
        return {"status": "ok", "rca_classifier": ctx.platform.classifier()[1],
                "models": sorted(ctx.models.models), "mode": ctx.settings.mode.value}

    @router.get("/readyz", summary="Ready to score: models loaded, the incident log answers",
                responses={503: {"description": "Not ready; 'checks' says what is missing"}})
    def readyz() -> JSONResponse:
        checks: dict[str, dict] = {}
        models = ctx.models
        checks["models"] = {"ok": bool(models.models),
                            "loaded": {n: m.to_dict() for n, m in sorted(models.models.items())},
                            "not_loaded": dict(models.problems)}
        if not models.models:
            checks["models"]["error"] = (f"no champion model loaded from {models.where}; train one "
                                         "with `aiops train`")
        try:
            counts = ctx.store.count_by_status()
            checks["incident_log"] = {"ok": True, "path": str(ctx.store.path), "incidents": counts}
        except Exception as exc:  # noqa: BLE001 - any failure to answer means not ready
            checks["incident_log"] = {"ok": False, "path": str(ctx.store.path), "error": str(exc)}
        checks["rca_classifier"] = {"ok": True, "source": ctx.platform.classifier()[1]}
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "not ready", "checks": checks})

    return router


def metrics_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        ctx.metrics.models.set(len(ctx.models.models))
        body, content_type = ctx.metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router


# ---------------------------------------------------------------------- composition


def build_context(settings: Settings, classifier: RootCauseClassifier | None = None, *,
                  models: ServiceModels | None = None, insecure_no_auth: bool = False,
                  config_path: str | None = None, platform: Platform | None = None,
                  **pieces: Any) -> ApiContext:
    """What the routes share: the platform from the one bootstrap (``pieces`` go to
    :func:`~service.bootstrap.build_platform`: fakes for tests), the served models, metrics."""
    pieces.setdefault("door", "aiops serve")
    platform = platform or build_platform(settings, config_path, classifier=classifier, **pieces)
    platform.classifier()   # loaded (and logged) once, at start-up, not on the first request
    if models is None:
        from service.signing import bundle_trust

        trust = bundle_trust(platform.settings, platform.door, factory=platform.factory)
        models = load_service_models(platform.settings.model_dir, trust=trust)
    return ApiContext(
        platform=platform,
        models=models,
        metrics=ApiMetrics(platform.store),
        require_token=bearer_auth(platform.settings.api_tokens, insecure_no_auth))


def create_app(settings: Settings | None = None, classifier: RootCauseClassifier | None = None, *,
               context: ApiContext | None = None, **pieces: Any) -> FastAPI:
    """The app, from settings (or a ready context); ``pieces`` go to :func:`build_context`."""
    settings = settings or Settings()
    ctx = context or build_context(settings, classifier, **pieces)
    app = FastAPI(title="aiops-ecs", summary="Anomaly detection, root-cause analysis and guarded "
                                             "remediation for ECS services",
                  max_body_size=ctx.settings.api_max_body_bytes)
    app.state.context = ctx
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PayloadError, _payload_error)
    app.add_exception_handler(NoModelError, _no_model)
    for router in (health_router(ctx), metrics_router(ctx), score_router(ctx), rca_router(ctx),
                   remediate_router(ctx), incidents_router(ctx), dashboard_router(ctx)):
        app.include_router(router)
    return app
