"""The incident repository contract: the SQLite log, the in-memory store and the shared DynamoDB
table (on the local AWS endpoint) answer every step the same way, so the application can rely on
the port alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from detection.anomaly import Anomaly
from detection.zscore import RobustZDetector
from service.action import ActionOutcome, ActionRequest
from service.aws import ClientFactory, local_aws
from service.dynamo_store import DynamoIncidentStore, create_table
from service.incident import IncidentStateError
from service.memory_store import MemoryIncidentStore
from service.repository import IncidentRepository
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from tests.fakes import Clock, FakeSource, fake_platform, normal

T0 = pd.Timestamp("2026-11-02 10:00", tz="UTC")
LEAK = {"root_cause": "memory_leak", "severity": "CRITICAL", "auto_action": "restart_tasks",
        "manual_action": "Fix memory leak", "confidence": 0.9, "explanation": "memory climbing"}


ADAPTERS = ("sqlite", "memory", "dynamodb")
_tables = itertools.count(1)


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[ClientFactory]:
    """The local AWS endpoint (a moto server on loopback) for the DynamoDB adapter."""
    with local_aws():
        yield ClientFactory()


def dynamo_store(factory: ClientFactory) -> DynamoIncidentStore:
    """A DynamoDB incident log in a table of its own (one per test, on the module's endpoint)."""
    table = f"incidents-{next(_tables)}"
    create_table(factory.client("dynamodb"), table)
    return DynamoIncidentStore(factory.client("dynamodb"), table)


@pytest.fixture()
def adapters(tmp_path, dynamodb) -> dict[str, IncidentRepository]:
    return {"sqlite": IncidentStore(tmp_path / "log.sqlite"), "memory": MemoryIncidentStore(),
            "dynamodb": dynamo_store(dynamodb)}


def _minute(n: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def lifecycle(store: IncidentRepository) -> list:
    """Every kind of step, and what the store answers to each (errors included)."""
    seen: list = []

    def step(name, call):
        try:
            seen.append((name, call()))
        except (IncidentStateError, KeyError, ValueError) as exc:
            seen.append((name, type(exc).__name__))

    first = store.open_incident("prod", "web", T0)
    anomaly = Anomaly.build("cpu_utilization", _minute(1), 95.0, 30.0, 20.0, 40.0, 9.0)
    step("anomalies", lambda: store.add_anomalies(first, [anomaly, anomaly]))
    step("again", lambda: store.add_anomalies(first, [anomaly]))
    earlier = Anomaly.build("cpu_utilization", T0, 90.0, 30.0, 20.0, 40.0, 8.0)
    memory = Anomaly.build("memory_utilization", _minute(2), 97.0, 50.0, 40.0, 60.0, 7.0)
    step("more anomalies", lambda: store.add_anomalies(first, [memory, earlier, anomaly]))
    step("onsets", lambda: store.anomaly_onsets(first))
    step("no onsets", lambda: store.anomaly_onsets(99))
    step("diagnose", lambda: store.set_diagnosis(first, _minute(2), LEAK))
    step("bad diagnosis", lambda: store.set_diagnosis(first, _minute(2), {"root_cause": "x"}))
    step("await", lambda: store.set_status(first, _minute(2), "awaiting_approval", expect=("open",)))
    step("await again", lambda: store.set_status(first, _minute(2), "awaiting_approval", expect=("open",)))
    step("approve", lambda: store.approve(first, _minute(3), "alice").approved_by)
    step("approve again", lambda: store.approve(first, _minute(3), "bob"))
    request = ActionRequest("prod", "web", "restart_tasks", incident_id=first, key="incident-1")
    step("begin", lambda: store.begin_action(request, _minute(4), lambda h: (True, {"notes": ["n"]})))
    step("duplicate", lambda: store.begin_action(request, _minute(4), lambda h: (True, {})))
    other = ActionRequest("prod", "web", "scale_up", origin="api", key="api:7")
    step("in flight", lambda: len(store.history("prod", "web", _minute(4)).in_flight))
    step("refused", lambda: store.begin_action(other, _minute(4), lambda h: (False, {"reason": "in_flight"})))
    step("finish", lambda: store.finish_action(1, _minute(5), "done", result={"change": "2 -> 2"}))
    step("verify", lambda: store.set_status(first, _minute(5), "verifying", verify_due_at=_minute(20)))
    step("flying while verifying", lambda: [a.id for a in store.history("prod", "web", _minute(6)).in_flight])
    step("bad move", lambda: store.set_status(first, _minute(6), "awaiting_approval"))
    step("verified", lambda: store.complete_verification(first, _minute(20), True, {"summary": "ok"}))
    step("verified twice", lambda: store.complete_verification(first, _minute(21), True, {"summary": "ok"}))
    step("resolve resolved", lambda: store.resolve(first, _minute(22), "bob"))
    second = store.split_incident("prod", "web", _minute(30), first, {"root_cause": "high_cpu"})
    step("open incidents", lambda: [i.id for i in store.open_incidents("prod", "web")])
    step("ack", lambda: store.acknowledge(second, _minute(31), "carol").status.value)
    step("ack twice", lambda: store.acknowledge(second, _minute(31), "dave"))
    step("escalate", lambda: store.set_status(second, _minute(32), "escalated", payload={"reason": "x"}))
    step("resolve", lambda: store.resolve(second, _minute(33), "carol", "fixed").status.value)
    step("unknown", lambda: store.get(99))
    step("actions", lambda: [(a.id, a.action, a.status, a.key, a.result) for a in store.actions()])
    step("by key", lambda: store.actions_by_key("incident-1").id)
    step("of an incident", lambda: [a.id for a in store.actions(incident_id=first)])
    step("of no incident", lambda: store.actions(incident_id=second))
    step("of a service", lambda: [a.id for a in store.actions(cluster="prod", service="web")])
    step("done in a service",
         lambda: [a.id for a in store.actions(cluster="prod", service="web", status="done")])
    step("of another service", lambda: store.actions(cluster="prod", service="api"))
    step("recent", lambda: [a.id for a in store.history("prod", "web", _minute(40)).recent])
    step("a day later", lambda: store.history("prod", "web", T0 + pd.Timedelta(days=2)).recent)
    step("refusals", lambda: dict(store.refusals()))
    step("counts", lambda: store.count_by_status())
    step("list", lambda: [(i.id, i.status.value, i.root_cause, i.related_to, i.approved_by, i.acked_by,
                           i.closed_at, i.escalated_at, i.verified_at) for i in store.list()])
    step("open", lambda: store.open_for("prod", "web"))
    for incident in (first, second):
        step(f"events {incident}",
             lambda i=incident: [(e["at"], e["kind"], e["data"]) for e in store.events(i)])
        step(f"anomalies {incident}", lambda i=incident: store.anomalies(i))
    fixed = ActionOutcome(first, "prod", "web", "memory_leak", "restart_tasks", True, _minute(20))
    step("outcome", lambda: store.record_outcome(fixed))
    step("outcome again", lambda: store.record_outcome(replace(fixed, resolved=False)))
    step("outcome elsewhere", lambda: store.record_outcome(
        ActionOutcome(second, "prod", "api", "slow_response", "scale_up", False, _minute(33))))
    step("outcomes", lambda: store.outcomes("prod", "web"))
    step("no outcomes", lambda: store.outcomes("prod", "nowhere"))
    store.record(second, _minute(39), "marker", {"first": True})
    for n in range(60):  # a long timeline: the newest of a kind is found past many newer events
        store.record(second, _minute(40 + n), "joined", {"n": n})
    step("last marker", lambda: store.last_event(second, "marker"))
    step("last joined", lambda: store.last_event(second, "joined"))
    step("no such event", lambda: store.last_event(second, "never"))
    return seen


def test_every_adapter_answers_every_step_the_same(adapters) -> None:
    transcripts = {name: lifecycle(store) for name, store in adapters.items()}
    for other in ("memory", "dynamodb"):
        for (name, sqlite), (_, answer) in zip(transcripts["sqlite"], transcripts[other], strict=True):
            assert sqlite == answer, (other, name)
    steps = dict(transcripts["dynamodb"])
    assert steps["anomalies"] == 1 and steps["again"] == 0, "the same anomaly twice is stored once"
    assert steps["more anomalies"] == 2 and steps["onsets"] == {
        "cpu_utilization": T0, "memory_utilization": _minute(2)}, "the earliest anomaly of each metric"
    assert steps["open incidents"] == [2] and steps["of an incident"] == [1] == steps["done in a service"]
    assert steps["bad diagnosis"] == "ValueError" and steps["bad move"] == "IncidentStateError"
    assert steps["await again"] is False and steps["verified twice"] is False, "a step is taken once"
    assert steps["duplicate"] == (1, {"duplicate": True}) and steps["refusals"] == {"in_flight": 1}
    assert steps["flying while verifying"] == [1], "an action is in flight until its incident is verified"
    assert steps["counts"] == {"resolved": 2} and steps["open"] is None
    assert steps["outcome"] is True and steps["outcome again"] is False, "one outcome per incident"
    assert [(o.action, o.resolved) for o in steps["outcomes"]] == [("restart_tasks", True)]
    assert steps["no outcomes"] == []
    assert steps["last joined"]["data"] == {"n": 59} and steps["no such event"] is None
    assert steps["last marker"]["data"] == {"first": True}, "found behind 60 newer events"


def test_every_adapter_is_the_port(adapters) -> None:
    assert all(isinstance(store, IncidentRepository) for store in adapters.values())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_watcher_runs_the_same_on_every_adapter(adapter, adapters, tmp_path) -> None:
    history = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    detector = RobustZDetector().fit(normal(history, np.random.default_rng(0)))
    clock = Clock(T0)
    store = adapters[adapter]
    platform = fake_platform(Settings(data_dir=tmp_path), clock=clock, store=store)
    source = FakeSource([(_minute(3), _minute(10), "high_cpu")])
    watcher = platform.watcher(ServiceTarget(), detector, source=source)
    for _ in range(30):
        watcher.tick()
        clock.advance()
    [incident] = store.list()
    assert (incident.status, incident.root_cause) == ("resolved", "high_cpu")
    assert [a.action for a in store.actions()] == ["scale_up"]


def _as_written_before_the_indexes(store: DynamoIncidentStore) -> None:
    """Turn the table into what an earlier version wrote: OPEN#<id> items, no key indexes."""
    client = store.client
    for item in client.scan(TableName=store.table)["Items"]:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        if sk == "OPEN":
            for n in item["ids"]["NS"]:
                client.put_item(TableName=store.table, Item={
                    "pk": item["pk"], "sk": {"S": f"OPEN#{int(n):012d}"}, "incident_id": {"N": n}})
        if sk in ("OPEN", "ONSETS", "ACTS") or sk.startswith("LAST#") or (
                pk.startswith("SVC#") and sk.startswith("ACT#")):
            client.delete_item(TableName=store.table, Key={"pk": item["pk"], "sk": item["sk"]})


def test_reindex_finds_what_an_earlier_version_wrote(dynamodb) -> None:
    store = dynamo_store(dynamodb)
    first = store.open_incident("prod", "web", T0)
    store.add_anomalies(first, [Anomaly.build("cpu_utilization", _minute(1), 95.0, 30.0, 20.0, 40.0, 9.0)])
    store.record(first, _minute(2), "joined", {"n": 1})
    request = ActionRequest("prod", "web", "scale_up", incident_id=first, key="incident-1")
    store.begin_action(request, _minute(3), lambda h: (True, {}))

    def answers() -> tuple:
        return ([i.id for i in store.open_incidents("prod", "web")], store.last_event(first, "joined"),
                store.anomaly_onsets(first), [a.id for a in store.actions(incident_id=first)],
                [a.id for a in store.actions(cluster="prod", service="web")])

    before = answers()
    _as_written_before_the_indexes(store)
    assert answers() == ([], None, {}, [], [])
    done = store.reindex()
    assert answers() == before == ([1], {"at": _minute(2).isoformat(), "kind": "joined", "data": {"n": 1}},
                                   {"cpu_utilization": _minute(1)}, [1], [1])
    assert done["open incidents"] == 1 and done["actions"] == 1
    assert "open incidents" not in store.reindex() and answers() == before, "running it twice is harmless"


def test_the_open_set_names_too_much_never_too_little(dynamodb) -> None:
    """An id whose incident was never written, or one a resolve left behind, is not an open
    incident; the resolved one is taken out on the way."""
    store = dynamo_store(dynamodb)
    first = store.open_incident("prod", "web", T0)
    store.resolve(first, _minute(1), "bob")
    key = {"pk": {"S": "SVC#prod/web"}, "sk": {"S": "OPEN"}}
    store.client.update_item(TableName=store.table, Key=key, UpdateExpression="ADD #ids :ids",
                             ExpressionAttributeNames={"#ids": "ids"},
                             ExpressionAttributeValues={":ids": {"NS": [str(first), "77"]}})
    second = store.open_incident("prod", "web", _minute(2))
    assert [i.id for i in store.open_incidents("prod", "web")] == [second]
    assert sorted(store.client.get_item(TableName=store.table, Key=key)["Item"]["ids"]["NS"]) == ["2", "77"]


class _SentTwice:
    """A DynamoDB client whose transactions reach the table and are then sent again, as botocore
    does when the first answer timed out (the local endpoint does not honour ClientRequestToken)."""

    def __init__(self, client) -> None:
        self.client = client

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def transact_write_items(self, **kwargs):
        self.client.transact_write_items(**kwargs)
        return self.client.transact_write_items(**kwargs)


def test_a_transaction_sent_again_after_it_was_written_is_done(dynamodb) -> None:
    plain = dynamo_store(dynamodb)
    store = DynamoIncidentStore(_SentTwice(plain.client), plain.table)
    first = store.open_incident("prod", "web", T0)
    store.set_status(first, _minute(1), "escalated", payload={"reason": "x"})
    assert store.acknowledge(first, _minute(2), "carol").acked_by == "carol"
    request = ActionRequest("prod", "web", "scale_up", incident_id=first, key="incident-1")
    assert store.begin_action(request, _minute(3), lambda h: (True, {}))[0] == 1
    store.finish_action(1, _minute(4), "done", result={"change": "2 -> 3"})
    kinds = [e["kind"] for e in store.events(first)]
    assert kinds == ["opened", "status:escalated", "acknowledged", "action_started", "action_done"]
