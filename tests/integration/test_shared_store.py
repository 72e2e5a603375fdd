"""Several processes, one truth: platforms on different data folders share the DynamoDB incident log,
so the guardrails hold across them (the issue's two watchers that scaled one service 2 -> 3 -> 4,
and the rollback Lambda that rolled back while the watcher had rollback in cooldown)."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rca.diagnosis import Diagnosis
from rca.playbook import load_playbook
from service import usecases
from service.aws import ClientFactory, reset_local_aws
from service.bootstrap import Platform, build_platform
from service.dynamo_store import DynamoIncidentStore, create_table
from service.ecs import EcsActions
from service.lambda_handlers import rollback_handler
from service.requests import ActionCommand
from service.settings import ServiceTarget, Settings, StoreKind
from simulation.ecs_world import EcsWorld

pytestmark = pytest.mark.integration

TARGET = ServiceTarget()   # the seed's aiops-platform-cluster / aiops-platform-service
TABLE = "aiops-shared-incidents"
_folders = itertools.count(1)


@pytest.fixture()
def ecs(endpoint) -> EcsActions:
    """A service at desired count 2 on revision 3 of 3, and the shared table, both fresh."""
    reset_local_aws(endpoint)
    factory = ClientFactory()
    world = EcsWorld(factory.client("ecs"), TARGET.cluster, TARGET.service, "aiops-platform",
                     endpoint_url=endpoint, ec2_client=factory.client("ec2"))
    world.setup(Settings().clock(), desired_count=2, revisions=3)
    create_table(factory.client("dynamodb"), TABLE)
    return EcsActions(factory.client("ecs"))


def replica(tmp_path: Path) -> Platform:
    """A platform as another host runs it: its own data folder, the shared table, real ECS."""
    folder = tmp_path / f"replica-{next(_folders)}"
    return build_platform(Settings(data_dir=folder, store=StoreKind.DYNAMODB, dynamodb_table=TABLE))


def diagnosis(cause: str) -> Diagnosis:
    return Diagnosis.from_cause(load_playbook(None), cause, 0.9, "test", [])


def test_two_watchers_on_different_folders_cannot_both_scale_one_service(ecs, tmp_path) -> None:
    first, second = replica(tmp_path), replica(tmp_path)
    assert isinstance(first.store, DynamoIncidentStore) and first.settings.db_path != second.settings.db_path
    now = first.clock()
    outcomes = []
    for platform in (first, second):   # each watcher saw the fault and opened its own incident
        incident = platform.store.open_incident(TARGET.cluster, TARGET.service, now)
        outcomes.append(platform.remediator().remediate(incident, TARGET, diagnosis("high_cpu"), now))
    assert [o.status for o in outcomes] == ["done", "refused"]
    assert outcomes[1].reason == "cooldown", outcomes[1]
    assert ecs.describe(TARGET.cluster, TARGET.service).desired_count == 3, "2 -> 3, never 4"
    assert first.store.refusals() == second.store.refusals() == Counter({"cooldown": 1})


def test_racing_replicas_start_one_action(ecs, tmp_path) -> None:
    """Six requests at once from two replicas (three threads each): one scales, five are refused."""
    platforms = [replica(tmp_path), replica(tmp_path)]
    outcomes, start = [], threading.Barrier(6)

    def ask(platform: Platform, n: int) -> None:
        command = ActionCommand(action="scale_up", reason=f"load {n}", request_id=f"r{n}")
        start.wait()
        outcomes.append(usecases.request_action(platform, command, "api"))

    threads = [threading.Thread(target=ask, args=(platforms[n % 2], n)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.status for o in outcomes) == ["done"] + ["refused"] * 5
    assert {o.reason for o in outcomes if o.status == "refused"} <= {"in_flight", "cooldown"}
    assert ecs.describe(TARGET.cluster, TARGET.service).desired_count == 3


def test_the_rollback_lambda_respects_the_watchers_cooldown(ecs, tmp_path, monkeypatch) -> None:
    watcher = replica(tmp_path)
    now = watcher.clock()
    incident = watcher.store.open_incident(TARGET.cluster, TARGET.service, now)
    done = watcher.remediator().remediate(incident, TARGET, diagnosis("error_rate_high"), now)
    assert done.change == "task definition aiops-platform:3 -> aiops-platform:2"
    watcher.store.set_status(incident, now, "verifying", verify_due_at=now)
    assert watcher.store.complete_verification(incident, now, True, {"summary": "errors back to 0"})

    # the Lambda: its own /tmp, the same table (what the stack in deploy/ sets)
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path / "lambda-tmp"))
    monkeypatch.setenv("AIOPS_STORE", "dynamodb")
    monkeypatch.setenv("AIOPS_DYNAMODB_TABLE", TABLE)
    monkeypatch.delenv("AIOPS_CONFIG", raising=False)
    seed = {"cluster": TARGET.cluster, "service": TARGET.service, "reason": "alarm"}
    answer = rollback_handler(seed, SimpleNamespace(aws_request_id="alarm-1"))
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body["reason"]) == (409, "cooldown"), body
    assert ecs.describe(TARGET.cluster, TARGET.service).revision == 2, "not rolled back again"
    assert watcher.store.refusals() == Counter({"cooldown": 1}), "the watcher's log shows the refusal"
    assert not (tmp_path / "lambda-tmp" / "incidents.sqlite").exists()


def test_a_missing_table_is_named_with_how_to_make_it(endpoint, tmp_path) -> None:
    with pytest.raises(OSError, match="'nowhere' is not usable: deploy the stack"):
        build_platform(Settings(data_dir=tmp_path, store="dynamodb", dynamodb_table="nowhere"))


def test_the_store_is_chosen_by_one_setting(monkeypatch) -> None:
    monkeypatch.setenv("AIOPS_STORE", "dynamodb")
    monkeypatch.setenv("AIOPS_DYNAMODB_TABLE", "team-incidents")
    assert (Settings().store, Settings().dynamodb_table) == (StoreKind.DYNAMODB, "team-incidents")
    monkeypatch.setenv("AIOPS_STORE", "postgres")
    with pytest.raises(ValueError, match="store"):
        Settings()


def test_sqlite_stays_the_default(tmp_path) -> None:
    assert Settings().store is StoreKind.SQLITE
    platform = build_platform(Settings(data_dir=tmp_path))
    assert platform.store.path == tmp_path / "incidents.sqlite"
    assert pd.Timestamp(platform.clock()).tz is not None
