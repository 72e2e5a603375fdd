"""Guardrails: the rules every ECS action must pass before it runs, as configuration.

The checks, in the order they are applied (the first that fails names the refusal):

``not_allowed``         the service is outside the configured allow-list
``in_flight``           another action on the service has not finished or is awaiting its
                        verification (one action in flight per service)
``cooldown``            the same action ran on the service less than its cooldown ago
``daily_cap``           the service already had ``max_actions_per_day`` actions in 24 hours
``desired_count_cap``   the new desired count would exceed ``max_desired_count``
``autoscaling_max``     ... or the max capacity of an attached Application Auto Scaling target
``autoscaling_min``     a scale-to below the target's min capacity (the scaler would undo it)
``rolling_out``         a rollback or a restart while a deployment is still rolling out (a restart
                        is itself a rolling deployment: started during another it would fight it)
``no_previous_revision`` a rollback with no earlier ACTIVE revision (or the named one missing)

Cooldown and the daily cap limit what automation does (the watcher, and the rollback Lambda,
which an alarm may trigger again and again); a person's manual action is not held back by them,
but it is counted, so automation will not repeat it straight after. Everything else applies to
every origin.

The module decides; it makes no call. The executor (``service.remediation``) reads the service
state and history, asks :meth:`Guardrails.check`, and records the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from pydantic import BaseModel, Field, field_validator

from service.ecs import ScalingTarget, ServiceState
from service.store import ActionHistory, ActionRequest

ACTIONS = ("scale_up", "scale_to", "restart_tasks", "rollback")
REASONS = ("not_allowed", "in_flight", "cooldown", "daily_cap", "desired_count_cap",
           "autoscaling_max", "autoscaling_min", "rolling_out", "no_previous_revision")
AUTOMATION_ONLY = ("cooldown", "daily_cap")


class GuardrailConfig(BaseModel, frozen=True):
    """The guardrails' settings (the ``[guardrails]`` table of the watch config file).

    Parameters
    ----------
    allowed_services : ``cluster/service`` names actions may touch; None means exactly the
        services the watcher is configured to watch (the manual commands: the one named).
    cooldown_minutes : per action, the minutes before the same action may run again on a service.
    max_desired_count : no action sets a desired count above this.
    max_actions_per_day : automatic actions per service in any 24 hours (manual ones count too).
    respect_autoscaling : read an attached Application Auto Scaling target and keep inside it.
    """

    model_config = {"extra": "forbid"}

    allowed_services: list[str] | None = None
    cooldown_minutes: dict[str, float] = Field(default_factory=lambda: {
        "scale_up": 10.0, "scale_to": 10.0, "restart_tasks": 30.0, "rollback": 60.0})
    max_desired_count: int = Field(10, ge=1)
    max_actions_per_day: int = Field(6, ge=1)
    respect_autoscaling: bool = True

    @field_validator("allowed_services")
    @classmethod
    def _qualified(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            cluster, sep, service = name.partition("/")
            if not sep or not cluster or not service or "/" in service:
                raise ValueError(f"allowed service {name!r} must be written cluster/service")
        return value

    @field_validator("cooldown_minutes")
    @classmethod
    def _known_actions(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = [a for a in value if a not in ACTIONS]
        if unknown:
            raise ValueError(f"cooldown for unknown action(s) {', '.join(unknown)}; "
                             f"known: {', '.join(ACTIONS)}")
        negative = [a for a, m in value.items() if m < 0]
        if negative:
            raise ValueError(f"cooldown must be >= 0 minutes ({', '.join(negative)})")
        return value


@dataclass(frozen=True)
class Verdict:
    """The guardrails' answer: allowed or the reason it is not, and what a person should know."""

    allowed: bool
    reason: str | None = None
    message: str = ""
    notes: list[str] = field(default_factory=list)
    max_count: int | None = None   # the highest desired count the action may set

    def to_dict(self) -> dict:
        out = {"allowed": self.allowed, "message": self.message}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = self.notes
        return out


@dataclass(frozen=True)
class Facts:
    """What was read about the service just before judging: its state, scaler and revisions."""

    state: ServiceState
    scaling: ScalingTarget | None = None
    revisions: tuple[int, ...] = ()   # ACTIVE revisions of the service's family (rollback only)


def qualified(cluster: str, service: str) -> str:
    return f"{cluster}/{service}"


