"""Every door gives the same answer: the CLI, the HTTP API and the Lambda handler drive each
operation with the same input in each mode, against the local AWS endpoint, and must agree on the
outcome, the guardrail decision, the change to the ECS service and the incident log's entries."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from harness.cli import cli
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.api import create_app
from service.bootstrap import build_platform
from service.ecs import EcsActions
from service.lambda_handlers import rollback_handler
from service.settings import Mode, ServiceTarget, Settings
from service.store import IncidentStore
from tests.fakes import FakeEcs, FakeNotifier, FakeService, ecs_service_on

pytestmark = pytest.mark.integration
CLUSTER, SERVICE = "aiops-platform-cluster", "aiops-platform-service"
TOKEN = "doors-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")
CLI_ACTION = {"scale_up": "scale-up", "restart_tasks": "restart", "rollback": "rollback"}


@pytest.fixture()
def ecs(endpoint, monkeypatch) -> EcsActions:
    """A service on revision 3 of 3 with two tasks; every door configured by the environment."""
    monkeypatch.delenv("AIOPS_CONFIG", raising=False)
    return ecs_service_on(endpoint, CLUSTER, SERVICE)


def _env(data_dir: Path, mode: Mode) -> dict[str, str]:
    return {"AIOPS_DATA_DIR": str(data_dir), "AIOPS_MODE": mode.value}


def through_cli(data_dir: Path, mode: Mode, action: str, monkeypatch) -> dict:
    result = CliRunner().invoke(cli, ["remediate", CLI_ACTION[action], "--reason", "doors", "--json"],
                                env=_env(data_dir, mode))
    if result.exit_code == 0:
        return json.loads(result.stdout)
    error = result.stderr.strip()
    if "refused (" in error:
        return {"status": "refused", "reason": error.split("refused (")[1].split(")")[0]}
    return {"status": "failed", "reason": None, "error": error}


def through_http(data_dir: Path, mode: Mode, action: str, monkeypatch) -> dict:
    for name, value in _env(data_dir, mode).items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings(api_tokens=[TOKEN]), RuleClassifier(load_playbook()))
    reply = TestClient(app).post("/v1/remediate", json={"action": action, "reason": "doors"}, headers=AUTH)
    return reply.json()


def through_lambda(data_dir: Path, mode: Mode, action: str, monkeypatch) -> dict:
    assert action == "rollback", "the only action with a Lambda of its own"
    for name, value in _env(data_dir, mode).items():
        monkeypatch.setenv(name, value)
    reply = rollback_handler({"cluster": CLUSTER, "service": SERVICE, "reason": "doors"})
    return json.loads(reply["body"])


DOORS = {"cli": through_cli, "http": through_http, "lambda": through_lambda}
# (action, mode) -> (status, guardrail reason, what the ECS service looks like afterwards)
EXPECTED = {
    ("scale_up", Mode.AUTO): ("done", None, (3, 3)),
    ("scale_up", Mode.APPROVE): ("done", None, (3, 3)),          # not a CRITICAL row's action
    ("scale_up", Mode.DRY_RUN): ("dry_run", None, (2, 3)),
    ("restart_tasks", Mode.AUTO): ("done", None, (2, 3)),
    ("restart_tasks", Mode.APPROVE): ("refused", "approval_required", (2, 3)),
    ("restart_tasks", Mode.DRY_RUN): ("dry_run", None, (2, 3)),
    ("rollback", Mode.AUTO): ("done", None, (2, 2)),
    ("rollback", Mode.APPROVE): ("refused", "approval_required", (2, 3)),
    ("rollback", Mode.DRY_RUN): ("dry_run", None, (2, 3)),
}
CASES = [(door, action, mode) for (action, mode) in EXPECTED for door in DOORS
         if door != "lambda" or action == "rollback"]


def _log(data_dir: Path) -> list[tuple]:
    """The incident log's actions and events, without what names the door."""
    store = IncidentStore(data_dir / "incidents.sqlite")
    actions = [(a.action, a.status) for a in store.actions()]
    with sqlite3.connect(data_dir / "incidents.sqlite") as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM events ORDER BY id")]
    events = [k.removeprefix("manual_").removeprefix("api_").removeprefix("lambda_") for k in kinds]
    refusals = sorted(store.refusals().items())
    return [*actions, *events, *refusals]


@pytest.mark.parametrize("door, action, mode", CASES, ids=[f"{d}-{a}-{m.value}" for d, a, m in CASES])
def test_every_door_gives_the_same_outcome_decision_change_and_log(door, action, mode, ecs, tmp_path,
                                                                    monkeypatch) -> None:
    status, reason, (desired, revision) = EXPECTED[(action, mode)]
    body = DOORS[door](tmp_path, mode, action, monkeypatch)
    assert (body["status"], body.get("reason")) == (status, reason), body
    state = ecs.describe(CLUSTER, SERVICE)
    assert (state.desired_count, state.revision) == (desired, revision)
    log = _log(tmp_path)
    if status == "refused":
        assert log == ["guardrail_refused", ("approval_required", 1)], "the refusal is logged, and why"
    else:
        assert log[0] == (action, status), "the action is logged before and after"


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_the_log_entries_are_the_same_through_every_door(mode, ecs, endpoint, tmp_path, monkeypatch) -> None:
    logs = {}
    for door in DOORS:
        ecs_service_on(endpoint, CLUSTER, SERVICE)
        data_dir = tmp_path / door
        DOORS[door](data_dir, mode, "rollback", monkeypatch)
        logs[door] = _log(data_dir)
    assert logs["cli"] == logs["http"] == logs["lambda"], logs


# --- a person's steps: approve, acknowledge, resolve ------------------------------------------------

