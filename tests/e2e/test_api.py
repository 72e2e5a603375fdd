"""The HTTP API as a client sees it: scoring, auth, remediation through the guardrails, incidents,
health and Prometheus metrics. In process (ASGI); ECS is an in-memory fake, the rest is real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from harness.loadbench import SCORED_AT, score_payloads, write_bundles
from models.signing import Trust, local_key
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.api import create_app
from service.scoring import ServiceModels, load_service_models
from service.settings import Mode, Settings
from service.store import IncidentStore
from tests.fakes import FakeEcs, FakeNotifier, FakeService

pytestmark = pytest.mark.e2e
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = SCORED_AT.isoformat()
T1 = (SCORED_AT + pd.Timedelta(minutes=1)).isoformat()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    write_bundles(directory, ["web", "api"], cluster="prod")
    return directory


@pytest.fixture(scope="module")
def models(model_dir) -> ServiceModels:
    return load_service_models(model_dir, trust=Trust(local_key(model_dir.parent, create=False), "tests"))


class World:
    """An app over a fresh incident log, fake ECS services and the real guarded remediator."""

    def __init__(self, tmp_path: Path, models: ServiceModels, mode: Mode = Mode.AUTO,
                 tokens: list[str] | None = None, insecure: bool = False):
        self.settings = Settings(data_dir=tmp_path, mode=mode, target={"cluster": "prod", "service": "web"},
                                 api_tokens=[TOKEN] if tokens is None else tokens)
        self.store = IncidentStore(self.settings.db_path)
        self.ecs_services = {("prod", "web"): FakeService(desired=2)}
        self.ecs: dict[bool, FakeEcs] = {}
        self.notifier = FakeNotifier()

        def actions(dry_run: bool) -> FakeEcs:
            self.ecs[dry_run] = FakeEcs(self.ecs_services, dry_run=dry_run)
            return self.ecs[dry_run]

        self.app = create_app(self.settings, RuleClassifier(load_playbook()), models=models,
                              store=self.store, actions=actions, notifier=self.notifier,
                              insecure_no_auth=insecure)
        self.client = TestClient(self.app)

    def calls(self) -> list[tuple]:
        return [c for ecs in self.ecs.values() for c in ecs.calls]


@pytest.fixture
def world(tmp_path_factory, models) -> Callable[..., World]:
    """Make a World; each has its own data dir (incident log)."""
    return lambda **kw: World(tmp_path_factory.mktemp("world"), models, **kw)


def cpu(values, stamps=(T0, T1), service="web", **extra) -> dict:
    return {"series": [{"cluster": "prod", "service": service, "metric": "cpu_utilization",
                        "timestamps": list(stamps), "values": list(values), **extra}]}


# --- POST /v1/score -----------------------------------------------------------------------------

def test_score_finds_the_spike_and_explains_it(world) -> None:
    reply = world().client.post("/v1/score", json=cpu([30, 95]))
    assert reply.status_code == 200
    body = reply.json()
    assert body["points"] == 2 and body["anomalies"] == 1
    [found] = body["services"][0]["anomalies"]
    assert found["metric"] == "cpu_utilization" and found["timestamp"] == T1
    assert found["text"].startswith("CPU: 95% (expected ")
    assert found["lower"] < found["expected"] < found["upper"] < 95


def test_score_takes_many_services_and_uses_the_default_cluster(world, tmp_path) -> None:
    payload = score_payloads(["web", "api"], points=5, n=1, cluster="prod")[0]
    reply = world().client.post("/v1/score", content=payload, headers={"content-type": "application/json"})
    assert reply.status_code == 200
    assert [(s["service"], s["points"]) for s in reply.json()["services"]] == [("web", 25), ("api", 25)]
    series = cpu([30, 31])["series"][0]
    del series["cluster"]   # the server's own cluster (prod)
    assert world().client.post("/v1/score", json={"series": [series]}).status_code == 200


def test_a_service_without_a_model_is_a_404_naming_it(world) -> None:
    reply = world().client.post("/v1/score", json=cpu([30, 31], service="billing"))
    assert reply.status_code == 404
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "series", 0, "service"]
    assert "prod/billing" in error["msg"] and "aiops train" in error["msg"]


RAW = {"content-type": "application/json"}


@pytest.mark.parametrize("body, loc, words", [
    (b'{"series": [', ["body", 12], "JSON decode error"),
    (b'{"series": [{"service": "web", "metric": "cpu_utilization", "timestamps": ["2026-11-02T10:00:00Z"], '
     b'"values": [NaN]}]}', ["body", "series", 0, "values", 0], "finite"),
    (b'{"series": [{"service": "web", "metric": "cpu_utilization", "timestamps": ["2026-11-02T10:00:00Z"], '
     b'"values": [Infinity]}]}', ["body", "series", 0, "values", 0], "finite"),
])
def test_malformed_json_and_non_finite_numbers_are_422(world, body, loc, words) -> None:
    reply = world().client.post("/v1/score", content=body, headers=RAW)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == loc and words in reply.json()["detail"][0]["msg"]


@pytest.mark.parametrize("payload, loc, words", [
    (cpu([30, 31], stamps=(T1, T0)), ["body", "series", 0, "timestamps"], "time order"),
    (cpu([30, 31], stamps=(T0, T0)), ["body", "series", 0, "timestamps"], "repeats"),
    (cpu([30, 31], stamps=(T0, None)), ["body", "series", 0, "timestamps", 1], "datetime"),
    (cpu([30, 31], stamps=("2026-11-02T10:00:00", T1)), ["body", "series", 0, "timestamps", 0], "timezone"),
    (cpu([30, 31, 32]), ["body", "series", 0, "values"], "one value per timestamp"),
    (cpu([30, -1]), ["body", "series", 0, "values", 1], "greater than or equal to 0"),
    (cpu([30, 31], unit="%"), ["body", "series", 0, "unit"], "Extra inputs"),
    ({"series": []}, ["body", "series"], "at least 1"),
    ({}, ["body", "series"], "Field required"),
    ({"series": [{**cpu([30, 31])["series"][0], "metric": "disk_io"}]}, ["body", "series", 0, "metric"],
     "unknown metric 'disk_io'"),
])
def test_bad_points_are_422_with_the_field_at_fault(world, payload, loc, words) -> None:
    reply = world().client.post("/v1/score", json=payload)
    assert reply.status_code == 422
    error = reply.json()["detail"][0]
    assert error["loc"] == loc and words in error["msg"]


def test_enormous_payloads_are_refused(world, models, tmp_path) -> None:
    app = World(tmp_path, models)
    too_big = b'{"series": [' + b" " * app.settings.api_max_body_bytes + b"]}"
    assert app.client.post("/v1/score", content=too_big, headers=RAW).status_code == 413
    stamps = [(SCORED_AT + pd.Timedelta(minutes=i)).isoformat() for i in range(3000)]
    many = {"series": [{"cluster": "prod", "service": "web", "metric": m, "timestamps": stamps,
                        "values": [1.0] * 3000} for m in ("cpu_utilization", "memory_utilization")]}
    small = Settings(data_dir=tmp_path, api_tokens=[TOKEN], api_max_points=5000)
    client = TestClient(create_app(small, RuleClassifier(load_playbook()), models=models))
    reply = client.post("/v1/score", json=many)
    assert reply.status_code == 422 and "6,000 points" in reply.json()["detail"][0]["msg"]


# --- auth and POST /v1/remediate -------------------------------------------------------------------

SCALE = {"action": "scale_up", "reason": "latency climbing"}


@pytest.mark.parametrize("headers, words", [
    ({}, "missing bearer token"),
    ({"Authorization": "Bearer wrong-token-0123456789"}, "invalid bearer token"),
    ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token"),
])
def test_remediate_needs_a_valid_bearer_token(world, headers, words) -> None:
    w = world()
    reply = w.client.post("/v1/remediate", json=SCALE, headers=headers)
    assert reply.status_code == 401 and words in reply.json()["detail"]
    assert reply.headers["www-authenticate"] == "Bearer"
    assert w.calls() == [] and w.store.actions() == []


def test_without_tokens_mutations_are_closed_unless_explicitly_opened(world) -> None:
    closed = world(tokens=[])
    reply = closed.client.post("/v1/remediate", json=SCALE)
    assert reply.status_code == 401 and "no API token configured" in reply.json()["detail"]
    opened = world(tokens=[], insecure=True)
    assert opened.client.post("/v1/remediate", json=SCALE).status_code == 200


def test_remediate_runs_the_action_once_and_logs_it(world) -> None:
    w = world()
    reply = w.client.post("/v1/remediate", json={**SCALE, "request_id": "r-1"}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "done" and reply.json()["change"] == "desired count 2 -> 3"
    again = w.client.post("/v1/remediate", json={**SCALE, "request_id": "r-1"}, headers=AUTH)
    assert again.status_code == 200 and again.json()["action_id"] == reply.json()["action_id"]
    assert w.calls() == [("scale_up", "prod", "web")]
    [action] = w.store.actions()
    assert action.origin == "api" and action.reason == "latency climbing" and action.status == "done"


def test_guardrails_refuse_with_their_reason(world) -> None:
    w = world()
    outside = w.client.post("/v1/remediate", json={**SCALE, "service": "billing"}, headers=AUTH)
    assert outside.status_code == 409 and outside.json()["reason"] == "not_allowed"
    w.ecs_services[("prod", "web")].rolling_out = True
    rollback = w.client.post("/v1/remediate", json={"action": "rollback", "reason": "bad deploy"},
                             headers=AUTH)
    assert rollback.status_code == 409 and rollback.json()["reason"] == "rolling_out"
    capped = w.client.post("/v1/remediate", json={"action": "scale_to", "count": 50, "reason": "x"},
                           headers=AUTH)
    assert capped.status_code == 409 and capped.json()["reason"] == "desired_count_cap"
    assert w.calls() == []


def test_a_failing_ecs_is_a_502(world) -> None:
    w = world()
    w.client.post("/v1/remediate", json={**SCALE, "dry_run": True}, headers=AUTH)  # make the fakes
    w.client.app.state.context.platform.remediator(False)
    w.ecs[False].fail = "AccessDeniedException: ecs:UpdateService"
    reply = w.client.post("/v1/remediate", json=SCALE, headers=AUTH)
    assert reply.status_code == 502 and "AccessDenied" in reply.json()["error"]


def test_dry_run_mode_and_dry_run_requests_change_nothing(world) -> None:
    w = world(mode=Mode.DRY_RUN)
    reply = w.client.post("/v1/remediate", json=SCALE, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["status"] == "dry_run"
    w2 = world()
    assert w2.client.post("/v1/remediate", json={**SCALE, "dry_run": True},
                          headers=AUTH).json()["status"] == "dry_run"
    assert w.calls() == [] and w2.calls() == []
    assert w.ecs_services[("prod", "web")].desired == 2


def test_approve_mode_leaves_critical_actions_to_a_person(world) -> None:
    w = world(mode=Mode.APPROVE)
    restart = w.client.post("/v1/remediate", json={"action": "restart_tasks", "reason": "leak"}, headers=AUTH)
    assert restart.status_code == 409 and restart.json()["reason"] == "approval_required"
    assert "approve" in restart.json()["error"]
    assert w.client.post("/v1/remediate", json=SCALE, headers=AUTH).json()["status"] == "done"
    assert w.calls() == [("scale_up", "prod", "web")]


@pytest.mark.parametrize("body, loc", [
    ({"action": "scale_to", "reason": "x"}, ["body", "count"]),
    ({"action": "scale_up", "reason": "x", "count": 3}, ["body", "count"]),
    ({"action": "scale_up", "reason": "x", "to_revision": 3}, ["body", "to_revision"]),
    ({"action": "reboot", "reason": "x"}, ["body", "action"]),
    ({"action": "scale_up", "reason": "   "}, ["body", "reason"]),
    ({"action": "scale_up"}, ["body", "reason"]),
])
def test_remediate_names_the_field_at_fault(world, body, loc) -> None:
    w = world()
    reply = w.client.post("/v1/remediate", json=body, headers=AUTH)
    assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == loc
    assert w.calls() == []


def test_an_unknown_incident_is_a_404_before_any_action(world) -> None:
    w = world()
    reply = w.client.post("/v1/remediate", json={**SCALE, "incident_id": 99}, headers=AUTH)
    assert reply.status_code == 404 and "no incident 99" in reply.json()["detail"]
    assert w.calls() == []


# --- incidents ------------------------------------------------------------------------------------

def _incident(store: IncidentStore, status: str = "awaiting_approval") -> int:
    at = pd.Timestamp("2026-11-02T10:00Z")
    incident = store.open_incident("prod", "web", at)
    store.set_diagnosis(incident, at, {"root_cause": "memory_leak", "severity": "CRITICAL", "confidence": 0.9,
                                       "auto_action": "restart_tasks"})
    store.set_status(incident, at, status)
    return incident


def test_incidents_list_and_one_with_its_timeline(world) -> None:
    w = world()
    first = _incident(w.store)
    listed = w.client.get("/v1/incidents").json()["incidents"]
    assert [i["id"] for i in listed] == [first] and listed[0]["root_cause"] == "memory_leak"
    assert w.client.get("/v1/incidents", params={"status": "resolved"}).json()["incidents"] == []
    one = w.client.get(f"/v1/incidents/{first}").json()
    assert [e["kind"] for e in one["timeline"]] == ["opened", "diagnosed", "status:awaiting_approval"]
    assert w.client.get("/v1/incidents/999").status_code == 404
    bad = w.client.get("/v1/incidents", params={"status": "burning"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]


def test_approve_acknowledge_resolve_need_a_token_and_a_status_that_allows_them(world) -> None:
    w = world()
    incident = _incident(w.store)
    person = {"by": "alice"}
    assert w.client.post(f"/v1/incidents/{incident}/approve", json=person).status_code == 401
    approved = w.client.post(f"/v1/incidents/{incident}/approve", json=person, headers=AUTH)
    assert approved.status_code == 200 and approved.json()["incident"]["approved_by"] == "alice"
    again = w.client.post(f"/v1/incidents/{incident}/approve", json=person, headers=AUTH)
    assert again.status_code == 409 and "already approved" in again.json()["detail"]
    resolved = w.client.post(f"/v1/incidents/{incident}/resolve", json={"by": "bob", "note": "fixed"},
                             headers=AUTH)
    assert resolved.json()["incident"]["status"] == "resolved"
    timeline = [e["kind"] for e in w.client.get(f"/v1/incidents/{incident}").json()["timeline"]]
    assert timeline[-4:] == ["approved", "status:resolved", "report", "report_sent"], \
        "resolving over HTTP sends the RCA report, as the CLI does"
    assert resolved.json()["report_message_id"] is not None
    [(role, subject)] = w.notifier.sent
    assert role == "on-call engineer" and subject.startswith(f"Resolved: incident {incident}")
    assert w.client.post("/v1/incidents/999/acknowledge", json=person, headers=AUTH).status_code == 404


# --- health and metrics ---------------------------------------------------------------------------

def test_readyz_says_what_is_missing(world, tmp_path) -> None:
    ready = world().client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()["checks"]["models"]["loaded"]) == {"prod--api",
                                                                                            "prod--web"}
    empty = Settings(data_dir=tmp_path / "empty", api_tokens=[TOKEN])
    reply = TestClient(create_app(empty, RuleClassifier(load_playbook()))).get("/readyz")
    assert reply.status_code == 503 and "aiops train" in reply.json()["checks"]["models"]["error"]


def test_a_tampered_bundle_is_not_served_and_says_why(tmp_path, model_dir) -> None:
    import shutil

    shutil.copytree(model_dir / "prod--web", tmp_path / "models" / "prod--web")
    shutil.copy2(model_dir.parent / "signing.key", tmp_path / "signing.key")  # the same key
    (tmp_path / "models" / "prod--web" / "config.json").write_text("{}")
    settings = Settings(data_dir=tmp_path, api_tokens=[TOKEN], target={"cluster": "prod", "service": "web"})
    client = TestClient(create_app(settings, RuleClassifier(load_playbook())))
    reply = client.post("/v1/score", json=cpu([30, 31]))
    message = reply.json()["detail"][0]["msg"]
    assert reply.status_code == 404 and "sha256" in message and "aiops serve" in message
    assert client.get("/readyz").status_code == 503


def test_metrics_count_points_anomalies_incidents_actions_and_latency(world) -> None:
    w = world()
    w.client.post("/v1/score", json=cpu([30, 95]))
    w.client.post("/v1/remediate", json=SCALE, headers=AUTH)
    _incident(w.store)
    text = w.client.get("/metrics").text
    for line in ("aiops_points_scored_total 2.0",
                 'aiops_anomalies_total{metric="cpu_utilization"} 1.0',
                 'aiops_incidents{root_cause="memory_leak",status="awaiting_approval"} 1.0',
                 'aiops_actions{action="scale_up",outcome="done"} 1.0',
                 'aiops_api_remediations_total{action="scale_up",outcome="done"} 1.0',
                 "aiops_score_duration_seconds_count 1.0",
                 "aiops_models_loaded 2.0"):
        assert line in text, line


def test_openapi_documents_every_endpoint_and_the_bearer_scheme(world) -> None:
    client = world().client
    schema = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/rca", "/v1/remediate", "/v1/incidents", "/v1/incidents/{incident_id}",
            "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/remediate"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/v1/score"]["post"]
    assert client.get("/docs").status_code == 200
