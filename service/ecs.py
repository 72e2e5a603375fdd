"""Remediation actions on an ECS service through the ECS API: scale, restart tasks, roll back.

The same code runs on AWS and on the local moto endpoint; where moto differs (ListTasks ignores
serviceName, ListTaskDefinitions ignores sort and paging) the code does the filtering and sorting
itself, in a way that is also correct on AWS. ECS has no DryRun flag, so dry-run is enforced
here: a dry-run action reads, decides and reports, and makes no mutating call.

Each action declares the IAM permissions it needs (also in :data:`IAM_PERMISSIONS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

DESCRIBE_TASKS_BATCH = 100  # DescribeTasks takes at most 100 ARNs per call

IAM_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "describe": ("ecs:DescribeServices",),
    "status": ("ecs:DescribeServices", "application-autoscaling:DescribeScalableTargets"),
    "scaling_target": ("application-autoscaling:DescribeScalableTargets",),
    "scale_up": ("ecs:DescribeServices", "ecs:UpdateService",
                 "application-autoscaling:DescribeScalableTargets"),
    "scale_to": ("ecs:DescribeServices", "ecs:UpdateService",
                 "application-autoscaling:DescribeScalableTargets"),
    "restart_tasks": ("ecs:DescribeServices", "ecs:UpdateService"),
    "rollback": ("ecs:DescribeServices", "ecs:ListTaskDefinitions", "ecs:UpdateService"),
    "oom_stopped_tasks": ("ecs:ListTasks", "ecs:DescribeTasks"),
}
SCALABLE_DIMENSION = "ecs:service:DesiredCount"

T = TypeVar("T")


class EcsActionError(Exception):
    """An ECS action could not be done; the message is one line naming the cluster/service."""


@dataclass(frozen=True)
class ServiceState:
    """What DescribeServices says about one service, reduced to what remediation decides on."""

    cluster: str
    service: str
    desired_count: int
    running_count: int
    task_definition: str  # as the API returns it (an ARN on AWS; moto may keep "family:rev")
    family: str
    revision: int
    deployments: int  # number of deployments listed
    rolling_out: bool  # a deployment other than PRIMARY is still listed (being replaced)
    status: str = "ACTIVE"  # ACTIVE | DRAINING | INACTIVE
    deployed_at: str | None = None  # when the PRIMARY deployment was created (ISO 8601)

    @property
    def task_definition_name(self) -> str:
        return f"{self.family}:{self.revision}" if self.family else ""


@dataclass(frozen=True)
class ScalingTarget:
    """An Application Auto Scaling target attached to the service's desired count."""

    min_capacity: int
    max_capacity: int
    suspended: bool = False  # dynamic scale-in suspended


@dataclass(frozen=True)
class ServiceStatus:
    """What ``aiops status`` shows: the state, every deployment, the newest events, the scaler."""

    state: ServiceState
    deployments: list[dict]
    events: list[dict]
    scaling: ScalingTarget | None

    def to_dict(self) -> dict:
        return {"state": asdict(self.state), "deployments": self.deployments, "events": self.events,
                "scaling": asdict(self.scaling) if self.scaling else None}


