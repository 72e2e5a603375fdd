"""The watcher's lifecycle with fakes for CloudWatch, ECS and the notifier, and a real SQLite log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detection.zscore import RobustZDetector
from service.guardrails import GuardrailConfig, Guardrails
from service.settings import Mode, ServiceTarget, Settings
from service.store import ActionRequest, IncidentStore
from tests.fakes import Clock, FakeEcs, FakeNotifier, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
TARGET = ServiceTarget()
CS = (TARGET.cluster, TARGET.service)


@pytest.fixture(scope="module")
def detector() -> RobustZDetector:
    index = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    return RobustZDetector().fit(normal(index, np.random.default_rng(0)))


def make_watcher(tmp_path, detector, source, clock, ecs=None, notifier=None, mode=Mode.AUTO,
                 guardrails=None, store=None):
    settings = Settings(data_dir=tmp_path, mode=mode)
    store = store or IncidentStore(settings.db_path)
    ecs = ecs if ecs is not None else FakeEcs(dry_run=mode is Mode.DRY_RUN)
    notifier = notifier if notifier is not None else FakeNotifier()
    platform = fake_platform(settings, ecs=ecs, notifier=notifier, clock=clock, store=store,
                             guardrails=guardrails)
    return platform.watcher(TARGET, detector, source=source), store, ecs, notifier


def run(watcher, clock, minutes: int):
    results = []
    for _ in range(minutes):
        results.append(watcher.tick())
        clock.advance()
    return results


def test_a_surge_opens_one_incident_one_action_and_verifies(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0 + pd.Timedelta(minutes=3), T0 + pd.Timedelta(minutes=10), "high_cpu")])
    watcher, store, ecs, notifier = make_watcher(tmp_path, detector, source, clock)
    results = run(watcher, clock, 30)
    opened = [r.opened for r in results if r.opened]
    assert len(opened) == 1, "the same surge reported every minute is one incident"
    assert ecs.calls == [("scale_up", *CS)]
    incident = store.get(opened[0])
    assert incident.status == "resolved" and incident.root_cause == "high_cpu"
    kinds = [e["kind"] for e in store.events(incident.id)]
    assert kinds.index("decision") < kinds.index("action_started") < kinds.index("action_done") \
        < kinds.index("verification")
    assert kinds.count("verification") == 1
    assert (tmp_path / "reports" / f"incident-{incident.id}.md").read_text().count("high_cpu") >= 1
    assert notifier.sent[-1][1].startswith(f"Resolved: incident {incident.id}"), \
        "resolution sends the RCA report"


def test_a_fix_that_does_not_hold_escalates_along_the_path(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, _, notifier = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]),
                                               clock)
    run(watcher, clock, 3 + 15 + 16)
    incident = store.list()[0]
    assert incident.status == "escalated"
    assert notifier.roles() == ["on-call engineer", "team lead"]


def test_paging_follows_the_path_until_acknowledged(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, _, notifier = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]),
                                               clock)
    run(watcher, clock, 3 + 15 + 35)
    assert notifier.roles() == ["on-call engineer", "team lead", "engineering manager"]
    incident = store.list()[0]
    store.acknowledge(incident.id, clock(), "alice")
    run(watcher, clock, 60)
    assert notifier.roles() == ["on-call engineer", "team lead", "engineering manager"], \
        "no page after the acknowledgement"
    assert store.get(incident.id).status == "acknowledged"
    assert len(ecs_calls := watcher.remediator.actions.calls) == 1, ecs_calls


def test_a_failed_action_is_logged_and_escalated_at_once(tmp_path, detector) -> None:
    clock = Clock(T0)
    ecs = FakeEcs()
    ecs.fail = "access denied to scale service aiops-platform-service"
    watcher, store, _, notifier = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]),
                                               clock, ecs=ecs)
    run(watcher, clock, 4)
    incident = store.list()[0]
    failed = [e for e in store.events(incident.id) if e["kind"] == "action_failed"]
    assert incident.status == "escalated" and "access denied" in failed[0]["data"]["error"]
    assert notifier.roles() == ["on-call engineer"]
    assert store.actions(incident_id=incident.id)[0].status == "failed"


def test_quiet_metrics_open_nothing(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, FakeSource(), clock)
    run(watcher, clock, 20)
    assert store.list() == [] and ecs.calls == []


def test_the_same_anomaly_reported_many_times_is_one_incident_and_one_action(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, T0 + pd.Timedelta(minutes=12), "high_cpu")])
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, source, clock)
    for _ in range(12):
        for _ in range(5):  # the same minute scored five times (a retry loop, a second process)
            watcher.tick()
        clock.advance()
    assert len(store.list()) == 1 and ecs.calls == [("scale_up", *CS)]


def test_approve_mode_waits_for_a_person_then_acts(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, None, "error_rate_high")])
    watcher, store, ecs, notifier = make_watcher(tmp_path, detector, source, clock, mode=Mode.APPROVE)
    run(watcher, clock, 5)
    incident = store.list()[0]
    assert incident.status == "awaiting_approval" and ecs.calls == []
    assert notifier.sent[0][1].startswith("Approval needed: rollback for incident")
    store.approve(incident.id, clock(), "bob")
    run(watcher, clock, 1)
    assert ecs.calls == [("rollback", *CS)]
    assert store.get(incident.id).status == "verifying"
    approved = [e for e in store.events(incident.id) if e["kind"] == "approved"]
    assert approved[0]["data"]["by"] == "bob"


def test_approve_mode_runs_non_critical_actions_at_once(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]),
                                          clock, mode=Mode.APPROVE)
    run(watcher, clock, 4)
    assert ecs.calls == [("scale_up", *CS)]


def test_dry_run_decides_and_logs_but_changes_nothing(tmp_path, detector) -> None:
    clock = Clock(T0)
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, FakeSource([(T0, None, "memory_leak")]),
                                          clock, mode=Mode.DRY_RUN)
    run(watcher, clock, 5)
    incident = store.list()[0]
    assert ecs.calls == [] and ecs.service(*CS).restarts == 0
    assert store.actions(incident_id=incident.id)[0].status == "dry_run"
    done = [e for e in store.events(incident.id) if e["kind"] == "action_done"]
    assert done[0]["data"]["status"] == "dry_run"


def test_a_refused_action_escalates_with_the_reason(tmp_path, detector) -> None:
    clock = Clock(T0)
    ecs = FakeEcs()
    ecs.service(*CS).rolling_out = True
    watcher, store, _, notifier = make_watcher(tmp_path, detector,
                                               FakeSource([(T0, None, "error_rate_high")]), clock, ecs=ecs)
    run(watcher, clock, 4)
    incident = store.list()[0]
    assert incident.status == "escalated" and ecs.calls == []
    assert store.refusals() == {"rolling_out": 1}
    assert notifier.roles() == ["on-call engineer"]


def test_a_service_outside_the_allow_list_is_never_touched(tmp_path, detector) -> None:
    clock = Clock(T0)
    ecs = FakeEcs()
    guardrails = Guardrails(GuardrailConfig(allowed_services=["other/svc"]))
    watcher, store, _, _ = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]), clock,
                                        ecs=ecs, guardrails=guardrails)
    run(watcher, clock, 4)
    assert ecs.calls == [] and ecs.reads == 0, "not even read"
    assert store.refusals() == {"not_allowed": 1}


def test_a_cloudwatch_outage_postpones_verification_and_loses_nothing(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, T0 + pd.Timedelta(minutes=6), "high_cpu")])
    watcher, store, ecs, notifier = make_watcher(tmp_path, detector, source, clock)
    run(watcher, clock, 15)
    incident = store.list()[0]
    assert store.get(incident.id).status == "verifying"
    source.fail = "cannot read cpu_utilization from CloudWatch: Throttling"
    results = run(watcher, clock, 10)
    assert all(r.read_error for r in results) and store.get(incident.id).status == "verifying"
    assert [s for _, s in notifier.sent if s.startswith("aiops cannot read")] == [
        "aiops cannot read the metrics of aiops-platform-cluster/aiops-platform-service"]
    source.fail = None
    run(watcher, clock, 1)
    assert store.get(incident.id).status == "resolved"
    platform = store.events_of_kind("read_failed")
    assert len(platform) == 1 and "Throttling" in platform[0]["data"]["error"], \
        "one log line per outage, not one per minute"
    assert len(store.events_of_kind("read_recovered")) == 1
    [blind] = store.events_of_kind("blind_alert")
    assert blind["data"]["role"] == "on-call engineer", "ten blind minutes: the on-call engineer is told once"


def test_a_fault_that_began_while_the_watcher_was_blind_is_caught_once_it_can_read(tmp_path,
                                                                                    detector) -> None:
    """Errors from minute 2 to 11, CloudWatch unreadable from minute 1 to 10: the minutes it hid
    are scored on the first readable tick, though only one minute of the fault is still to come."""
    clock = Clock(T0)
    source = FakeSource([(T0 + pd.Timedelta(minutes=2), T0 + pd.Timedelta(minutes=12), "error_rate_low")])
    watcher, store, _, _ = make_watcher(tmp_path, detector, source, clock)
    run(watcher, clock, 1)
    source.fail = "cannot read error_count from CloudWatch: AccessDenied"
    run(watcher, clock, 10)
    source.fail = None
    first = watcher.tick()
    assert first.opened is not None and first.at == T0 + pd.Timedelta(minutes=11)
    seen = {a["timestamp"] for a in store.anomalies(first.opened)}
    assert min(seen) <= (T0 + pd.Timedelta(minutes=8)).isoformat(), "the hidden minutes were scored"
    assert store.get(first.opened).root_cause == "error_rate_low"


def test_a_notifier_outage_is_retried_until_the_page_goes_out(tmp_path, detector) -> None:
    clock = Clock(T0)
    ecs, notifier = FakeEcs(), FakeNotifier(fail=True)
    ecs.fail = "throttled"
    watcher, store, _, _ = make_watcher(tmp_path, detector, FakeSource([(T0, None, "high_cpu")]), clock,
                                        ecs=ecs, notifier=notifier)
    run(watcher, clock, 6)
    incident = store.list()[0]
    assert notifier.sent == [] and any(e["kind"] == "escalation_failed" for e in store.events(incident.id))
    notifier.fail = False
    run(watcher, clock, 1)
    assert notifier.roles() == ["on-call engineer"]


def test_an_approved_action_refused_later_pages_a_new_round(tmp_path, detector) -> None:
    clock = Clock(T0)
    ecs = FakeEcs()
    watcher, store, _, notifier = make_watcher(tmp_path, detector,
                                               FakeSource([(T0, None, "error_rate_high")]), clock,
                                               ecs=ecs, mode=Mode.APPROVE)
    run(watcher, clock, 20)  # the approval request pages on-call, then the team lead at 15 min
    incident = store.list()[0]
    ecs.service(*CS).rolling_out = True  # a deployment started meanwhile
    store.approve(incident.id, clock(), "bob")
    run(watcher, clock, 1)
    assert store.get(incident.id).status == "escalated" and ecs.calls == []
    assert [(role, subject.split(":")[0]) for role, subject in notifier.sent] == [
        ("on-call engineer", "Approval needed"), ("team lead", "Approval needed"),
        ("on-call engineer", "Escalation")], "the refusal starts a new round at the on-call engineer"


# ---------------------------------------------------------------------- several open incidents


def at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def end_span(source: FakeSource, kind: str, when: pd.Timestamp) -> None:
    """One fault of the fake source ends at ``when`` (a fix that worked); the others go on."""
    source.spans = [(s, when if k == kind and (e is None or e > when) else e, k)
                    for s, e, k in source.spans]


def kinds(store: IncidentStore, incident_id: int) -> list[str]:
    return [e["kind"] for e in store.events(incident_id)]


def pages(notifier: FakeNotifier, incident_id: int) -> list[str]:
    """The roles paged about one incident's escalation."""
    return [role for role, subject in notifier.sent
            if subject.startswith(f"Escalation: incident {incident_id} ")]


