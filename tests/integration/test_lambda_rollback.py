"""The rollback Lambda handler with the seed's payload, against the local AWS endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import pandas as pd
import pytest

from service.aws import ClientFactory, local_aws, reset_local_aws
from service.ecs import EcsActions
from service.lambda_handlers import rollback_handler
from simulation.ecs_world import EcsWorld

pytestmark = pytest.mark.integration

SEED = {"cluster": "aiops-platform-cluster", "service": "aiops-platform-service", "reason": "Test"}
T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws() as url:
        yield url


@pytest.fixture()
def ecs(endpoint, tmp_path, monkeypatch):
    """A service on revision 3 of 3, and an incident log of its own for the handler."""
    reset_local_aws(endpoint)
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIOPS_CONFIG", raising=False)
    factory = ClientFactory()
    world = EcsWorld(factory.client("ecs"), SEED["cluster"], SEED["service"], "aiops-platform",
                     endpoint_url=endpoint, ec2_client=factory.client("ec2"))
    world.setup(T0, revisions=3)
    return EcsActions(factory.client("ecs"))


def answer(response: dict) -> tuple[int, dict]:
    return response["statusCode"], json.loads(response["body"])


def test_the_seed_payload_rolls_back_to_the_previous_revision(ecs) -> None:
    status, body = answer(rollback_handler(dict(SEED), SimpleNamespace(aws_request_id="req-1")))
    assert status == 200, body
    assert body["change"] == "task definition aiops-platform:3 -> aiops-platform:2"
    assert ecs.describe(SEED["cluster"], SEED["service"]).revision == 2


def test_a_retried_invocation_does_not_roll_back_twice(ecs) -> None:
    context = SimpleNamespace(aws_request_id="req-7")
    first = answer(rollback_handler(dict(SEED), context))
    again = answer(rollback_handler(dict(SEED), context))
    assert first[0] == again[0] == 200 and again[1]["action_id"] == first[1]["action_id"]
    assert ecs.describe(SEED["cluster"], SEED["service"]).revision == 2


def test_an_alarm_firing_again_is_held_by_the_cooldown(ecs) -> None:
    assert answer(rollback_handler(dict(SEED)))[0] == 200
    status, body = answer(rollback_handler(dict(SEED)))
    assert status == 409 and body["reason"] == "cooldown"
    assert ecs.describe(SEED["cluster"], SEED["service"]).revision == 2


def test_a_named_revision_and_a_missing_one(ecs) -> None:
    status, body = answer(rollback_handler({**SEED, "to_revision": 9}))
    assert status == 409 and body["reason"] == "no_previous_revision"
    assert answer(rollback_handler({**SEED, "to_revision": 1}))[0] == 200
    assert ecs.describe(SEED["cluster"], SEED["service"]).revision == 1


def test_an_api_gateway_event_carries_the_payload_in_its_body(ecs) -> None:
    event = {"body": json.dumps(SEED), "headers": {"content-type": "application/json"},
             "requestContext": {}}
    assert answer(rollback_handler(event))[0] == 200


@pytest.mark.parametrize("event, field", [
    ({"service": "s", "reason": "r"}, "cluster"),
    ({**SEED, "reason": "  "}, "reason"),
    ({**SEED, "to_revision": "2"}, "to_revision"),
    ({**SEED, "force": True}, "force"),
    ({"body": "{not json", "headers": {}}, "body"),
    (["cluster"], "payload"),
])
def test_bad_payloads_are_422_with_the_field_named(event, field) -> None:
    status, body = answer(rollback_handler(event))
    assert status == 422 and body["error"]["field"] == field, "refused before any AWS call"


def test_a_service_outside_the_allow_list_is_refused(ecs, tmp_path, monkeypatch) -> None:
    config = tmp_path / "aiops.toml"
    config.write_text('[guardrails]\nallowed_services = ["aiops-platform-cluster/other"]\n')
    monkeypatch.setenv("AIOPS_CONFIG", str(config))
    status, body = answer(rollback_handler(dict(SEED)))
    assert status == 409 and body["reason"] == "not_allowed"
    assert ecs.describe(SEED["cluster"], SEED["service"]).revision == 3


def test_a_missing_service_is_a_502_naming_it(ecs, monkeypatch) -> None:
    monkeypatch.setenv("AIOPS_TARGET__SERVICE", "ghost")   # allowed: the one the function serves
    status, body = answer(rollback_handler({**SEED, "service": "ghost"}))
    assert status == 502 and body["error"] == "service ghost not found in cluster aiops-platform-cluster"


def test_a_broken_config_is_a_500_naming_it(tmp_path, monkeypatch) -> None:
    config = tmp_path / "aiops.toml"
    config.write_text("[guardrails]\nmax_desired_count = 0\n")
    monkeypatch.setenv("AIOPS_CONFIG", str(config))
    status, body = answer(rollback_handler(dict(SEED)))
    assert status == 500 and body["error"]["field"] == "configuration"
    assert "guardrails.max_desired_count" in body["error"]["message"]
