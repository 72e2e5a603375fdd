"""Guardrails: each rule refuses what it should, with the reason a person reads, and nothing else."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from pydantic import ValidationError

from service.ecs import ScalingTarget, ServiceState
from service.guardrails import Facts, GuardrailConfig, Guardrails
from service.settings import Settings
from service.store import ActionHistory, ActionRecord, ActionRequest, IncidentStore
from tests.fakes import FakeEcs, fake_platform

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
C, S = "prod", "web"
WATCHED = [f"{C}/{S}"]


def state(desired: int = 2, revision: int = 3, rolling_out: bool = False) -> ServiceState:
    return ServiceState(C, S, desired, desired, f"web:{revision}", "web", revision,
                        2 if rolling_out else 1, rolling_out)


def record(action: str, minutes_ago: float, status: str = "done", origin: str = "auto",
           incident_id: int | None = 1) -> ActionRecord:
    return ActionRecord(1, incident_id, C, S, action, origin, None, status,
                        T0 - pd.Timedelta(minutes=minutes_ago), None, None, {}, None, None)


def check(action: str = "scale_up", facts: Facts | None = None, history: ActionHistory | None = None,
          origin: str = "auto", config: GuardrailConfig | None = None, **params):
    guardrails = Guardrails(config or GuardrailConfig(), watched=WATCHED)
    request = ActionRequest(C, S, action, origin=origin, params=params)
    return guardrails.check(request, facts or Facts(state(), revisions=(1, 2, 3)),
                            history or ActionHistory(), T0)


def test_a_plain_action_is_allowed() -> None:
    verdict = check()
    assert verdict.allowed and verdict.reason is None and verdict.max_count == 10


def test_a_service_outside_the_allow_list_is_refused() -> None:
    guardrails = Guardrails(GuardrailConfig(allowed_services=["prod/api"]), watched=WATCHED)
    verdict = guardrails.check(ActionRequest(C, S, "restart_tasks"), None, ActionHistory(), T0)
    assert (verdict.allowed, verdict.reason) == (False, "not_allowed")
    assert "prod/web is not in the allow-list" in verdict.message


def test_without_an_allow_list_only_watched_services_may_be_touched() -> None:
    verdict = Guardrails(GuardrailConfig(), watched=["prod/api"]).check(
        ActionRequest(C, S, "scale_up"), None, ActionHistory(), T0)
    assert verdict.reason == "not_allowed"


def test_one_action_in_flight_per_service() -> None:
    history = ActionHistory(in_flight=[record("restart_tasks", 3)])
    verdict = check("scale_up", history=history, origin="manual")
    assert verdict.reason == "in_flight"
    assert "restart_tasks for incident 1 is still awaiting verification" in verdict.message


@pytest.mark.parametrize("minutes_ago, allowed", [(9, False), (10, True)])
def test_cooldown_per_action(minutes_ago: float, allowed: bool) -> None:
    verdict = check("scale_up", history=ActionHistory(recent=[record("scale_up", minutes_ago)]))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason == "cooldown" and "until 10:01" in verdict.message


def test_cooldown_is_per_action_not_per_service() -> None:
    assert check("restart_tasks", history=ActionHistory(recent=[record("scale_up", 1)])).allowed


def test_daily_cap_counts_every_origin_but_holds_back_only_automation() -> None:
    recent = [record("restart_tasks", 60 * h + 100, origin="manual") for h in range(6)]
    assert check("scale_up", history=ActionHistory(recent=recent)).reason == "daily_cap"
    assert check("scale_up", history=ActionHistory(recent=recent), origin="manual").allowed
    old = [record("restart_tasks", 60 * 24 + 5) for _ in range(6)]
    assert check("scale_up", history=ActionHistory(recent=old)).allowed, "only the last 24 h count"


def test_desired_count_cap() -> None:
    verdict = check("scale_up", Facts(state(desired=10)))
    assert verdict.reason == "desired_count_cap" and "10 -> 11" in verdict.message
    assert check("scale_to", Facts(state()), count=11).reason == "desired_count_cap"
    assert check("scale_to", Facts(state()), count=10).allowed


def test_an_attached_auto_scaling_target_bounds_the_count() -> None:
    scaling = ScalingTarget(min_capacity=2, max_capacity=4)
    at_max = check("scale_up", Facts(state(desired=4), scaling))
    assert at_max.reason == "autoscaling_max"
    assert "Application Auto Scaling target attached: min 2, max 4" in at_max.notes[0]
    assert check("scale_to", Facts(state(), scaling), count=1).reason == "autoscaling_min"
    below = check("scale_up", Facts(state(desired=3), scaling))
    assert below.allowed and below.max_count == 4 and below.notes
    ignoring = GuardrailConfig(respect_autoscaling=False)
    assert check("scale_up", Facts(state(desired=4), scaling), config=ignoring).allowed


def test_no_rollback_while_rolling_out() -> None:
    verdict = check("rollback", Facts(state(rolling_out=True), revisions=(1, 2, 3)))
    assert verdict.reason == "rolling_out"
    assert check("scale_up", Facts(state(rolling_out=True))).allowed, "scaling is still fine"


def test_no_rollback_without_a_previous_revision() -> None:
    assert check("rollback", Facts(state(revision=1), revisions=(1,))).reason == "no_previous_revision"
    assert check("rollback", Facts(state(revision=3), revisions=(3, 4))).reason == "no_previous_revision"
    assert check("rollback", Facts(state(revision=3), revisions=(2, 3))).allowed
    named = check("rollback", Facts(state(revision=3), revisions=(1, 3)), to_revision=2)
    assert named.reason == "no_previous_revision" and "web:2 is not an ACTIVE" in named.message
    assert check("rollback", Facts(state(revision=3), revisions=(1, 3)), to_revision=1).allowed


@pytest.mark.parametrize("config, field", [
    ({"allowed_services": ["web"]}, "cluster/service"),
    ({"cooldown_minutes": {"reboot": 5}}, "unknown action"),
    ({"cooldown_minutes": {"scale_up": -1}}, ">= 0"),
    ({"max_desired_count": 0}, "greater than or equal to 1"),
    ({"max_action_per_day": 3}, "Extra inputs"),
])
def test_bad_configuration_is_refused_with_the_field_named(config: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        GuardrailConfig(**config)


def test_two_processes_racing_for_one_service_start_one_action(tmp_path) -> None:
    """The guardrails judge inside the transaction that records the action."""
    store = IncidentStore(tmp_path / "log.sqlite")
    guardrails = Guardrails(GuardrailConfig(), watched=WATCHED)
    barrier = threading.Barrier(8)
    started: list = []

    def race(i: int) -> None:
        request = ActionRequest(C, S, "restart_tasks", origin="manual", reason=f"racer {i}")
        barrier.wait()
        action_id, _ = store.begin_action(request, T0, lambda history: (
            (v := guardrails.check(request, Facts(state()), history, T0)).allowed, v.to_dict()))
        started.append(action_id)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a is not None for a in started) == 1
    assert store.refusals() == {"in_flight": 7}


def test_a_manual_action_is_logged_and_counted_for_automation(tmp_path) -> None:
    store = IncidentStore(tmp_path / "log.sqlite")
    ecs = FakeEcs()
    remediator = fake_platform(Settings(data_dir=tmp_path), ecs=ecs, store=store,
                               guardrails=Guardrails(watched=WATCHED)).remediator()
    done = remediator.run(ActionRequest(C, S, "scale_up", origin="manual", reason="load test"), T0)
    assert done.status == "done" and ecs.calls == [("scale_up", C, S)]
    later = remediator.run(ActionRequest(C, S, "scale_up", incident_id=None), T0 + pd.Timedelta(minutes=5))
    assert later.status == "refused" and later.reason == "cooldown"
    assert len(store.events_of_kind("manual_action_started")) == 1
    assert store.events_of_kind("manual_action_done")[0]["data"]["reason"] == "load test"


def test_the_same_request_twice_is_one_action(tmp_path) -> None:
    store = IncidentStore(tmp_path / "log.sqlite")
    ecs = FakeEcs()
    remediator = fake_platform(Settings(data_dir=tmp_path), ecs=ecs, store=store,
                               guardrails=Guardrails(watched=WATCHED)).remediator()
    request = ActionRequest(C, S, "restart_tasks", origin="lambda", key="request-42")
    first = remediator.run(request, T0)
    again = remediator.run(request, T0 + pd.Timedelta(minutes=1))
    assert ecs.calls == [("restart_tasks", C, S)]
    assert again.action_id == first.action_id and again.status == "done"