def escalated_then_memory_leak(tmp_path, detector, **kwargs):
    """A CPU surge the scale-up does not fix (escalated at 10:16), then a memory leak at 10:25."""
    clock = Clock(T0)
    source = FakeSource([(T0, None, "high_cpu"), (at(25), None, "memory_leak")])
    watcher, store, ecs, notifier = make_watcher(tmp_path, detector, source, clock, **kwargs)
    return watcher, store, ecs, notifier, source, clock


def test_a_different_fault_while_escalated_gets_its_own_incident_and_action(tmp_path, detector) -> None:
    watcher, store, ecs, notifier, source, clock = escalated_then_memory_leak(tmp_path, detector)
    results = run(watcher, clock, 28)
    first, second = sorted(store.list(), key=lambda i: i.id)
    assert (first.root_cause, first.status) == ("high_cpu", "escalated")
    assert [r.opened for r in results if r.opened] == [first.id, second.id]
    assert (second.root_cause, second.status, second.related_to) == ("memory_leak", "verifying", first.id)
    assert ecs.calls == [("scale_up", *CS), ("restart_tasks", *CS)], "the leak got its own action"
    [opened] = [e for e in store.events(second.id) if e["kind"] == "opened"]
    assert opened["data"]["reason"] == "another_root_cause"
    assert opened["data"]["set_aside"] == {"cpu_utilization": first.id}, "the CPU is the first fault's"
    [split] = [e for e in store.events(first.id) if e["kind"] == "split"]
    assert split["data"]["incident"] == second.id
    assert [(s.incident, s.status) for s in results[-1].steps] == [(first.id, "escalated"),
                                                                   (second.id, "verifying")]

    end_span(source, "memory_leak", clock())  # the restart fixed the leak; the CPU stays high
    run(watcher, clock, 20)
    assert store.get(second.id).status == "resolved", "verified on its own symptoms"
    [verification] = [e for e in store.events(second.id) if e["kind"] == "verification"]
    assert verification["data"]["left_to"] == {"cpu_utilization": first.id}
    assert store.get(first.id).status == "escalated" and kinds(store, first.id).count("verification") == 1, \
        "the older incident stays with its person and is not verified again"
    assert pages(notifier, first.id) == ["on-call engineer", "team lead", "engineering manager"], \
        "its escalation went on meanwhile"
    assert ecs.calls == [("scale_up", *CS), ("restart_tasks", *CS)]
    report = (tmp_path / "reports" / f"incident-{second.id}.md").read_text()
    assert f"- Related: split off from incident {first.id}" in report


