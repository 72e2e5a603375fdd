"""The deployable stack (``deploy/template.yaml``, AWS SAM) through the CloudFormation API.

``aiops deploy create|update|describe|delete`` calls :class:`StackDeployer`. The SAM template is
turned into plain CloudFormation here, with the SAM translator (``aws-sam-translator``), so the
same body goes to AWS and to a local endpoint (whose CloudFormation has no SAM transform); the
Lambda package is uploaded to S3 under a name made of its hash, so an update with new code
replaces the functions' code and one with the same code changes nothing.

IAM (the deployer's, not the platform's): cloudformation:CreateStack, UpdateStack, DeleteStack,
DescribeStacks, DescribeStackEvents, ListStackResources; s3:CreateBucket, PutObject on the
package bucket; and what CloudFormation needs to make each resource of the template (or a
CloudFormation service role that has it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, WaiterError

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "template.yaml"
DEFAULT_STACK = "aiops-platform"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
MAX_TEMPLATE_BODY = 51_200   # bytes CreateStack takes inline; a larger body goes through S3


class StackError(RuntimeError):
    """The stack could not be made, changed, read or deleted; the message says which and why."""


def load_template(path: Path = TEMPLATE) -> dict:
    """The template as data (CloudFormation's YAML: ``!Ref``, ``!Sub`` ... read as their long forms)."""
    from cfnlint.decode import decode

    if not Path(path).is_file():
        raise StackError(f"no template at {path}")
    template, problems = decode(str(path))
    if template is None or problems:
        raise StackError(f"template {path} cannot be read: {problems[0].message if problems else '?'}")
    return template


def to_cloudformation(template: dict, parameters: dict[str, str], region: str = "us-east-1") -> dict:
    """The SAM template as plain CloudFormation (``AWS::Serverless::Function`` -> function + role).

    ``region`` fills ``AWS::Region`` where the translator resolves it; the template names no
    managed policy by name, so the translator looks none up (no IAM call).
    """
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    if "AWS::Serverless-2016-10-31" not in str(template.get("Transform", "")):
        return template
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        return translator.translate(json.loads(json.dumps(template)), parameter_values=dict(parameters),
                                    get_managed_policy_map=dict)
    except Exception as exc:  # noqa: BLE001 - the translator raises its own InvalidDocumentException
        causes = getattr(exc, "causes", None) or [exc]
        raise StackError("the SAM template is invalid: " + "; ".join(str(c) for c in causes)) from None


def missing_parameters(template: dict, parameters: dict[str, str]) -> list[str]:
    """Parameters the template needs (no default) that ``parameters`` does not give."""
    return [name for name, spec in template.get("Parameters", {}).items()
            if "Default" not in spec and name not in parameters]


@dataclass(frozen=True)
class StackResource:
    logical_id: str
    type: str
    physical_id: str | None
    status: str


class StackDeployer:
    """Creates, updates, describes and deletes the platform's stack.

    Parameters
    ----------
    factory : the client factory (the standard AWS environment; a local endpoint in tests).
    name : the stack's name.
    template : the SAM template (``deploy/template.yaml``).
    wait_delay : seconds between status polls while waiting for CloudFormation.
    """

    def __init__(self, factory: Any, name: str = DEFAULT_STACK, template: Path = TEMPLATE,
                 wait_delay: int = 5):
        self.cfn = factory.client("cloudformation")
        self.s3 = factory.client("s3")
        self.name = name
        self.template = Path(template)
        self.wait_delay = wait_delay

    # ------------------------------------------------------------------ code and template

    def upload_package(self, zip_path: Path, bucket: str) -> str:
        """Upload the Lambda package (bucket made if absent); its key, named by its content."""
        data = Path(zip_path).read_bytes()
        key = f"aiops-lambda-{hashlib.sha256(data).hexdigest()[:16]}.zip"
        self._bucket(bucket)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        return key

    def _bucket(self, bucket: str) -> None:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError:
            region = self.s3.meta.region_name
            kwargs = {} if region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}
            self.s3.create_bucket(Bucket=bucket, **kwargs)

    def body(self, parameters: dict[str, str], kept: frozenset[str] = frozenset()) -> dict:
        """The CloudFormation body the stack is made from, with ``parameters`` checked (``kept``:
        those the stack keeps from before)."""
        template = load_template(self.template)
        missing = [name for name in missing_parameters(template, parameters) if name not in kept]
        if missing:
            raise StackError(f"the stack needs parameter(s) {', '.join(missing)} "
                             "(--parameter NAME=VALUE)")
        unknown = sorted(set(parameters) - set(template.get("Parameters", {})))
        if unknown:
            raise StackError(f"unknown parameter(s) {', '.join(unknown)}; the template takes "
                             f"{', '.join(template.get('Parameters', {}))}")
        return to_cloudformation(template, parameters, self.cfn.meta.region_name)

    def _template_argument(self, body: dict, bucket: str | None) -> dict:
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) <= MAX_TEMPLATE_BODY:
            return {"TemplateBody": text}
        if not bucket:
            raise StackError(f"the template is {len(text)} bytes, over CloudFormation's inline "
                             f"{MAX_TEMPLATE_BODY}: give --bucket to pass it through S3")
        key = f"aiops-template-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        self._bucket(bucket)
        self.s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
        url = self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
        return {"TemplateURL": url}

    # ------------------------------------------------------------------ the stack

    def create(self, parameters: dict[str, str], bucket: str | None = None, wait: bool = True) -> dict:
        """Create the stack and (with ``wait``) wait until it is complete; its description."""
        body = self.body(parameters)
        try:
            self.cfn.create_stack(StackName=self.name, Capabilities=CAPABILITIES,
                                  Parameters=_parameters(parameters), OnFailure="ROLLBACK",
                                  Tags=[{"Key": "aiops:stack", "Value": self.name}],
                                  **self._template_argument(body, bucket))
        except ClientError as exc:
            raise StackError(f"cannot create stack {self.name}: {_message(exc)}") from None
        if wait:
            self._wait("stack_create_complete")
        return self.describe()

    def update(self, parameters: dict[str, str], bucket: str | None = None, wait: bool = True) -> dict:
        """Update the stack to the template and ``parameters``; "no change" is not an error.

        A parameter not given keeps its value: one set at creation is sent as ``UsePreviousValue``,
        one left at its default is left out (so it keeps the template's default).
        """
        previous = self.describe()["parameters"]
        body = self.body(parameters, frozenset(previous))
        declared = body.get("Parameters", {})
        kept = [{"ParameterKey": name, "UsePreviousValue": True} for name, value in sorted(previous.items())
                if name in declared and name not in parameters
                and ("Default" not in declared[name] or str(declared[name]["Default"]) != value)]
        try:
            self.cfn.update_stack(StackName=self.name, Capabilities=CAPABILITIES,
                                  Parameters=_parameters(parameters) + kept,
                                  **self._template_argument(body, bucket))
        except ClientError as exc:
            if "No updates are to be performed" in _message(exc):
                return self.describe() | {"changed": False}
            raise StackError(f"cannot update stack {self.name}: {_message(exc)}") from None
        if wait:
            self._wait("stack_update_complete")
        return self.describe() | {"changed": True}

    def describe(self) -> dict:
        """Status, parameters, outputs and every resource with its physical id."""
        try:
            [stack] = self.cfn.describe_stacks(StackName=self.name)["Stacks"]
        except ClientError as exc:
            raise StackError(f"cannot read stack {self.name}: {_message(exc)}") from None
        return {"name": self.name, "status": stack["StackStatus"],
                "reason": stack.get("StackStatusReason"),
                "parameters": {p["ParameterKey"]: p.get("ParameterValue")
                               for p in stack.get("Parameters", [])},
                "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
                "resources": [r.__dict__ for r in self.resources()]}

    def resources(self) -> list[StackResource]:
        out: list[StackResource] = []
        for page in self.cfn.get_paginator("list_stack_resources").paginate(StackName=self.name):
            out += [StackResource(r["LogicalResourceId"], r["ResourceType"], r.get("PhysicalResourceId"),
                                  r["ResourceStatus"]) for r in page["StackResourceSummaries"]]
        return out

    def delete(self, wait: bool = True) -> dict:
        """Delete the stack (the incident table is retained: ``DeletionPolicy: Retain``)."""
        retained = [r for r in self.resources() if r.type == "AWS::DynamoDB::Table"]
        self.cfn.delete_stack(StackName=self.name)
        if wait:
            self._wait("stack_delete_complete")
        return {"name": self.name, "status": "DELETE_COMPLETE" if wait else "DELETE_IN_PROGRESS",
                "retained": [r.physical_id for r in retained]}

    def _wait(self, waiter: str) -> None:
        try:
            self.cfn.get_waiter(waiter).wait(StackName=self.name, WaiterConfig={
                "Delay": self.wait_delay, "MaxAttempts": max(1, 3600 // self.wait_delay)})
        except WaiterError:
            raise StackError(f"stack {self.name} did not reach {waiter.replace('_', ' ')}: "
                             f"{self._first_failure()}") from None

    def _first_failure(self) -> str:
        try:
            events = self.cfn.describe_stack_events(StackName=self.name)["StackEvents"]
        except ClientError as exc:
            return _message(exc)
        failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
        if not failed:
            return "no failed resource reported"
        last = failed[-1]
        return f"{last['LogicalResourceId']} ({last['ResourceType']}): {last.get('ResourceStatusReason')}"


def _parameters(parameters: dict[str, str]) -> list[dict]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())]


def _message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message") or str(exc)
