"""Bad input never escapes as anything but a PayloadError naming the field: the request models, the
JSON reader and the payload parser, over values hypothesis makes up, and the reproductions of
issue 11 (a huge integer, deep nesting, API Gateway bodies that are not base64, UTF-8 or text)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rca.payload import PayloadError, parse_payload
from service import lambda_handlers
from service.requests import ActionCommand, PersonStep, RollbackCommand, load_json, parse

MODELS = [ActionCommand, RollbackCommand, PersonStep]
FIELDS = ["cluster", "service", "action", "reason", "count", "to_revision", "incident_id", "dry_run",
          "request_id", "by", "note", "anomalies", "metrics", "context"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["scale_to", "rollback", "scale_up", "restart_tasks", "CPU: 60% (expected 4%)"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=20)
payloads = st.dictionaries(st.sampled_from(FIELDS), values, max_size=8) | values


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads)
def test_no_payload_makes_a_request_model_or_the_parser_raise_anything_else(payload) -> None:
    for model in MODELS:
        try:
            parse(model, payload)
        except PayloadError as exc:
            assert exc.field and exc.message
    try:
        parse_payload(payload)
    except PayloadError as exc:
        assert exc.field and exc.message


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_any_text_is_json_or_a_payload_error(text) -> None:
    try:
        load_json(text)
    except PayloadError as exc:
        assert exc.field == "payload"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 40 + "1" + "}" * 40])
def test_deep_nesting_is_refused_by_name_not_by_recursion(text) -> None:
    with pytest.raises(PayloadError, match="nested deeper than 32 levels"):
        load_json(text)


def test_an_integer_beyond_any_float_is_a_field_error() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload({"anomalies": [], "metrics": {"cpu_utilization": 10**400}})
    assert caught.value.field == "metrics.cpu_utilization" and "401 digits" in caught.value.message


def test_bounds_are_the_same_for_every_door() -> None:
    with pytest.raises(PayloadError, match="incident_id"):
        parse(ActionCommand, {"action": "scale_up", "reason": "r", "incident_id": 2**64})
    with pytest.raises(PayloadError, match="to_revision"):
        parse(RollbackCommand, {"cluster": "c", "service": "s", "reason": "r", "to_revision": "2"})
    with pytest.raises(PayloadError, match="count: only scale_to takes a count"):
        parse(ActionCommand, {"action": "scale_up", "reason": "r", "count": 3})


@pytest.fixture
def lambda_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIOPS_CONFIG", raising=False)


def _gateway(body, encoded: bool = False) -> dict:
    return {"body": body, "isBase64Encoded": encoded, "requestContext": {}, "headers": {}}


@pytest.mark.parametrize("event, message", [
    (_gateway("%%% not base64", encoded=True), "not valid base64"),
    (_gateway(base64.b64encode(b"\xff\xfe{}").decode(), encoded=True), "not UTF-8"),
    (_gateway({"cluster": "c"}), "must be JSON text, got dict"),
    (_gateway("[" * 5000 + "]" * 5000), "nested deeper"),
])
@pytest.mark.parametrize("handler", [lambda_handlers.rca_handler, lambda_handlers.rollback_handler],
                         ids=["rca", "rollback"])
def test_a_bad_api_gateway_body_is_a_422_naming_it(handler, event, message, lambda_env) -> None:
    reply = handler(event)
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 422 and body["error"]["field"] == "body"
    assert message in body["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads)
def test_the_rca_lambda_answers_200_or_422_to_anything(payload, tmp_path_factory) -> None:
    import os

    os.environ["AIOPS_DATA_DIR"] = str(tmp_path_factory.getbasetemp() / "rca-lambda")
    try:
        reply = lambda_handlers.rca_handler(payload)
    finally:
        del os.environ["AIOPS_DATA_DIR"]
    assert reply["statusCode"] in (200, 422), reply


def test_the_dashboard_answers_a_superscript_incident_number_404(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from rca.playbook import load_playbook
    from rca.rules import RuleClassifier
    from service.api import create_app
    from service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path), RuleClassifier(load_playbook()))
    assert TestClient(app, raise_server_exceptions=False).get("/incidents/%C2%B2").status_code == 404


def test_the_rca_command_refuses_deep_nesting_in_one_line(tmp_path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "rca", "--rules", "--payload",
                                      "[" * 100_000 + "]" * 100_000])
    assert result.exit_code == 2, "bad input, not a crash"
    assert "nested deeper than 32 levels" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