class Guardrails:
    """Judges an action request against the configuration, the service's facts and its history.

    Parameters
    ----------
    config : the guardrail settings.
    watched : ``cluster/service`` names that stand in for the allow-list when it is not set.
    held_for_approval : actions that wait for a person (approve mode: the CRITICAL rows' actions);
        a request for one is refused ``approval_required`` unless it names who approved it.
    """

    def __init__(self, config: GuardrailConfig | None = None, watched: list[str] | None = None,
                 held_for_approval: frozenset[str] = frozenset()):
        self.config = config or GuardrailConfig()
        self.watched = list(watched or [])
        self.held_for_approval = frozenset(held_for_approval)

    @property
    def allow_list(self) -> list[str]:
        return self.config.allowed_services if self.config.allowed_services is not None else self.watched

    def allowed_service(self, cluster: str, service: str) -> bool:
        return qualified(cluster, service) in self.allow_list

    def check(self, request: ActionRequest, facts: Facts | None, history: ActionHistory,
              at: pd.Timestamp) -> Verdict:
        """The verdict on ``request`` at ``at``; ``facts`` may be None only for the allow-list check."""
        name = qualified(request.cluster, request.service)
        if not self.allowed_service(request.cluster, request.service):
            return Verdict(False, "not_allowed", f"{name} is not in the allow-list of services "
                           f"({', '.join(self.allow_list) or 'empty'})")
        if request.action in self.held_for_approval and not request.dry_run and not request.approved_by:
            return Verdict(False, "approval_required", f"approve mode: {request.action} waits for a "
                           "person; approve the incident (`aiops incidents approve ID` or POST "
                           "/v1/incidents/ID/approve) and the watcher runs it, guarded")
        refusal = self._history_refusal(request, history, pd.Timestamp(at))
        if refusal is not None:
            return refusal
        if facts is None:
            raise ValueError("the service's facts are needed to judge anything but the allow-list")
        notes = _scaling_notes(facts.scaling)
        if request.action in ("scale_up", "scale_to"):
            return self._check_count(request, facts, notes)
        if request.action == "rollback":
            return self._check_rollback(request, facts, notes)
        if request.action == "restart_tasks" and facts.state.rolling_out:
            return Verdict(False, "rolling_out", f"a deployment of {request.service} is still rolling "
                           "out; a restart (a new deployment) now would fight it", notes)
        return Verdict(True, notes=notes)

    def _history_refusal(self, request: ActionRequest, history: ActionHistory,
                         at: pd.Timestamp) -> Verdict | None:
        others = [a for a in history.in_flight if a.key is None or a.key != request.key]
        if others:
            first = others[0]
            where = f" for incident {first.incident_id}" if first.incident_id else ""
            state = "awaiting verification" if first.status != "started" else "running"
            return Verdict(False, "in_flight", f"{first.action}{where} is still {state} on "
                           f"{request.service} (one action in flight per service)")
        if request.origin == "manual":
            return None
        cooldown = pd.Timedelta(minutes=self.config.cooldown_minutes.get(request.action, 0.0))
        same = [a for a in history.recent if a.action == request.action]
        if same and cooldown > pd.Timedelta(0) and at - same[-1].requested_at < cooldown:
            ready = same[-1].requested_at + cooldown
            return Verdict(False, "cooldown", f"{request.action} ran on {request.service} at "
                           f"{same[-1].requested_at:%H:%M}; its cooldown lasts until {ready:%H:%M}")
        day = [a for a in history.recent if at - a.requested_at < pd.Timedelta(days=1)]
        if len(day) >= self.config.max_actions_per_day:
            return Verdict(False, "daily_cap", f"{request.service} already had {len(day)} actions "
                           f"in 24 hours (cap {self.config.max_actions_per_day})")
        return None

    def _check_count(self, request: ActionRequest, facts: Facts, notes: list[str]) -> Verdict:
        state = facts.state
        count = (state.desired_count + int(request.params.get("by", 1)) if request.action == "scale_up"
                 else int(request.params["count"]))
        cap = self.config.max_desired_count
        if count > cap:
            return Verdict(False, "desired_count_cap", f"desired count {state.desired_count} -> "
                           f"{count} would exceed the cap of {cap}", notes)
        scaling = facts.scaling if self.config.respect_autoscaling else None
        if scaling is not None and count > scaling.max_capacity:
            return Verdict(False, "autoscaling_max", f"desired count {count} would exceed the "
                           f"Application Auto Scaling max capacity {scaling.max_capacity}", notes)
        if scaling is not None and count < scaling.min_capacity:
            return Verdict(False, "autoscaling_min", f"desired count {count} is below the "
                           f"Application Auto Scaling min capacity {scaling.min_capacity}", notes)
        limit = min(cap, scaling.max_capacity) if scaling is not None else cap
        return Verdict(True, notes=notes, max_count=limit)

    @staticmethod
    def _check_rollback(request: ActionRequest, facts: Facts, notes: list[str]) -> Verdict:
        state = facts.state
        if state.rolling_out:
            return Verdict(False, "rolling_out", f"a deployment of {request.service} is still rolling "
                           "out; a rollback now would fight it", notes)
        wanted = request.params.get("to_revision")
        if wanted is None:
            earlier = [r for r in facts.revisions if r < state.revision]
            if not state.revision or not earlier:
                return Verdict(False, "no_previous_revision", f"no ACTIVE revision of "
                               f"{state.family or request.service} before "
                               f"{state.task_definition_name or state.task_definition!r}", notes)
        elif int(wanted) not in facts.revisions or int(wanted) == state.revision:
            return Verdict(False, "no_previous_revision", f"{state.family}:{wanted} is not an ACTIVE "
                           f"revision other than the running one", notes)
        return Verdict(True, notes=notes)


def _scaling_notes(scaling: ScalingTarget | None) -> list[str]:
    if scaling is None:
        return []
    return [f"Application Auto Scaling target attached: min {scaling.min_capacity}, "
            f"max {scaling.max_capacity}" + (" (scale-in suspended)" if scaling.suspended else "")]
