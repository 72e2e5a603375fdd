"""The least-privilege policy in deploy/ grants what each action declares it needs, and nothing more."""

from __future__ import annotations

import json
from pathlib import Path

from service.dynamo_store import IAM_PERMISSIONS as STORE_PERMISSIONS
from service.ecs import IAM_PERMISSIONS
from service.signing import IAM_PERMISSIONS as SIGNING_PERMISSIONS

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "iam-policy.json"
# Declared beside the code that uses them: service/cloudwatch.py, service/notify.py, service/mail.py.
OTHER_PERMISSIONS = {"cloudwatch:GetMetricStatistics", "sns:Publish", "ses:SendEmail", "ses:SendRawEmail"}


def granted() -> dict[str, list[dict]]:
    statements = json.loads(POLICY.read_text())["Statement"]
    out: dict[str, list[dict]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            out.setdefault(action, []).append(statement)
    return out


def test_every_declared_permission_is_granted_and_nothing_else() -> None:
    needed = ({p for permissions in IAM_PERMISSIONS.values() for p in permissions} | OTHER_PERMISSIONS
              | set(STORE_PERMISSIONS) | set(SIGNING_PERMISSIONS))
    assert set(granted()) == needed


def test_writes_are_scoped_to_the_cluster_and_no_wildcard_actions() -> None:
    policy = granted()
    assert all("*" not in action for action in policy)
    for action in ("ecs:UpdateService",):
        assert all(s["Resource"] != "*" and "CLUSTER" in s["Resource"] for s in policy[action])
    assert all(s["Resource"] != "*" for s in policy["sns:Publish"] + policy["ses:SendEmail"])
    assert [s["Resource"] for s in policy["secretsmanager:GetSecretValue"]] == [
        "arn:aws:secretsmanager:REGION:ACCOUNT_ID:secret:SIGNING_SECRET_NAME-*"], "the signing key only"
    writes = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
    assert all("table/TABLE" in r for a in writes for s in policy[a] for r in s["Resource"]), \
        "the incident log's writes reach its one table only"