def test_the_guardrails_still_judge_the_action_of_a_split_off_incident(tmp_path, detector) -> None:
    watcher, store, ecs, _, _, clock = escalated_then_memory_leak(tmp_path, detector)
    run(watcher, clock, 24)
    manual = ActionRequest(*CS, "scale_to", origin="manual", params={"count": 4})
    store.begin_action(manual, clock(), lambda history: (True, {}))  # a person's action, still running
    run(watcher, clock, 4)
    first, second = sorted(store.list(), key=lambda i: i.id)
    assert (second.root_cause, second.status, second.related_to) == ("memory_leak", "escalated", first.id)
    assert ecs.calls == [("scale_up", *CS)] and store.refusals() == {"in_flight": 1}


def test_the_same_root_cause_while_escalated_joins_the_incident(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, None, "memory_leak"), (at(25), None, "high_cpu")])
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, source, clock)
    results = run(watcher, clock, 45)
    [incident] = store.list()
    assert incident.status == "escalated" and ecs.calls == [("restart_tasks", *CS)]
    assert all(r.joined == incident.id for r in results[30:])
    joined = [e for e in store.events(incident.id) if e["kind"] == "joined"]
    assert [(e["data"]["reason"], e["data"]["root_cause"]) for e in joined] == [
        ("lingering", None), ("same_root_cause", "memory_leak")], \
        "one event when what joins changes, not one per tick"