def _awaiting(data_dir: Path) -> int:
    store = IncidentStore(data_dir / "incidents.sqlite")
    incident = store.open_incident(CLUSTER, SERVICE, T0)
    store.set_diagnosis(incident, T0, {"root_cause": "memory_leak", "severity": "CRITICAL",
                                       "confidence": 0.9, "auto_action": "restart_tasks"})
    store.set_status(incident, T0, "awaiting_approval")
    return incident


def _person_cli(data_dir: Path, step: str, incident: int, mode: Mode) -> int:
    command = {"approve": "approve", "acknowledge": "ack", "resolve": "resolve", "alert": "alert"}[step]
    result = CliRunner().invoke(cli, ["incidents", command, str(incident), "--by", "alice", "--json"],
                                env=_env(data_dir, mode))
    return result.exit_code


def _person_http(data_dir: Path, step: str, incident: int, mode: Mode) -> int:
    settings = Settings(data_dir=data_dir, mode=mode, api_tokens=[TOKEN])
    reply = TestClient(create_app(settings, RuleClassifier(load_playbook()))).post(
        f"/v1/incidents/{incident}/{step}", json={"by": "alice"}, headers=AUTH)
    return 0 if reply.status_code == 200 else 1


STEPS = [["approve", "resolve"], ["acknowledge", "resolve"], ["alert", "resolve"], ["resolve", "approve"],
         ["resolve", "alert"]]


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
@pytest.mark.parametrize("steps", STEPS, ids="-then-".join)
def test_a_person_s_steps_do_the_same_through_the_cli_and_http(steps, mode, tmp_path) -> None:
    seen = {}
    for door, run in (("cli", _person_cli), ("http", _person_http)):
        data_dir = tmp_path / door
        incident = _awaiting(data_dir)
        codes = [run(data_dir, step, incident, mode) for step in steps]
        store = IncidentStore(data_dir / "incidents.sqlite")
        final = store.get(incident)
        seen[door] = (codes, final.status, final.approved_by, final.acked_by,
                      [e["kind"] for e in store.events(incident)],
                      [e["data"].get("by") for e in store.events(incident) if e["kind"] == "alert_sent"])
    assert seen["cli"] == seen["http"], seen
    codes, status, *_, kinds, paged_by = seen["cli"]
    if steps[-1] == "resolve":
        assert codes == [0, 0] and status == "resolved"
        assert kinds[-2:] == ["report", "report_sent"], "resolving sends the RCA report from every door"
    else:
        assert codes == [0, 1], f"{steps[-1]} on a resolved incident is refused"
    assert paged_by == (["alice"] if steps[0] == "alert" else []), "a page names who asked for it"


# --- diagnose: the same cause from every door, in every mode, and nothing acts ----------------------

SEED_PAYLOAD = {"anomalies": ["CPU: 60% (expected 4%)"], "metrics": {"cpu_utilization": 60}}


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_diagnose_gives_the_same_answer_through_every_door_and_changes_nothing(mode, ecs, tmp_path,
                                                                                monkeypatch) -> None:
    from service import lambda_handlers

    for name, value in _env(tmp_path, mode).items():
        monkeypatch.setenv(name, value)
    done = CliRunner().invoke(cli, ["rca", "--payload", json.dumps(SEED_PAYLOAD), "--json"])
    assert done.exit_code == 0, done.stderr
    by_http = TestClient(create_app(Settings(api_tokens=[TOKEN]))).post("/v1/rca", json=SEED_PAYLOAD,
                                                                       headers=AUTH)
    monkeypatch.setattr(lambda_handlers, "_cache", {})
    by_lambda = lambda_handlers.rca_handler(SEED_PAYLOAD, None)
    answers = [json.loads(done.stdout), by_http.json(), json.loads(by_lambda["body"])]
    assert len({(a["root_cause"], a["auto_action"], a["confidence"]) for a in answers}) == 1, answers
    assert answers[0]["root_cause"] == "high_cpu" and answers[0]["auto_action"] == "scale_up"
    state = ecs.describe(CLUSTER, SERVICE)
    assert (state.desired_count, state.revision) == (2, 3), "naming a cause never acts"
    assert not (tmp_path / "incidents.sqlite").exists() or _log(tmp_path) == []


# --- idempotency keys: a caller cannot cancel the platform's own action -----------------------------

def test_a_caller_key_equal_to_a_platform_key_does_not_suppress_the_platform_s_action(tmp_path) -> None:
    from rca.diagnosis import Diagnosis
    from service import usecases
    from service.requests import ActionCommand

    services = {(CLUSTER, SERVICE): FakeService(desired=2, revision=3, revisions=[1, 2, 3])}
    ecs = FakeEcs(services)
    platform = build_platform(Settings(data_dir=tmp_path), actions=lambda dry_run: ecs, clock=lambda: T0,
                              notifier=FakeNotifier(), classifier=RuleClassifier(load_playbook()))
    incident = platform.store.open_incident(CLUSTER, SERVICE, T0)
    caller = usecases.request_action(platform, ActionCommand(action="scale_up", reason="mine",
                                                             request_id="incident-1"), "lambda")
    assert incident == 1 and caller.status == "done"
    high_cpu = Diagnosis.from_cause(load_playbook(), "high_cpu", confidence=0.9, explanation="CPU",
                                    evidence=[])
    later = T0 + pd.Timedelta(minutes=30)
    own = platform.remediator().remediate(incident, ServiceTarget(cluster=CLUSTER, service=SERVICE),
                                          high_cpu, later)
    assert own.status == "done" and own.action_id != caller.action_id, \
        "the watcher's own action ran; the caller's key did not stand in for it"
    assert [a.key for a in platform.store.actions()] == ["lambda:incident-1", "incident-1"]
