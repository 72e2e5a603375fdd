"""`aiops package lambda` and `aiops deploy` against the local AWS endpoint, as a new user runs them.

The packages are unpacked into a clean interpreter (``python -I -S``: the standard library and the
zip's contents, nothing else), each handler is imported and called, and the rollback function's
package rolls back a service as the stack configured it, on the table the stack made. The stack
deploys, and every resource it declares exists afterwards, but the one the emulator cannot make
(named below); an update changes what it says; a delete keeps the incident table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.aws import ClientFactory
from service.cli import cli
from service.lambda_package import FUNCTIONS, LIMIT_BYTES
from service.stack import StackDeployer, load_template, to_cloudformation
from simulation.ecs_world import EcsWorld

pytestmark = pytest.mark.integration

# The one resource type of the stack moto's CloudFormation cannot make (it skips it with a warning).
NOT_EMULATED = {"AWS::SES::EmailIdentity", "AWS::SecretsManager::Secret"}
SEED = {"cluster": "aiops-platform-cluster", "service": "aiops-platform-service", "reason": "Test"}
CLEAN_PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("lambda")
    result = CliRunner().invoke(cli, ["package", "lambda", "--out", str(out), "--compress-level", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def unpack(zip_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    return into


def clean_run(code: str, path: Path, env: dict[str, str]) -> dict:
    """Run ``code`` in a clean interpreter with only ``path`` added; it prints one JSON line."""
    done = subprocess.run([CLEAN_PYTHON, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(path)!r})\n"
                           + code], capture_output=True, text=True, cwd=path,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_package_fits_and_holds_only_what_its_handler_needs(packages) -> None:
    out, built = packages
    sizes = {p["function"]: p for p in built}
    assert set(sizes) == set(FUNCTIONS)
    for function, package in sizes.items():
        with zipfile.ZipFile(out / f"{function}.zip") as archive:
            unzipped = sum(i.file_size for i in archive.infolist())
            names = {n.split("/")[0] for n in archive.namelist()}
        assert unzipped == round(unzipped) and unzipped <= LIMIT_BYTES, function
        assert round(unzipped / 2**20, 1) == package["unzipped_mb"]
        assert not names & {"training", "simulation", "harness", "mlflow", "matplotlib", "pyarrow", "tests"}
        print(f"{function}: {package['zipped_mb']} MB zipped, {package['unzipped_mb']} MB unzipped "
              f"(limit {package['limit_mb']} MB), {package['files']} files")
    with zipfile.ZipFile(out / "aiops-platform-rollback.zip") as archive:
        rollback = {n.split("/")[0] for n in archive.namelist()}
    assert not rollback & {"sklearn", "scipy", "statsmodels", "joblib"}, "no model code on the rollback path"


def test_the_rca_package_answers_the_seed_payload_in_a_clean_interpreter(packages, tmp_path) -> None:
    out, _ = packages
    where = unpack(out / "aiops-platform-rca.zip", tmp_path / "rca")
    answer = clean_run(
        "import json, service.lambda_handlers as h\n"
        "r = h.rca_handler({'anomalies': ['CPU: 60% (expected 4%)'], 'metrics': {'cpu_utilization': 60}})\n"
        "print(json.dumps({**json.loads(r['body']), 'status': r['statusCode'],"
        " 'loaded': sorted(m for m in ('training', 'simulation', 'mlflow', 'matplotlib')"
        " if m in sys.modules)}))",
        where, {"AIOPS_DATA_DIR": str(tmp_path / "data"), "AWS_REGION": "us-east-1"})
    assert (answer["status"], answer["root_cause"], answer["loaded"]) == (200, "high_cpu", [])
    assert answer["classifier"].startswith("shipped model")


@pytest.fixture(scope="module")
def stack(endpoint, packages) -> dict:
    """The stack, created through `aiops deploy create` with the packages uploaded."""
    out, _ = packages
    ec2 = ClientFactory().client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
    arguments = ["deploy", "create", "--bucket", "aiops-artifacts", "--packages", str(out),
                 "--wait-delay", "1", "--json",
                 "-p", "PlatformImage=123456789012.dkr.ecr.us-east-1.amazonaws.com/aiops:0.1.0",
                 "-p", f"VpcId={vpc}", "-p", f"Subnets={','.join(subnets)}",
                 "-p", "ReportSender=aiops@example.com", "-p", "OnCallEmail=oncall@example.com",
                 "-p", "Mode=dry-run"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _exists(factory: ClientFactory, kind: str, physical: str, stack: dict) -> bool:
    """Whether the AWS API shows the resource (asked of the service that owns it)."""
    c = factory.client
    checks = {
        "AWS::DynamoDB::Table": lambda: c("dynamodb").describe_table(TableName=physical),
        "AWS::SNS::Topic": lambda: c("sns").get_topic_attributes(TopicArn=physical),
        "AWS::EC2::SecurityGroup": lambda: c("ec2").describe_security_groups(GroupIds=[physical]),
        "AWS::EFS::FileSystem": lambda: c("efs").describe_file_systems(FileSystemId=physical)
        ["FileSystems"][0],
        "AWS::EFS::MountTarget": lambda: c("efs").describe_mount_targets(MountTargetId=physical)
        ["MountTargets"][0],
        # moto makes the access point but reports no physical id: look for it on the file system
        "AWS::EFS::AccessPoint": lambda: c("efs").describe_access_points(FileSystemId=next(
            r["physical_id"] for r in stack["resources"] if r["type"] == "AWS::EFS::FileSystem"))
        ["AccessPoints"][0],
        "AWS::IAM::Role": lambda: c("iam").get_role(RoleName=physical),
        "AWS::ECS::Cluster": lambda: c("ecs").describe_clusters(clusters=[physical])["clusters"][0],
        "AWS::Logs::LogGroup": lambda: c("logs").describe_log_groups(logGroupNamePrefix=physical)
        ["logGroups"][0],
        "AWS::ECS::TaskDefinition": lambda: c("ecs").describe_task_definition(taskDefinition=physical),
        "AWS::ElasticLoadBalancingV2::LoadBalancer": lambda: c("elbv2").describe_load_balancers(
            LoadBalancerArns=[physical]),
        "AWS::ElasticLoadBalancingV2::TargetGroup": lambda: c("elbv2").describe_target_groups(
            TargetGroupArns=[physical]),
        "AWS::ElasticLoadBalancingV2::Listener": lambda: c("elbv2").describe_listeners(
            ListenerArns=[physical]),
        "AWS::ECS::Service": lambda: [s for s in c("ecs").describe_services(
            cluster=stack["outputs"]["PlatformClusterName"], services=[physical])["services"]
            if s["status"] == "ACTIVE"][0],
        "AWS::Events::Rule": lambda: c("events").describe_rule(Name=physical.split("|")[-1]),
        "AWS::Lambda::Function": lambda: c("lambda").get_function(FunctionName=physical),
        "AWS::CloudWatch::Dashboard": lambda: c("cloudwatch").get_dashboard(DashboardName=physical),
    }
    try:
        return bool(checks[kind]())
    except (IndexError, factory.client("iam").exceptions.NoSuchEntityException):
        return False


def test_every_resource_the_stack_declares_exists(stack, packages) -> None:
    out, _ = packages
    factory = ClientFactory()
    assert stack["status"] == "CREATE_COMPLETE", stack
    values = {"LambdaCodeBucket": "b", "PlatformImage": "i", "VpcId": "v", "Subnets": "a,b",
              "ReportSender": "a@b.c"}
    declared = to_cloudformation(load_template(), values)["Resources"]
    listed = {r["logical_id"]: r for r in stack["resources"]}
    for logical, resource in declared.items():
        if resource["Type"] in NOT_EMULATED:
            continue
        assert logical in listed, f"{logical} ({resource['Type']}) was not created"
        assert _exists(factory, resource["Type"], listed[logical]["physical_id"], stack), logical
    print("not made by the emulator, so not checked:", sorted(
        f"{k} ({v['Type']})" for k, v in declared.items() if v["Type"] in NOT_EMULATED))


def test_the_stack_configures_what_the_platform_reads(stack) -> None:
    factory = ClientFactory()
    table = stack["outputs"]["IncidentTableName"]
    described = factory.client("dynamodb").describe_table(TableName=table)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert described["GlobalSecondaryIndexes"][0]["IndexName"] == "by_kind"
    rollback = factory.client("lambda").get_function(FunctionName="aiops-platform-rollback")["Configuration"]
    variables = rollback["Environment"]["Variables"]
    assert (rollback["Handler"], variables["AIOPS_STORE"], variables["AIOPS_DYNAMODB_TABLE"]) == (
        "service.lambda_handlers.rollback_handler", "dynamodb", table)
    topic = stack["outputs"]["OnCallTopicArn"]
    subscriptions = factory.client("sns").list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "oncall@example.com")]
    [group] = factory.client("elbv2").describe_target_groups(Names=[g["physical_id"].split("/")[-2]
              for g in stack["resources"] if g["type"].endswith("TargetGroup")])["TargetGroups"]
    assert group["HealthCheckPath"] == "/readyz"


def test_the_deployed_rollback_function_runs_its_package_on_the_stacks_table(stack, packages, endpoint,
                                                                               tmp_path) -> None:
    """The rollback package, in a clean interpreter with the function's environment as the stack set it,
    rolls the seed's service back once, and the same alarm again is held by the cooldown the table keeps."""
    import pandas as pd

    out, _ = packages
    factory = ClientFactory()
    world = EcsWorld(factory.client("ecs"), SEED["cluster"], SEED["service"], "aiops-platform",
                     endpoint_url=endpoint, ec2_client=factory.client("ec2"))
    # moto keeps one state per process: other tests may have registered this family's revisions too
    now_on = world.setup(pd.Timestamp("2026-11-02 09:00", tz="UTC"), revisions=3).revision
    variables = factory.client("lambda").get_function(
        FunctionName="aiops-platform-rollback")["Configuration"]["Environment"]["Variables"]
    env = {**variables, "AIOPS_DATA_DIR": str(tmp_path / "tmp"),
           "AWS_LAMBDA_FUNCTION_NAME": "aiops-platform-rollback",
           **{k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                                         "AWS_SECRET_ACCESS_KEY")}}
    where = unpack(out / "aiops-platform-rollback.zip", tmp_path / "rollback")
    call = ("import json, types, service.lambda_handlers as h\n"
            f"r = h.rollback_handler({SEED!r}, types.SimpleNamespace(aws_request_id=INVOCATION))\n"
            "print(json.dumps({**json.loads(r['body']), 'status': r['statusCode'],"
            " 'loaded': sorted(m for m in ('sklearn', 'scipy', 'training', 'simulation', 'mlflow',"
            " 'matplotlib') if m in sys.modules)}))")
    first = clean_run("INVOCATION = 'alarm-1'\n" + call, where, env)
    assert (first["status"], first.get("change"), first["loaded"]) == (
        200, f"task definition aiops-platform:{now_on} -> aiops-platform:{now_on - 1}", []), first
    again = clean_run("INVOCATION = 'alarm-2'\n" + call, where, env)
    assert (again["status"], again.get("reason")) == (409, "cooldown"), again