def test_symptoms_that_linger_after_an_action_stay_one_incident(tmp_path, detector) -> None:
    clock = Clock(T0)  # the scale-up ends the errors, the CPU stays high: it looks like high_cpu now
    source = FakeSource([(T0, at(5), "high_cpu_with_errors"), (at(5), None, "high_cpu")])
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, source, clock)
    run(watcher, clock, 50)
    [incident] = store.list()
    assert (incident.root_cause, incident.status) == ("high_cpu_with_errors", "escalated")
    assert ecs.calls == [("scale_up", *CS)], "no second scale-up for the same fault"


def test_another_fault_while_verifying_joins_until_the_verification_fails(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, None, "high_cpu"), (at(6), None, "memory_leak")])
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, source, clock)
    run(watcher, clock, 16)
    [incident] = store.list()
    assert incident.status == "verifying" and ecs.calls == [("scale_up", *CS)], \
        "no second action while the first one's verification is due"
    assert {a["metric"] for a in store.anomalies(incident.id)} >= {"memory_utilization"}
    run(watcher, clock, 3)
    first, second = sorted(store.list(), key=lambda i: i.id)
    assert first.status == "escalated" and second.related_to == first.id
    assert second.root_cause == "memory_leak" and ecs.calls[-1] == ("restart_tasks", *CS)