@dataclass(frozen=True)
class ActionResult:
    """One action: the service before and after, and the change in words."""

    action: str  # "scale_up" | "scale_to" | "restart_tasks" | "rollback"
    before: ServiceState
    after: ServiceState
    change: str  # "desired count 2 -> 3", "stopped 2 tasks", "task definition f:3 -> f:2"
    dry_run: bool = False

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (nested states as dicts)."""
        return asdict(self)


def parse_task_definition(value: str | None) -> tuple[str, int]:
    """``(family, revision)`` from an ARN or a literal ``family:revision``; ``("", 0)`` if empty."""
    if not value:
        return "", 0
    family, sep, revision = value.rsplit("/", 1)[-1].rpartition(":")
    if not sep or not family or not revision.isdigit():
        return value.rsplit("/", 1)[-1], 0
    return family, int(revision)


def _state(cluster: str, service: dict) -> ServiceState:
    task_definition = service.get("taskDefinition") or ""
    family, revision = parse_task_definition(task_definition)
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    created = primary.get("createdAt")
    return ServiceState(
        cluster=cluster, service=service["serviceName"],
        desired_count=int(service.get("desiredCount", 0)),
        running_count=int(service.get("runningCount", 0)),
        task_definition=task_definition, family=family, revision=revision,
        deployments=len(deployments),
        rolling_out=any(d.get("status") != "PRIMARY" for d in deployments),
        status=service.get("status", "ACTIVE"),
        deployed_at=created.isoformat() if hasattr(created, "isoformat") else created)


def _out_of_memory(task: dict) -> bool:
    """Whether ECS says the task (or one of its containers) stopped for running out of memory."""
    reasons = [task.get("stoppedReason") or ""] + [c.get("reason") or "" for c in
                                                   task.get("containers") or []]
    return any("OutOfMemory" in reason for reason in reasons)


def _error(exc: Exception, cluster: str, service: str, what: str) -> EcsActionError:
    """One-line EcsActionError for a botocore error, naming the cluster and service."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "ClusterNotFoundException":
            return EcsActionError(f"cluster {cluster} not found")
        if code == "ServiceNotFoundException":
            return EcsActionError(f"service {service} not found in cluster {cluster}")
        if code == "ServiceNotActiveException":
            return EcsActionError(f"service {service} in cluster {cluster} is not active")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return EcsActionError(f"access denied to {what} service {service} in cluster "
                                  f"{cluster}: {message}")
        return EcsActionError(f"{what} service {service} in cluster {cluster} failed: "
                              f"{code}: {message}")
    return EcsActionError(f"{what} service {service} in cluster {cluster} failed: {exc}")


