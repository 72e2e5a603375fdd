"""The HTTP API: a FastAPI app made by one factory from settings (OpenAPI at /docs).

``create_app(settings)`` wires the root-cause classifier once (the trained bundle under the data
dir, else the rules; a server never trains on a request) and mounts the routes. Routes call the
same use-case functions as the CLI and the Lambda handlers (:mod:`service.diagnose`). Bad input
is answered 422 with the field at fault, in FastAPI's usual ``detail`` shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import JSONResponse

from rca.diagnosis import RootCauseClassifier
from rca.payload import PayloadError
from rca.playbook import load_playbook
from service.diagnose import diagnose_payload, load_rca_classifier
from service.settings import Settings

SEED_EXAMPLE = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}


def rca_router(classifier: RootCauseClassifier, source: str) -> APIRouter:
    """POST /v1/rca: the operator's payload in, the diagnosis contract out."""
    router = APIRouter(tags=["rca"])

    @router.post("/v1/rca", summary="Name the root cause of an incident")
    def rca(payload: Any = Body(..., examples=[SEED_EXAMPLE])) -> dict:  # noqa: B008 - FastAPI idiom
        """Anomaly strings (``CPU: 60% (expected 4%)``) or objects, metric values, optional ECS
        context -> root cause, severity, actions, confidence, explanation, evidence."""
        return {**diagnose_payload(payload, classifier).to_dict(), "classifier": source}

    return router


def health_router(source: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness and what the app runs with")
    def healthz() -> dict:
        return {"status": "ok", "rca_classifier": source}

    return router


async def _payload_error(request: Request, exc: PayloadError) -> JSONResponse:
    loc = ["body", *exc.field.replace("]", "").replace("[", ".").split(".")]
    return JSONResponse(status_code=422, content={"detail": [
        {"loc": [int(p) if p.isdigit() else p for p in loc if p], "msg": exc.message,
         "type": "value_error"}]})


def create_app(settings: Settings | None = None, classifier: RootCauseClassifier | None = None) -> FastAPI:
    """The app, from settings; tests may hand in their own classifier."""
    settings = settings or Settings()
    playbook = load_playbook(settings.playbook)
    if classifier is None:
        classifier, source = load_rca_classifier(settings, playbook)
    else:
        source = type(classifier).__name__
    app = FastAPI(title="aiops-ecs", summary="Anomaly detection, root-cause analysis and guarded "
                                             "remediation for ECS services")
    app.add_exception_handler(PayloadError, _payload_error)
    app.include_router(health_router(source))
    app.include_router(rca_router(classifier, source))
    return app
