"""The ECS side of the simulated service: we play the ECS service scheduler against moto.

moto stores clusters, services, task definitions and tasks but schedules nothing: a service never
starts tasks, a stopped task is never replaced and a new task definition never rolls out. The
simulator calls :meth:`EcsWorld.sync` once per simulated minute to do what the scheduler would,
so that actions taken through the ECS API (scale, restart, rollback) show up as running tasks the
metric physics can react to. A new deployment of the same revision (UpdateService
forceNewDeployment: moto gives the PRIMARY deployment a new id) is rolled out as ECS does with
its default deployment configuration (``minimumHealthyPercent`` 100, ``maximumPercent`` 200):
new tasks start first, and old ones stop once as many new ones have run for a minute, so the
running count never falls below the desired count. Task start times are kept in *simulated*
time, keyed by task ARN, because moto's own timestamps are wall clock.

A steady-state sync costs two API calls (DescribeServices, ListTasks); DescribeTasks is only
called for task ARNs this world has not seen yet, RunTask/StopTask only when something changes.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
import pandas as pd

CONTAINER_NAME = "app"
RUN_TASK_BATCH = 10  # RunTask starts at most 10 tasks per call on AWS
DESCRIBE_TASKS_BATCH = 100  # DescribeTasks takes at most 100 ARNs per call
SIM_STARTED_BY = "ecs-svc/aiops-sim"  # the scheduler's startedBy when no deployment id is known
PIN_TASKS = {"model_name": "ecs::task",
             "transition": {"progression": "manual", "times": 1_000_000_000}}


@dataclass(frozen=True)
class TaskInfo:
    """One running task of the service as the simulated scheduler knows it."""

    arn: str
    started_at: pd.Timestamp  # simulated time (UTC) at which our scheduler started it
    revision: int  # task definition revision it runs
    deployment: str = ""  # the deployment id that started it (its startedBy)


@dataclass(frozen=True)
class EcsSnapshot:
    """The service after one scheduler pass: what the metric physics needs to know."""

    desired_count: int
    tasks: tuple[TaskInfo, ...]  # running tasks of the service, oldest first
    task_definition: str  # "family:revision" the service is set to now
    revision: int
    replaced: tuple[str, ...]  # ARNs stopped by someone else and replaced in this sync
    started: int  # tasks started in this sync
    stopped: int  # surplus tasks stopped in this sync (desired count lowered)

    @property
    def running(self) -> int:
        return len(self.tasks)


def parse_task_definition(value: str) -> tuple[str, int]:
    """``(family, revision)`` from a task definition ARN or a literal ``family:revision``.

    moto stores ``update_service(taskDefinition="fam:3")`` as the literal string, AWS returns ARNs.
    """
    name = value.rsplit("/", 1)[-1]
    family, sep, revision = name.rpartition(":")
    if not sep or not family or not revision.isdigit():
        raise ValueError(f"not a task definition 'family:revision' or ARN: {value!r}")
    return family, int(revision)


def _utc(now: pd.Timestamp) -> pd.Timestamp:
    now = pd.Timestamp(now)
    return now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class EcsWorld:
    """The simulated ECS service: sets it up on the endpoint and plays its scheduler.

    Parameters
    ----------
    ecs_client : a boto3 ECS client pointed at the (moto) endpoint.
    cluster, service, family : names of the cluster, the service and its task definition family.
    endpoint_url : the moto endpoint; when given, ``setup`` pins moto's task lifecycle so tasks
        stay RUNNING until stopped (otherwise every DescribeTasks moves a task one step to STOPPED).
    ec2_client : used by ``setup`` only, to find the default VPC's subnet and security group that
        awsvpc networking needs; made from the ECS client's region and endpoint when None.
    """

    def __init__(self, ecs_client: Any, cluster: str, service: str, family: str,
                 endpoint_url: str | None = None, ec2_client: Any | None = None,
                 maximum_percent: int = 200) -> None:
        self.ecs = ecs_client
        self.cluster = cluster
        self.service = service
        self.family = family
        self.endpoint_url = endpoint_url
        self._ec2 = ec2_client
        self.maximum_percent = maximum_percent
        self._tasks: dict[str, TaskInfo] = {}  # our running tasks, in start order
        self._foreign: set[str] = set()  # running task ARNs of the cluster that are not ours

    # ---------------------------------------------------------------- setup and operator moves

    @property
    def group(self) -> str:
        """The task group ECS gives a service's tasks."""
        return f"service:{self.service}"

    def setup(self, now: pd.Timestamp, desired_count: int = 2, revisions: int = 2) -> EcsSnapshot:
        """Create the cluster, ``revisions`` task definitions and the service, then start its tasks.

        The service runs on the latest revision (image tag ``v{revisions}``), with awsvpc
        networking on FARGATE in the default VPC, as a real Fargate service would.
        """
        if revisions < 1:
            raise ValueError(f"revisions must be >= 1, got {revisions}")
        if self.endpoint_url:
            self.pin_task_lifecycle()
        self._tasks.clear()
        self._foreign.clear()
        self.ecs.create_cluster(clusterName=self.cluster)
        arn = ""
        for number in range(1, revisions + 1):
            arn = self._register(f"v{number}")
        self.ecs.create_service(cluster=self.cluster, serviceName=self.service, taskDefinition=arn,
                                desiredCount=desired_count, launchType="FARGATE",
                                networkConfiguration=self._default_network())
        return self.sync(now)

    def pin_task_lifecycle(self) -> None:
        """Make moto keep tasks RUNNING until stopped (its default walks them to STOPPED)."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/state-manager/set-transition",
            data=json.dumps(PIN_TASKS).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def deploy(self, image_tag: str) -> int:
        """Register a new revision with ``image_tag`` and point the service at it (a deploy).

        The next :meth:`sync` replaces every task with one on the new revision.
        """
        arn = self._register(image_tag)
        self.ecs.update_service(cluster=self.cluster, service=self.service, taskDefinition=arn)
        return parse_task_definition(arn)[1]

    def set_desired_count(self, count: int) -> None:
        """Set the service's desired count (the scenario runner resets it between faults)."""
        self.ecs.update_service(cluster=self.cluster, service=self.service, desiredCount=count)

    def kill(self, arn: str, reason: str) -> None:
        """Stop one of the service's tasks as ECS itself would (an OOM kill); the next
        :meth:`sync` sees it gone and replaces it."""
        self.ecs.stop_task(cluster=self.cluster, task=arn, reason=reason)

    def started_at(self, arn: str) -> pd.Timestamp | None:
        """Simulated start time of one of the service's running tasks, None if unknown."""
        info = self._tasks.get(arn)
        return info.started_at if info else None

    # ---------------------------------------------------------------- the scheduler

    def sync(self, now: pd.Timestamp) -> EcsSnapshot:
        """One scheduler pass at simulated time ``now``; see the module docstring for its cost.

        Raises LookupError when the service is missing or no longer ACTIVE.
        """
        now = _utc(now)
        service = self._describe_service()
        desired = int(service["desiredCount"])
        task_definition = service["taskDefinition"]
        family, revision = parse_task_definition(task_definition)
        running = self._running_arns()
        self._learn(running - self._tasks.keys() - self._foreign, now)
        self._foreign &= running
        replaced = tuple(arn for arn in self._tasks if arn not in running)
        for arn in replaced:
            del self._tasks[arn]
        self._stop([a for a, t in self._tasks.items() if t.revision != revision], "deployment")
        deployment = (service.get("deployments") or [{}])[0].get("id") or SIM_STARTED_BY
        # tasks someone else started in the service's group (no startedBy) are adopted as they are
        outdated = [a for a, t in self._tasks.items() if t.deployment and t.deployment != deployment]
        if outdated:
            surplus, started = self._roll(outdated, deployment, desired, task_definition, revision,
                                          service, now)
        else:
            surplus = list(self._tasks)[desired:][::-1] if len(self._tasks) > desired else []
            self._stop(surplus, "desired count lowered")
            started = self._start(desired - len(self._tasks), task_definition, revision, service, now)
        return EcsSnapshot(desired_count=desired, tasks=tuple(self._tasks.values()),
                           task_definition=f"{family}:{revision}", revision=revision,
                           replaced=replaced, started=started, stopped=len(surplus))

    def _roll(self, outdated: list[str], deployment: str, desired: int, task_definition: str,
              revision: int, service: dict, now: pd.Timestamp) -> tuple[list[str], int]:
        """One step of a rolling deployment: stop old tasks that new, settled ones replace, then
        start new ones within ``maximumPercent``. Returns (stopped, started)."""
        fresh = [a for a, t in self._tasks.items() if t.deployment in (deployment, "")]
        settled = [a for a in fresh if self._tasks[a].started_at < now]
        stop = outdated[:max(0, len(settled) + len(outdated) - desired)]
        self._stop(stop, "rolling deployment")
        room = desired * self.maximum_percent // 100 - len(self._tasks)
        started = self._start(max(0, min(desired - len(fresh), room)), task_definition, revision,
                              service, now)
        return stop, started

    def _describe_service(self) -> dict:
        response = self.ecs.describe_services(cluster=self.cluster, services=[self.service])
        services = [s for s in response.get("services", []) if s.get("status") == "ACTIVE"]
        if not services:
            raise LookupError(f"service {self.service} not found (or not active) "
                              f"in cluster {self.cluster}")
        return services[0]

    def _running_arns(self) -> set[str]:
        """ARNs of tasks meant to run; moto ignores serviceName, so this may hold others."""
        arns: set[str] = set()
        pages = self.ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster, serviceName=self.service, desiredStatus="RUNNING")
        for page in pages:
            arns.update(page.get("taskArns", []))
        return arns

    def _learn(self, unknown: set[str], now: pd.Timestamp) -> None:
        """Sort ARNs seen for the first time into ours (adopted at ``now``) and foreign ones."""
        for batch in _chunks(sorted(unknown), DESCRIBE_TASKS_BATCH):
            for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=batch)["tasks"]:
                arn = task["taskArn"]
                if task.get("group") == self.group:
                    revision = parse_task_definition(task["taskDefinitionArn"])[1]
                    self._tasks[arn] = TaskInfo(arn, now, revision, task.get("startedBy") or "")
                else:
                    self._foreign.add(arn)

    def _stop(self, arns: list[str], why: str) -> None:
        for arn in arns:
            self.ecs.stop_task(cluster=self.cluster, task=arn, reason=f"aiops-sim scheduler: {why}")
            del self._tasks[arn]

    def _start(self, count: int, task_definition: str, revision: int, service: dict,
               now: pd.Timestamp) -> int:
        args = self._run_task_args(task_definition, service)
        started = 0
        while started < count:
            response = self.ecs.run_task(**args, count=min(RUN_TASK_BATCH, count - started))
            if response.get("failures") or not response.get("tasks"):
                failures = response.get("failures")
                raise RuntimeError(f"run_task failed for {self.service}: {failures}")
            for task in response["tasks"]:
                self._tasks[task["taskArn"]] = TaskInfo(task["taskArn"], now, revision, args["startedBy"])
            started += len(response["tasks"])
        return started

    def _run_task_args(self, task_definition: str, service: dict) -> dict:
        """RunTask arguments that make a task belong to the service, as the scheduler's do."""
        deployments = service.get("deployments") or [{}]
        args = {"cluster": self.cluster, "taskDefinition": task_definition,
                "group": self.group, "startedBy": deployments[0].get("id") or SIM_STARTED_BY,
                "launchType": service.get("launchType") or "FARGATE"}
        if service.get("networkConfiguration"):
            args["networkConfiguration"] = service["networkConfiguration"]
        return args

    # ---------------------------------------------------------------- task definitions, network

    def _register(self, image_tag: str) -> str:
        """Register one revision of the family (a small Fargate container) and return its ARN."""
        response = self.ecs.register_task_definition(
            family=self.family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
            cpu="256", memory="512",
            containerDefinitions=[{"name": CONTAINER_NAME, "image": f"{self.family}:{image_tag}",
                                   "essential": True, "memory": 512,
                                   "portMappings": [{"containerPort": 8080, "protocol": "tcp"}]}])
        return response["taskDefinition"]["taskDefinitionArn"]

    def _ec2_client(self) -> Any:
        if self._ec2 is None:
            meta = self.ecs.meta
            self._ec2 = boto3.session.Session().client(
                "ec2", region_name=meta.region_name, endpoint_url=meta.endpoint_url,
                config=meta.config)
        return self._ec2

    def _default_network(self) -> dict:
        """awsvpc configuration on a default subnet and the default VPC's default group."""
        ec2 = self._ec2_client()
        subnets = ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        if not subnets:
            raise RuntimeError("no default subnet found for the simulated service")
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [subnets[0]["VpcId"]]},
                     {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        if not groups:
            raise RuntimeError("no default security group found for the simulated service")
        return {"awsvpcConfiguration": {"subnets": [subnets[0]["SubnetId"]],
                                        "securityGroups": [groups[0]["GroupId"]],
                                        "assignPublicIp": "DISABLED"}}
