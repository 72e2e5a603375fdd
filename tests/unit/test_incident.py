"""The Incident aggregate: which moves its status allows, and a person's steps, with no I/O; and the
SQLite log refusing what the aggregate refuses."""

from __future__ import annotations

import pandas as pd
import pytest

from service.incident import MOVES, Incident, IncidentStateError, Status, diagnosis_from_dict
from service.store import IncidentStore

T0 = pd.Timestamp("2026-11-02 10:00", tz="UTC")
LEAK = {"root_cause": "memory_leak", "severity": "CRITICAL", "auto_action": "restart_tasks",
        "manual_action": "Fix memory leak", "confidence": 0.9, "explanation": "memory climbing",
        "evidence": [{"feature": "memory_utilization_slope", "value": 1.5, "extra": "ignored"}]}


def incident(status: Status = Status.OPEN, **changes) -> Incident:
    return Incident(1, "prod", "web", status, T0, T0, diagnosis_from_dict(LEAK), None, None, **changes)


def test_a_resolved_incident_never_moves_again() -> None:
    assert MOVES[Status.RESOLVED] == frozenset()
    for status in Status:
        with pytest.raises(IncidentStateError, match="cannot become"):
            incident(Status.RESOLVED).check_move(status)


@pytest.mark.parametrize("start, to", [(Status.VERIFYING, Status.AWAITING_APPROVAL),
                                       (Status.OPEN, Status.ACKNOWLEDGED),
                                       (Status.VERIFYING, Status.OPEN)])
def test_moves_the_lifecycle_does_not_have_are_refused(start, to) -> None:
    with pytest.raises(IncidentStateError, match=f"is {start}: it cannot become {to}"):
        incident(start).check_move(to)


def test_an_unknown_status_is_named() -> None:
    with pytest.raises(ValueError, match="unknown incident status 'burning'"):
        incident().check_move("burning")


def test_approve_only_what_waits_and_only_once() -> None:
    with pytest.raises(IncidentStateError, match="not awaiting approval"):
        incident(Status.OPEN).approve("alice", T0)
    approved = incident(Status.AWAITING_APPROVAL).approve("alice", T0)
    assert (approved.approved_by, approved.status) == ("alice", Status.AWAITING_APPROVAL)
    with pytest.raises(IncidentStateError, match="already approved by alice"):
        approved.approve("bob", T0)


def test_acknowledging_an_escalated_incident_stops_the_paging_status() -> None:
    taken = incident(Status.ESCALATED).acknowledge("alice", T0)
    assert taken.status is Status.ACKNOWLEDGED and taken.acked_by == "alice"
    assert incident(Status.VERIFYING).acknowledge("bob", T0).status is Status.VERIFYING
    with pytest.raises(IncidentStateError, match="already resolved"):
        incident(Status.RESOLVED).acknowledge("alice", T0)


def test_the_diagnosis_is_typed_and_the_dict_form_is_plain_data() -> None:
    leak = incident()
    assert (leak.root_cause, leak.severity, leak.auto_action) == ("memory_leak", "CRITICAL", "restart_tasks")
    assert leak.diagnosis.evidence[0].feature == "memory_utilization_slope"
    data = leak.to_dict()
    assert data["status"] == "open" and data["diagnosis"]["root_cause"] == "memory_leak"
    assert data["opened_at"] == T0.isoformat() and data["confidence"] == 0.9
    with pytest.raises(ValueError, match="a diagnosis needs severity"):
        diagnosis_from_dict({"root_cause": "high_cpu", "auto_action": "scale_up", "confidence": 1})


def test_the_log_refuses_what_the_incident_refuses_and_keeps_what_was_there(tmp_path) -> None:
    store = IncidentStore(tmp_path / "log.sqlite")
    opened = store.open_incident("prod", "web", T0)
    store.set_diagnosis(opened, T0, LEAK)
    assert store.set_status(opened, T0, "verifying")
    with pytest.raises(IncidentStateError, match="cannot become awaiting_approval"):
        store.set_status(opened, T0, "awaiting_approval")
    assert store.get(opened).status is Status.VERIFYING
    assert not store.set_status(opened, T0, "escalated", expect=("open",)), "a step taken is not retaken"
    store.resolve(opened, T0, "alice")
    with pytest.raises(IncidentStateError, match="already resolved"):
        store.resolve(opened, T0, "bob")
    with pytest.raises(ValueError, match="a diagnosis needs"):
        store.set_diagnosis(opened, T0, {"root_cause": "high_cpu"})
    assert store.get(opened).root_cause == "memory_leak", "nothing already stored is lost"


def test_the_sqlite_log_is_an_incident_repository(tmp_path) -> None:
    from service.repository import IncidentRepository

    assert isinstance(IncidentStore(tmp_path / "log.sqlite"), IncidentRepository)
    assert not isinstance(object(), IncidentRepository)
