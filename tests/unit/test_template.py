"""The stack in deploy/: cfn-lint and the SAM translator accept it, and it declares what the code needs
(the incident table the DynamoDB adapter expects, the least-privilege policy of deploy/, the seed's
functions, health checks on the routes the API serves)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from service.dynamo_store import IAM_PERMISSIONS as STORE_PERMISSIONS
from service.dynamo_store import TABLE_SCHEMA, TTL_ATTRIBUTE
from service.ecs import IAM_PERMISSIONS
from service.stack import TEMPLATE, StackError, load_template, missing_parameters, to_cloudformation

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PARAMETERS = {"PlatformImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/aiops:0.1.0",
              "LambdaCodeBucket": "artifacts", "VpcId": "vpc-0abc", "Subnets": "subnet-1,subnet-2",
              "ReportSender": "aiops@example.com", "WatchedServices": "web,api"}


@pytest.fixture(scope="module")
def translated() -> dict:
    return to_cloudformation(load_template(), PARAMETERS)


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def lint(path: Path) -> list[str]:
    from cfnlint.api import lint_file

    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint_file(path)]


def test_cfn_lint_finds_nothing_wrong() -> None:
    assert lint(TEMPLATE) == []


def test_cfn_lint_would_say_so(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("BillingMode: PAY_PER_REQUEST", "BillingMode: FREE"))
    assert any("FREE" in problem for problem in lint(broken))


def test_the_sam_translator_makes_the_seeds_functions(translated) -> None:
    functions = {f["Properties"]["FunctionName"]: f["Properties"]
                 for f in resources(translated, "AWS::Lambda::Function").values()}
    assert set(functions) == {"aiops-platform-rca", "aiops-platform-rollback"}
    assert functions["aiops-platform-rca"]["Handler"] == "service.lambda_handlers.rca_handler"
    rollback = functions["aiops-platform-rollback"]
    assert rollback["Handler"] == "service.lambda_handlers.rollback_handler"
    assert rollback["Environment"]["Variables"]["AIOPS_STORE"] == "dynamodb", "shares the watcher's log"
    assert "Transform" not in translated and not resources(translated, "AWS::Serverless::Function")


def test_the_translator_refuses_a_broken_function() -> None:
    template = load_template()
    del template["Resources"]["RollbackFunction"]["Properties"]["Handler"]
    del template["Globals"]["Function"]["Runtime"]
    template["Resources"]["RollbackFunction"]["Properties"]["CodeUri"] = 7
    with pytest.raises(StackError, match="RollbackFunction"):
        to_cloudformation(template, PARAMETERS)


def test_the_table_is_the_one_the_adapter_expects() -> None:
    [table] = resources(load_template(), "AWS::DynamoDB::Table").values()
    spec = table["Properties"]
    for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode"):
        assert spec[key] == TABLE_SCHEMA[key], key
    assert spec["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert spec["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain", "deleting the stack keeps the incident log"


def _actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in s["Action"]}


def test_the_roles_grant_what_the_code_declares_and_no_more(translated) -> None:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())["Statement"]
    roles = resources(translated, "AWS::IAM::Role")
    platform = roles["PlatformTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert _actions(platform) - {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"} \
        == _actions(policy), "the platform's task role is deploy/iam-policy.json"
    rollback = roles["RollbackFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert _actions(rollback) == set(IAM_PERMISSIONS["rollback"]) | set(STORE_PERMISSIONS)
    assert not roles["RcaFunctionRole"]["Properties"].get("Policies"), "RCA calls no AWS API"
    for role in roles.values():
        for document in role["Properties"].get("Policies", []):
            assert all("*" not in a for a in _actions(document["PolicyDocument"]["Statement"]))


def test_the_health_checks_use_the_apis_routes(translated) -> None:
    from service.api import health_router

    routes = {r.path for r in health_router(None).routes}   # the routes only close over the context
    [group] = resources(translated, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert group["Properties"]["HealthCheckPath"] == "/readyz" and "/readyz" in routes
    task = translated["Resources"]["PlatformTaskDefinition"]["Properties"]
    api = next(c for c in task["ContainerDefinitions"] if c["Name"] == "api")
    assert "/healthz" in " ".join(api["HealthCheck"]["Command"]) and "/healthz" in routes


def test_nightly_training_runs_as_an_ecs_task_on_a_schedule(translated) -> None:
    rule = translated["Resources"]["NightlyTraining"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "TrainingSchedule"}
    [target] = rule["Targets"]
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "TrainingTaskDefinition"}
    train = translated["Resources"]["TrainingTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert train["Command"][:2] == ["aiops", "train"]


def test_one_topic_per_escalation_role(translated) -> None:
    from rca.playbook import load_playbook

    topics = {t["Properties"]["TopicName"] for t in resources(translated, "AWS::SNS::Topic").values()}
    roles = [step.role for step in load_playbook(None).escalation]
    assert topics == {"aiops-" + r.replace(" ", "-") for r in roles}


def test_the_watch_config_in_the_environment_is_valid() -> None:
    """The TOML the stack hands the containers parses as a watch config (services, topics per role)."""
    from service.watch_config import parse_watch_config

    task = load_template()["Resources"]["PlatformTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    [text, _] = next(e["Value"]["Fn::Sub"] for e in task["Environment"]
                     if e["Name"] == "AIOPS_CONFIG_TOML")
    text = text.replace("${Services}", '", "'.join(["web", "api"]))
    for name in ("Mode", "WatchedCluster", "OnCallTopic", "TeamLeadTopic", "EngineeringManagerTopic",
                 "IncidentCommanderTopic"):
        text = text.replace("${" + name + "}", "auto" if name == "Mode" else f"x-{name}")
    config = parse_watch_config(text)
    assert config.watched() == ["x-WatchedCluster/web", "x-WatchedCluster/api"]
    assert set(config.notify.sns_topics) == {"on-call engineer", "team lead", "engineering manager",
                                             "incident commander"}


def test_parameters_a_user_must_give() -> None:
    assert set(missing_parameters(load_template(), {})) == {
        "PlatformImage", "LambdaCodeBucket", "VpcId", "Subnets", "ReportSender"}


def test_the_image_holds_every_package_and_starts_through_the_entrypoint(tmp_path) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for package in ("detection", "rca", "models", "training", "service", "simulation", "harness"):
        assert f"COPY {package} " in dockerfile, package
    entry = DEPLOY / "entrypoint.sh"
    config = tmp_path / "aiops.toml"
    done = subprocess.run(["sh", str(entry), "sh", "-c", 'cat "$AIOPS_CONFIG"'], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "AIOPS_CONFIG_TOML": 'services = ["a/b"]',
                               "AIOPS_CONFIG_FILE": str(config)})
    assert done.returncode == 0 and done.stdout.strip() == 'services = ["a/b"]', done.stderr


def test_the_functions_run_on_the_runtime_the_packages_are_built_for(translated) -> None:
    from service.lambda_package import RUNTIME, PackageError, check_build_machine

    runtimes = {f["Properties"]["Runtime"] for f in resources(translated, "AWS::Lambda::Function").values()}
    assert runtimes == {RUNTIME}
    with pytest.raises(PackageError, match=r"with python3\.11 .*; this is python3\.12 on Linux x86_64"):
        check_build_machine((3, 12), ("Linux", "x86_64"))
    with pytest.raises(PackageError, match="this is python3.11 on Darwin arm64"):
        check_build_machine((3, 11), ("Darwin", "arm64"))
    check_build_machine((3, 11), ("Linux", "x86_64"))


def test_several_replicas_may_watch_the_fleet() -> None:
    parameter = load_template()["Parameters"]["Replicas"]
    assert parameter["MaxValue"] > 1 and "leases" in parameter["Description"]


def test_every_process_that_loads_models_reads_the_signing_key_from_secrets_manager(translated) -> None:
    tasks = resources(translated, "AWS::ECS::TaskDefinition")
    containers = [c for t in tasks.values() for c in t["Properties"]["ContainerDefinitions"]]
    assert {c["Name"] for c in containers} == {"watcher", "api", "train"}
    for container in containers:
        variables = {v["Name"]: v["Value"] for v in container["Environment"]}
        assert variables["AIOPS_SIGNING_SECRET_ID"] == {"Ref": "ModelSigningKey"}, container["Name"]
    roles = resources(translated, "AWS::IAM::Role")
    for role in ("PlatformTaskRole", "TrainingTaskRole"):
        statements = roles[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
        assert [s["Resource"] for s in reads] == [{"Ref": "ModelSigningKey"}], role
    generated = translated["Resources"]["ModelSigningKey"]["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32, "at least the loaders' minimum key length"
