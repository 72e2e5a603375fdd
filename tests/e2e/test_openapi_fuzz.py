"""Schemathesis against the app's own OpenAPI schema, in process (ASGI): no input gives a 5xx.

Every operation gets a bounded number of generated requests (valid and invalid bodies, paths
and queries), with a valid bearer token so the mutating routes are reached too; ECS is the
in-memory fake, so remediation requests change nothing outside the test.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from harness.loadbench import write_bundles
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.api import create_app
from service.settings import Settings
from service.store import IncidentStore
from tests.fakes import FakeEcs, FakeNotifier

pytestmark = pytest.mark.e2e
TOKEN = "fuzz-token-0123456789abcdef"
MAX_EXAMPLES = 25


def _app(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fuzz")
    write_bundles(data_dir / "models", ["aiops-platform-service"], cluster="aiops-platform-cluster")
    config = Settings(data_dir=data_dir, api_tokens=[TOKEN])
    store = IncidentStore(config.db_path)
    at = "2026-11-02T10:00Z"
    incident = store.open_incident("aiops-platform-cluster", "aiops-platform-service", at)
    store.set_status(incident, at, "awaiting_approval")
    ecs = FakeEcs()
    return create_app(config, RuleClassifier(load_playbook()), store=store,
                      actions=lambda dry_run: ecs, notifier=FakeNotifier())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return _app(tmp_path_factory)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_makes_the_api_fail(app, mode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_server_error(case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   checks=[not_a_server_error])

        try:
            no_server_error()
        except Unsatisfiable:   # nothing to make invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:
            raise AssertionError(f"{operation.label} ({mode.value}): {exc}") from exc