def test_update_then_delete_keeps_the_incident_log(stack) -> None:
    factory = ClientFactory()
    deployer = StackDeployer(factory, wait_delay=1)
    updated = deployer.update({"Mode": "approve"})   # the other parameters keep their values
    assert updated["status"] == "UPDATE_COMPLETE" and updated["parameters"]["Mode"] == "approve"
    assert updated["parameters"]["ReportSender"] == "aiops@example.com"
    variables = factory.client("lambda").get_function(
        FunctionName="aiops-platform-rollback")["Configuration"]["Environment"]["Variables"]
    assert variables["AIOPS_MODE"] == "approve", "the functions follow the new mode"
    result = CliRunner().invoke(cli, ["deploy", "delete", "--yes", "--wait-delay", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["retained"] == [stack["outputs"]["IncidentTableName"]]
    factory.client("dynamodb").describe_table(TableName=stack["outputs"]["IncidentTableName"])
    result = CliRunner().invoke(cli, ["deploy", "describe"])
    assert result.exit_code == 1 and "aiops-platform" in result.output


def test_a_missing_parameter_is_named_before_any_call(endpoint) -> None:
    result = CliRunner().invoke(cli, ["deploy", "create", "--stack-name", "other", "-p", "VpcId=vpc-1"])
    assert result.exit_code == 1
    assert "needs parameter(s) PlatformImage, LambdaCodeBucket, Subnets, ReportSender" in result.output