def test_a_restarted_watcher_continues_both_incidents(tmp_path, detector) -> None:
    watcher, store, ecs, notifier, source, clock = escalated_then_memory_leak(tmp_path, detector)
    run(watcher, clock, 28)
    end_span(source, "memory_leak", clock())
    restarted, _, _, _ = make_watcher(tmp_path, detector, source, clock, ecs=ecs, notifier=notifier,
                                      store=IncidentStore(store.path))
    results = run(restarted, clock, 20)
    first, second = sorted(store.list(), key=lambda i: i.id)
    assert second.status == "resolved" and first.status == "escalated"
    assert [r.verified for r in results if r.verified] == [second.id]
    assert pages(notifier, first.id) == ["on-call engineer", "team lead", "engineering manager"]
    assert ecs.calls == [("scale_up", *CS), ("restart_tasks", *CS)], "nothing repeated"
    assert len(store.list()) == 2, "the CPU the first incident shows opened nothing new"


def test_an_older_log_opens_with_the_related_to_column(tmp_path) -> None:
    import sqlite3

    from service.store import SCHEMA

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.execute("INSERT INTO incidents (cluster, service, status, opened_at, updated_at) "
                   "VALUES ('c', 's', 'escalated', '2026-11-16T10:00:00+00:00', "
                   "'2026-11-16T10:00:00+00:00')")
    store = IncidentStore(path)
    [incident] = store.open_incidents("c", "s")
    assert incident.related_to is None and store.open_for("c", "s") == incident


class Crash(BaseException):
    """The process dies here (no ``except Exception`` may swallow it)."""


class DiesAfterSplit(IncidentStore):
    """The incident log of a watcher killed right after it split an incident off."""

    armed = True

    def split_incident(self, *args, **kwargs) -> int:
        opened = super().split_incident(*args, **kwargs)
        if self.armed:
            self.armed = False
            raise Crash(f"killed after splitting off incident {opened}")
        return opened


def test_a_watcher_killed_right_after_a_split_diagnoses_and_acts_on_restart(tmp_path, detector) -> None:
    clock = Clock(T0)
    source = FakeSource([(T0, None, "high_cpu"), (at(25), None, "memory_leak")])
    store = DiesAfterSplit(Settings(data_dir=tmp_path).db_path)
    watcher, _, ecs, notifier = make_watcher(tmp_path, detector, source, clock, store=store)
    with pytest.raises(Crash):
        run(watcher, clock, 40)
    restarted, log, _, _ = make_watcher(tmp_path, detector, source, clock, ecs=ecs, notifier=notifier,
                                        store=IncidentStore(store.path))
    run(restarted, clock, 3)
    first, second = sorted(log.list(), key=lambda i: i.id)
    assert (second.related_to, second.root_cause, second.status) == (first.id, "memory_leak", "verifying")
    assert ecs.calls == [("scale_up", *CS), ("restart_tasks", *CS)]
    assert len(log.list()) == 2


def test_a_restarted_watcher_feeds_its_streaming_member_the_minutes_it_missed(tmp_path) -> None:
    from detection.ensemble import ServiceDetector

    trained = T0 - pd.Timedelta(hours=6)  # the model was trained six hours before this start
    index = pd.date_range(trained - pd.Timedelta(days=8), trained, freq="1min", inclusive="left")
    detector = ServiceDetector({"members": {"zscore": 1.0, "streaming": 1.0}}).fit(
        normal(index, np.random.default_rng(0)))
    assert detector.stream_end() < trained
    member = detector.members_["streaming"]

    def judged() -> int:  # 5-minute buckets of CPU the live stream has judged
        return member._live().live("cpu_utilization").rows

    before = judged()
    clock = Clock(T0)
    watcher, store, ecs, _ = make_watcher(tmp_path, detector, FakeSource(), clock)
    run(watcher, clock, 3)
    assert detector.stream_end() >= clock() - pd.Timedelta(minutes=6)
    assert judged() - before >= 6 * 12 - 4, "the stream went through the six missed hours, not across them"
    assert store.list() == [] and ecs.calls == []
    # a source that fails on start: the tick goes on, the stream jumps the gap as it did before
    later = ServiceDetector({"members": {"zscore": 1.0, "streaming": 1.0}}).fit(
        normal(index, np.random.default_rng(0)))
    failing = FakeSource()
    failing.fail = "CloudWatch is unreachable"
    watcher, _, _, _ = make_watcher(tmp_path / "b", later, failing, Clock(T0))
    watcher.tick()
    assert later.stream_end() < trained  # nothing read: nothing judged, and no crash
