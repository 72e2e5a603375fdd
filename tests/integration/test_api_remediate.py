"""POST /v1/remediate with the app's own wiring (no fakes) against the local AWS endpoint."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.api import create_app
from service.ecs import EcsActions
from service.settings import Mode, Settings
from tests.fakes import ecs_service_on

pytestmark = pytest.mark.integration
CLUSTER, SERVICE = "aiops-platform-cluster", "aiops-platform-service"
TOKEN = "integration-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def ecs(endpoint, monkeypatch) -> EcsActions:
    monkeypatch.delenv("AIOPS_CONFIG", raising=False)
    return ecs_service_on(endpoint, CLUSTER, SERVICE)


def client(tmp_path, mode: Mode = Mode.AUTO) -> TestClient:
    settings = Settings(data_dir=tmp_path, api_tokens=[TOKEN], mode=mode)
    return TestClient(create_app(settings, RuleClassifier(load_playbook())))


def test_scale_up_and_rollback_change_the_ecs_service_and_are_logged(ecs, tmp_path) -> None:
    before = ecs.describe(CLUSTER, SERVICE)
    api = client(tmp_path)
    scaled = api.post("/v1/remediate", json={"action": "scale_up", "reason": "load"}, headers=AUTH)
    assert scaled.status_code == 200, scaled.text
    assert ecs.describe(CLUSTER, SERVICE).desired_count == before.desired_count + 1
    rolled = api.post("/v1/remediate", json={"action": "rollback", "reason": "bad deploy"}, headers=AUTH)
    assert rolled.status_code == 200 and rolled.json()["change"].endswith("aiops-platform:2")
    assert ecs.describe(CLUSTER, SERVICE).revision == 2
    actions = api.app.state.context.store.actions()
    assert [(a.action, a.origin, a.status) for a in actions] == [("scale_up", "api", "done"),
                                                                 ("rollback", "api", "done")]


def test_dry_run_mode_changes_nothing_on_ecs(ecs, tmp_path) -> None:
    before = ecs.describe(CLUSTER, SERVICE)
    reply = client(tmp_path, Mode.DRY_RUN).post("/v1/remediate", json={"action": "scale_up", "reason": "x"},
                                                headers=AUTH)
    assert reply.status_code == 200 and reply.json()["status"] == "dry_run"
    assert ecs.describe(CLUSTER, SERVICE).desired_count == before.desired_count