class EcsActions:
    """Remediation actions on ECS services.

    Parameters
    ----------
    ecs_client : a boto3 ECS client (from ``ClientFactory().client("ecs")``).
    dry_run : decide and report only; no UpdateService or StopTask call is made.
    autoscaling_client : a boto3 Application Auto Scaling client; without it no scaler is seen.
    """

    def __init__(self, ecs_client: Any, dry_run: bool = False,
                 autoscaling_client: Any | None = None) -> None:
        self.ecs = ecs_client
        self.dry_run = dry_run
        self.autoscaling = autoscaling_client

    def _call(self, what: str, cluster: str, service: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, cluster, service, what) from exc

    # ---------------------------------------------------------------- reads

    def describe(self, cluster: str, service: str) -> ServiceState:
        """The service's current state.

        IAM: ecs:DescribeServices.
        """
        response = self._call("describe", cluster, service, lambda: self.ecs.describe_services(
            cluster=cluster, services=[service]))
        found = response.get("services") or []
        if not found:
            raise EcsActionError(f"service {service} not found in cluster {cluster}")
        return _state(cluster, found[0])

    def status(self, cluster: str, service: str, events: int = 10) -> ServiceStatus:
        """The service's state, deployments, newest ``events`` and attached scaler, for a person.

        IAM: ecs:DescribeServices, application-autoscaling:DescribeScalableTargets.
        """
        response = self._call("describe", cluster, service, lambda: self.ecs.describe_services(
            cluster=cluster, services=[service]))
        found = response.get("services") or []
        if not found:
            raise EcsActionError(f"service {service} not found in cluster {cluster}")
        raw = found[0]
        keep = ("id", "status", "taskDefinition", "desiredCount", "runningCount", "pendingCount",
                "failedTasks", "rolloutState", "createdAt", "updatedAt")
        deployments = [{k: d.get(k) for k in keep if k in d} for d in raw.get("deployments") or []]
        newest = sorted(raw.get("events") or [], key=lambda e: str(e.get("createdAt")), reverse=True)
        return ServiceStatus(_state(cluster, raw), deployments,
                             [{"createdAt": e.get("createdAt"), "message": e.get("message", "")}
                              for e in newest[:events]],
                             self.scaling_target(cluster, service))

    def scaling_target(self, cluster: str, service: str) -> ScalingTarget | None:
        """The Application Auto Scaling target on the service's desired count, if one is attached.

        Its max capacity bounds what a scale-up may set: above it the scaler would undo the
        change (and fight the next one).

        IAM: application-autoscaling:DescribeScalableTargets.
        """
        if self.autoscaling is None:
            return None
        resource = f"service/{cluster}/{service}"
        response = self._call("read the scaling target of", cluster, service,
                              lambda: self.autoscaling.describe_scalable_targets(
                                  ServiceNamespace="ecs", ResourceIds=[resource],
                                  ScalableDimension=SCALABLE_DIMENSION))
        for target in response.get("ScalableTargets") or []:
            if target.get("ResourceId") == resource:
                suspended = target.get("SuspendedState") or {}
                return ScalingTarget(int(target["MinCapacity"]), int(target["MaxCapacity"]),
                                     bool(suspended.get("DynamicScalingInSuspended")))
        return None

    def _active(self, cluster: str, service: str) -> ServiceState:
        """The state of a service an action may change: it must be ACTIVE."""
        state = self.describe(cluster, service)
        if state.status != "ACTIVE":
            raise EcsActionError(f"service {service} in cluster {cluster} is not active "
                                 f"({state.status})")
        return state

    # ---------------------------------------------------------------- scaling

    def scale_up(self, cluster: str, service: str, by: int = 1,
                 max_count: int | None = None) -> ActionResult:
        """Raise the desired count by ``by`` tasks, never above ``max_count``.

        The count is read again just before the update, so a guardrail's cap holds even if the
        service changed since it was judged.

        IAM: ecs:DescribeServices, ecs:UpdateService.
        """
        if by < 1:
            raise EcsActionError(f"scale_up needs by >= 1, got {by}")
        before = self._active(cluster, service)
        count = before.desired_count + by
        if max_count is not None and count > max_count:
            raise EcsActionError(f"scale up of service {service} in cluster {cluster} refused: "
                                 f"desired count {before.desired_count} -> {count} exceeds {max_count}")
        return self._set_count("scale_up", before, count)

    def scale_to(self, cluster: str, service: str, count: int) -> ActionResult:
        """Set the desired count to ``count`` tasks (no call when it already is).

        IAM: ecs:DescribeServices, ecs:UpdateService.
        """
        if count < 0:
            raise EcsActionError(f"scale_to needs count >= 0, got {count}")
        return self._set_count("scale_to", self._active(cluster, service), count)

    def _set_count(self, action: str, before: ServiceState, count: int) -> ActionResult:
        change = f"desired count {before.desired_count} -> {count}"
        if count == before.desired_count:
            return ActionResult(action, before, before, f"desired count already {count}",
                                dry_run=self.dry_run)
        if self.dry_run:
            return ActionResult(action, before, before, change, dry_run=True)
        self._call("scale", before.cluster, before.service, lambda: self.ecs.update_service(
            cluster=before.cluster, service=before.service, desiredCount=count))
        return ActionResult(action, before, self.describe(before.cluster, before.service), change)

    # ---------------------------------------------------------------- restart

    def restart_tasks(self, cluster: str, service: str) -> ActionResult:
        """Replace the service's tasks in a rolling deployment (UpdateService forceNewDeployment).

        ECS starts new tasks and stops the old ones in batches within the service's deployment
        configuration (``minimumHealthyPercent``/``maximumPercent``), so capacity holds while a
        leak's memory is released; stopping every task at once would take the service down for a
        minute. Refused while a deployment is still rolling out (it would fight it).

        IAM: ecs:DescribeServices, ecs:UpdateService.
        """
        before = self._active(cluster, service)
        if before.rolling_out:
            raise EcsActionError(f"restart of service {service} in cluster {cluster} refused: a "
                                 "deployment is still rolling out")
        tasks = f"{before.desired_count} task{'s' if before.desired_count != 1 else ''}"
        if self.dry_run:
            return ActionResult("restart_tasks", before, before,
                                f"would replace {tasks} in a rolling deployment", dry_run=True)
        self._call("restart tasks of", cluster, service, lambda: self.ecs.update_service(
            cluster=cluster, service=service, forceNewDeployment=True))
        return ActionResult("restart_tasks", before, self.describe(cluster, service),
                            f"rolling restart: {tasks} replaced by a new deployment")

    def service_task_arns(self, cluster: str, service: str) -> list[str]:
        """ARNs of the service's tasks whose desired status is RUNNING.

        IAM: ecs:ListTasks, ecs:DescribeTasks.
        """
        listed = list(self._listed_tasks(cluster, service))
        group = f"service:{service}"
        return [task["taskArn"] for task in self._describe_tasks(cluster, service, listed)
                if task.get("group") == group and task.get("desiredStatus") == "RUNNING"]

    def oom_stopped_tasks(self, cluster: str, service: str) -> int:
        """How many of the service's stopped tasks (ECS keeps them about an hour) ran out of memory.

        IAM: ecs:ListTasks, ecs:DescribeTasks.
        """
        listed = list(self._listed_tasks(cluster, service, status="STOPPED"))
        group = f"service:{service}"
        return sum(1 for task in self._describe_tasks(cluster, service, listed)
                   if task.get("group") == group and _out_of_memory(task))

    def _listed_tasks(self, cluster: str, service: str, status: str = "RUNNING") -> Iterator[str]:
        pages = self.ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, serviceName=service, desiredStatus=status)
        for page in self._call("list tasks of", cluster, service, lambda: list(pages)):
            yield from page.get("taskArns", [])

    def _describe_tasks(self, cluster: str, service: str, arns: list[str]) -> list[dict]:
        tasks: list[dict] = []
        for start in range(0, len(arns), DESCRIBE_TASKS_BATCH):
            batch = arns[start:start + DESCRIBE_TASKS_BATCH]
            response = self._call("describe tasks of", cluster, service,
                                  lambda batch=batch: self.ecs.describe_tasks(cluster=cluster,
                                                                              tasks=batch))
            tasks.extend(response.get("tasks", []))
        return tasks

    # ---------------------------------------------------------------- rollback

    def rollback(self, cluster: str, service: str, to_revision: int | None = None,
                 while_rolling_out: bool = True) -> ActionResult:
        """Point the service at the previous (or the named) ACTIVE task definition revision.

        The previous revision is the highest ACTIVE revision of the service's family below the
        current one. The service's scheduler then replaces its tasks. With ``while_rolling_out``
        False, a deployment still rolling out (read just before the update) is refused.

        IAM: ecs:DescribeServices, ecs:ListTaskDefinitions, ecs:UpdateService.
        """
        before = self._active(cluster, service)
        if before.rolling_out and not while_rolling_out:
            raise EcsActionError(f"rollback of service {service} in cluster {cluster} refused: a "
                                 "deployment is still rolling out")
        if not before.family or not before.revision:
            raise EcsActionError(f"service {service} in cluster {cluster} has no task definition "
                                 f"revision to roll back from ({before.task_definition!r})")
        revisions = self.active_revisions(cluster, service, before.family)
        target = self._target(before, revisions, to_revision)
        change = (f"task definition {before.family}:{before.revision} -> "
                  f"{before.family}:{target}")
        if self.dry_run:
            return ActionResult("rollback", before, before, change, dry_run=True)
        self._call("roll back", cluster, service, lambda: self.ecs.update_service(
            cluster=cluster, service=service, taskDefinition=revisions[target]))
        return ActionResult("rollback", before, self.describe(cluster, service), change)

    def active_revisions(self, cluster: str, service: str, family: str) -> dict[int, str]:
        """ACTIVE revisions of exactly ``family``, revision -> ARN, in ascending order.

        Pages through every result and sorts here: moto ignores sort and paging, and AWS treats
        familyPrefix as a prefix ("app" also lists "app-worker").

        IAM: ecs:ListTaskDefinitions.
        """
        pages = self.ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE")
        found: dict[int, str] = {}
        for page in self._call("list task definitions of", cluster, service, lambda: list(pages)):
            for arn in page.get("taskDefinitionArns", []):
                arn_family, revision = parse_task_definition(arn)
                if arn_family == family and revision:
                    found[revision] = arn
        return dict(sorted(found.items()))

    @staticmethod
    def _target(before: ServiceState, revisions: dict[int, str], to_revision: int | None) -> int:
        """The revision to roll back to, or EcsActionError saying why there is none."""
        if to_revision is None:
            lower = [r for r in revisions if r < before.revision]
            if not lower:
                raise EcsActionError(f"no previous task definition revision of {before.family} "
                                     f"to roll back to")
            return lower[-1]
        if to_revision == before.revision:
            raise EcsActionError(f"service {before.service} already runs "
                                 f"{before.family}:{to_revision}")
        if to_revision not in revisions:
            raise EcsActionError(f"{before.family}:{to_revision} is not an ACTIVE task definition")
        return to_revision

