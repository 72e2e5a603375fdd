"""The incident repository in DynamoDB: one table that watchers, the API and both Lambdas share.

SQLite (:mod:`service.store`) stays the embedded default; this adapter is what several processes
on several hosts use (``AIOPS_STORE=dynamodb``, ``AIOPS_DYNAMODB_TABLE``), because a SQLite file
in WAL mode must not sit on a network filesystem. It passes the same contract as the SQLite log
and the in-memory store (``tests/unit/test_repository.py``).

One table, on-demand capacity, a TTL attribute, and one sparse index (``by_kind``) for listings:

==========================  ====================  ===============================================
``pk``                      ``sk``                what
==========================  ====================  ===============================================
``INC#<id>``                ``INC``               the incident (``rev`` counts its writes)
``INC#<id>``                ``EV#<seq>``          one event of its timeline (``PLATFORM`` for none)
``INC#<id>``                ``LAST#<kind>``       the number of its newest event of each kind
``INC#<id>``                ``AN#<time>#<metric>`` one anomaly (the same one twice is one item)
``INC#<id>``                ``ONSETS``            each anomalous metric's earliest anomaly time
``INC#<id>``                ``ACTS``              the ids of the actions taken for it
``SVC#<cluster>/<service>`` ``OPEN``              the ids of the service's open incidents
``SVC#<cluster>/<service>`` ``ACT#<id>``          one of the service's actions (its id)
``SVC#<cluster>/<service>`` ``GUARD``             the guard: ``rev`` and the actions that still
                                                  count for the guardrails (``live``)
``SVC#<cluster>/<service>`` ``OUT#<incident>``    a verified incident's outcome (learned outcomes)
``ACT#<id>``                ``ACT``               an action and what became of it
``KEY#<key>``               ``KEY``               an idempotency key and the action it names
``COUNTER``                 ``ids``               the next incident, action and event numbers
==========================  ====================  ===============================================

Every step is one conditional write (``TransactWriteItems``):

- an incident's move is written only if its ``rev`` is still the one read, after the Incident
  aggregate allowed it, so two processes cannot both take the same step;
- an action is judged on the service's history read with strongly consistent reads through the
  guard, and recorded only if the guard's ``rev`` is still the one the judge saw (otherwise it is
  judged again on the new history): one action in flight per service, the cooldown and the daily
  cap hold across every process that shares the table, exactly as the guardrails decide them
  (:mod:`service.guardrails`), without a second copy of their rules in condition expressions;
- an idempotency key is a ``KEY#`` item put with ``attribute_not_exists``: the same request
  through two processes is one action.

What a watcher reads every tick is addressed by key, never found in a listing: a service's open
incidents (its ``OPEN`` item, then the incidents), an incident's newest event of a kind (its
``LAST#`` pointer, then the event), its anomalies' onsets, its actions (``ACTS``, then the
actions). The cost of each read is what it returns, not the size of the table. These pointers
are written outside the steps' transactions, in an order that lets them name too much, never too
little: an id or event they name that was never written is skipped (or, for ``LAST#``, looked
up in the timeline), and an incident in ``OPEN`` is checked to be open. Listings of the
whole log (``list``, ``count_by_status``, ``actions`` with neither incident nor service,
``events_of_kind``) read the index, which DynamoDB keeps eventually consistent; everything the
guardrails and the moves read is consistent.

Items expire ``retention_days`` after they are written (an incident: after it is resolved); the
guard and the open-incident index never do.

IAM: :data:`IAM_PERMISSIONS` on the table and its index (a transaction is authorised item by
item as the puts, updates, deletes and condition checks it holds).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from detection.anomaly import Anomaly
from service.action import ActionHistory, ActionOutcome, ActionRecord, ActionRequest, finished_event
from service.incident import Incident, Status, diagnosis_from_dict
from service.repository import Judge

IAM_PERMISSIONS = ("dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                   "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                   "dynamodb:ConditionCheckItem", "dynamodb:BatchWriteItem")
EFFECTIVE_ACTIONS = ("started", "done", "interrupted")
KIND_INDEX = "by_kind"
OPEN_SK = "OPEN"           # SVC#<service>/OPEN: its open incidents' ids
ACTIONS_SK = "ACTS"        # INC#<id>/ACTS: its actions' ids
ONSETS_SK = "ONSETS"       # INC#<id>/ONSETS: each anomalous metric's earliest anomaly
ONSET_PREFIX = "at#"       # its attributes: at#<metric> = ISO time
TTL_ATTRIBUTE = "expires_at"
MAX_ATTEMPTS = 20          # optimistic retries before a step gives up (contention, not errors)
KEEP_LIVE = pd.Timedelta(days=2)   # a finished action counts for cooldowns and caps this long

# The table as CloudFormation and create_table declare it (deploy/template.yaml must match).
TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                             {"AttributeName": "sk", "AttributeType": "S"},
                             {"AttributeName": "kind", "AttributeType": "S"},
                             {"AttributeName": "seq", "AttributeType": "N"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [{
        "IndexName": KIND_INDEX,
        "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"},
                      {"AttributeName": "seq", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"}}],
    "BillingMode": "PAY_PER_REQUEST",
}

_ser, _deser = TypeSerializer(), TypeDeserializer()


class StoreUnavailable(OSError):
    """The table is missing or unreachable; the message names it and how to create it."""


class Contention(RuntimeError):
    """A step lost the race for its item more than :data:`MAX_ATTEMPTS` times in a row."""


def _iso(ts: Any) -> str:
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")).isoformat()


def _ts(value: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(value) if value else None


def _dump(value: Any) -> str:
    return json.dumps(value, default=str)


def _item(values: dict) -> dict:
    """A plain dict as a DynamoDB item (None values left out)."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _plain(item: dict) -> dict:
    out = {k: _deser.deserialize(v) for k, v in item.items()}
    return {k: int(v) if k in ("seq", "rev", "id", "incident_id", "related_to", "action_id", "n_incident",
                               "n_action", "n_event") and v is not None else v
            for k, v in out.items()}


def _onsets(item: dict) -> dict[str, str]:
    """The metric -> earliest anomaly time (ISO) of an incident's ``ONSETS`` item."""
    return {k[len(ONSET_PREFIX):]: v["S"] for k, v in item.items() if k.startswith(ONSET_PREFIX)}


def _earliest(rows: Any) -> dict[str, str]:
    """Each metric's earliest timestamp among anomaly rows (ISO strings in UTC sort as times)."""
    first: dict[str, str] = {}
    for row in rows:
        first[row["metric"]] = min(first.get(row["metric"], row["timestamp"]), row["timestamp"])
    return first


def _service_pk(cluster: str, service: str) -> str:
    return f"SVC#{cluster}/{service}"


def _incident_key(incident_id: int) -> dict:
    return {"pk": {"S": f"INC#{incident_id}"}, "sk": {"S": "INC"}}


def _action_key(action_id: int) -> dict:
    return {"pk": {"S": f"ACT#{action_id}"}, "sk": {"S": "ACT"}}


_INCIDENT_TIMES = ("opened_at", "updated_at", "verify_due_at", "closed_at", "escalated_at", "acked_at",
                   "approved_at", "verified_at")


def _incident_values(incident: Incident) -> dict:
    values: dict[str, Any] = {f.name: getattr(incident, f.name) for f in fields(incident)}
    for name in _INCIDENT_TIMES:
        values[name] = _iso(values[name]) if values[name] is not None else None
    values["status"] = incident.status.value
    values["diagnosis"] = _dump(asdict(incident.diagnosis)) if incident.diagnosis is not None else None
    return values


def _incident_from(item: dict) -> tuple[Incident, int]:
    v = _plain(item)
    times = {name: _ts(v.get(name)) for name in _INCIDENT_TIMES}
    diagnosis = diagnosis_from_dict(json.loads(v["diagnosis"])) if v.get("diagnosis") else None
    incident = Incident(v["id"], v["cluster"], v["service"], Status(v["status"]), diagnosis=diagnosis,
                        acked_by=v.get("acked_by"), approved_by=v.get("approved_by"),
                        related_to=v.get("related_to"), **times)
    return incident, v.get("rev", 0)


def _action_from(item: dict) -> ActionRecord:
    v = _plain(item)
    return ActionRecord(v["id"], v.get("incident_id"), v["cluster"], v["service"], v["action"], v["origin"],
                        v.get("key"), v["status"], _ts(v["requested_at"]), _ts(v.get("finished_at")),
                        v.get("reason"), json.loads(v.get("params") or "{}"),
                        json.loads(v["result"]) if v.get("result") else None, v.get("error"))


class DynamoIncidentStore:
    """The incident log in one DynamoDB table, shared by every process that names it.

    Parameters
    ----------
    client : a boto3 DynamoDB client (from :class:`service.aws.ClientFactory`).
    table : the table's name; it must exist (the stack in ``deploy/`` makes it, and
        :func:`create_table` does for a local endpoint).
    retention_days : items expire (TTL) this long after they are written; an incident only
        after it is resolved.
    """

    def __init__(self, client: Any, table: str, retention_days: int = 400):
        if retention_days < 7:
            raise ValueError("retention_days must be at least 7: the guardrails read a day of history")
        self.client = client
        self.table = table
        self.retention = pd.Timedelta(days=retention_days)
        self.path = Path(f"dynamodb:{table}")
        try:
            client.describe_table(TableName=table)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            hint = ("deploy the stack (`aiops deploy create`) or, on a local endpoint, create it with "
                    "service.dynamo_store.create_table" if code == "ResourceNotFoundException" else code)
            raise StoreUnavailable(f"DynamoDB table {table!r} is not usable: {hint}") from None

    # ------------------------------------------------------------------ low level

    def _expires(self, at: Any) -> int:
        return int((pd.Timestamp(_iso(at)) + self.retention).timestamp())

    def _get(self, key: dict) -> dict | None:
        return self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

    def _next(self, what: str, count: int = 1) -> int:
        """The first of ``count`` new numbers of ``what`` (incident, action, event)."""
        answer = self.client.update_item(
            TableName=self.table, Key={"pk": {"S": "COUNTER"}, "sk": {"S": "ids"}},
            UpdateExpression="ADD #n :c", ExpressionAttributeNames={"#n": f"n_{what}"},
            ExpressionAttributeValues={":c": {"N": str(count)}}, ReturnValues="UPDATED_NEW")
        return int(answer["Attributes"][f"n_{what}"]["N"]) - count + 1

    def _transact(self, items: list[dict]) -> list[str] | None:
        """Write ``items`` atomically; None when done, else the cancellation reason per item.

        A transaction answered as cancelled may have been written after all: botocore sends it
        again when the first answer timed out, and an endpoint that does not honour the
        ClientRequestToken (the local one) then finds its conditions already used up. Every
        step's transaction puts an event whose number no other write has, so that event being
        there means the transaction was written: done, not a lost race."""
        try:
            self.client.transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            if self._written(items):
                return None
            reasons = exc.response.get("CancellationReasons") or []
            return [r.get("Code", "None") for r in reasons] or ["ConditionalCheckFailed"]

    def _written(self, items: list[dict]) -> bool:
        """Whether the event the transaction ``items`` puts is in the table (read consistently)."""
        for op in items:
            item = op.get("Put", {}).get("Item", {})
            if item.get("sk", {}).get("S", "").startswith("EV#"):
                return self._get({"pk": item["pk"], "sk": item["sk"]}) is not None
        return False

    @staticmethod
    def _pause(attempt: int) -> None:
        """A short random wait before a lost race is tried again, so racers spread out."""
        time.sleep(random.uniform(0, 0.01 * (attempt + 1)))

    def _put(self, values: dict, condition: str | None = None, names: dict | None = None,
             extra: dict | None = None) -> dict:
        put: dict[str, Any] = {"TableName": self.table, "Item": _item(values)}
        if condition:
            put["ConditionExpression"] = condition
        if names:
            put["ExpressionAttributeNames"] = names
        if extra:
            put["ExpressionAttributeValues"] = extra
        return {"Put": put}

    def _event_put(self, seq: int, incident_id: int | None, at: Any, kind: str, payload: dict) -> dict:
        pk = f"INC#{incident_id}" if incident_id is not None else "PLATFORM"
        return self._put({"pk": pk, "sk": f"EV#{seq:015d}", "kind": f"event#{kind}", "seq": seq,
                          "incident_id": incident_id, "at": _iso(at), "event_kind": kind,
                          "data": _dump(payload), TTL_ATTRIBUTE: self._expires(at)})

    def _event_items(self, seq: int, incident_id: int | None, at: Any,
                     events: list[tuple[str, dict]]) -> list[dict]:
        """The puts of ``events`` (numbered from ``seq``), once their ``LAST#`` pointers are written.

        Pointer first, event second, each pointer only ever moved forward: a pointer always
        names the newest event of its kind that may exist; if that write never happened (a lost
        race, a crash) ``last_event`` finds it missing and reads the timeline instead. So the
        pointers stay out of the transactions, which keep the size they had."""
        if incident_id is not None:
            newest = {kind: seq + n for n, (kind, _) in enumerate(events)}
            for kind, n in newest.items():
                self._point_latest(incident_id, kind, n, at)
        return [self._event_put(seq + n, incident_id, at, kind, payload)
                for n, (kind, payload) in enumerate(events)]

    def _point_latest(self, incident_id: int, kind: str, seq: int, at: Any) -> None:
        """Point the incident's ``LAST#<kind>`` at event ``seq``, unless it names a newer one."""
        self._unless_newer(self.client.put_item,
            TableName=self.table, Item=_item({"pk": f"INC#{incident_id}", "sk": f"LAST#{kind}",
                                              "event_seq": seq, TTL_ATTRIBUTE: self._expires(at)}),
            ConditionExpression="attribute_not_exists(event_seq) OR event_seq < :seq",
            ExpressionAttributeValues={":seq": {"N": str(seq)}})

    @staticmethod
    def _unless_newer(write: Any, **kwargs: Any) -> None:
        """A conditional write that only moves a value one way: a failed condition means another
        writer already moved it further, which is no error."""
        try:
            write(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _incident_put(self, incident: Incident, rev: int | None) -> dict:
        """The incident's item, written only if its ``rev`` is still ``rev`` (None: a new one)."""
        values = {"pk": f"INC#{incident.id}", "sk": "INC", "kind": "incident", "seq": incident.id,
                  "rev": (rev or 0) + 1, **_incident_values(incident)}
        if incident.status is Status.RESOLVED:
            values[TTL_ATTRIBUTE] = self._expires(incident.closed_at or incident.updated_at)
        if rev is None:
            return self._put(values, "attribute_not_exists(pk)")
        return self._put(values, "#rev = :rev", {"#rev": "rev"}, {":rev": {"N": str(rev)}})

    def _open_index(self, incident: Incident) -> None:
        """Add the incident's id to its service's ``OPEN`` set, or take it out once resolved.

        Not part of the incident's write: the id is added before the incident is written and
        taken out after it is resolved, so the set may name an incident that is not (yet) there
        or no longer open, never miss one that is; readers check each incident they find."""
        self._open_set(_service_pk(incident.cluster, incident.service), incident.id,
                       "DELETE" if incident.status is Status.RESOLVED else "ADD")

    def _open_set(self, service_pk: str, incident_id: int, verb: str) -> None:
        """``ADD`` the id to the service's ``OPEN`` set, or ``DELETE`` it."""
        self.client.update_item(
            TableName=self.table, Key={"pk": {"S": service_pk}, "sk": {"S": OPEN_SK}},
            UpdateExpression=f"{verb} #ids :id", ExpressionAttributeNames={"#ids": "ids"},
            ExpressionAttributeValues={":id": {"NS": [str(incident_id)]}})

    def _ids(self, pk: str, sk: str) -> list[int]:
        """The number set ``ids`` of one item, read consistently (empty when there is none)."""
        item = self._get({"pk": {"S": pk}, "sk": {"S": sk}})
        return sorted(int(n) for n in (item or {}).get("ids", {}).get("NS", []))

    def _query(self, **kwargs: Any) -> Iterator[dict]:
        return self._pages(self.client.query, **kwargs)

    def _pages(self, read: Any, **kwargs: Any) -> Iterator[dict]:
        """Every item a Query or Scan (``read``) of the table answers, page by page."""
        kwargs["TableName"] = self.table
        while True:
            page = read(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, keys: list[dict]) -> list[dict]:
        found: list[dict] = []
        for start in range(0, len(keys), 100):
            pending = {self.table: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            while pending:
                answer = self.client.batch_get_item(RequestItems=pending)
                found.extend(answer.get("Responses", {}).get(self.table, []))
                pending = answer.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ incidents

    def _read(self, incident_id: int) -> tuple[Incident, int]:
        item = self._get(_incident_key(incident_id))
        if item is None:
            raise KeyError(f"no incident {incident_id} in {self.path}")
        return _incident_from(item)

    def open_incident(self, cluster: str, service: str, at: Any, related_to: int | None = None,
                      payload: dict | None = None) -> int:
        at = pd.Timestamp(_iso(at))
        incident_id = self._next("incident")
        incident = Incident(incident_id, cluster, service, Status.OPEN, at, at, None, None, None,
                            related_to=related_to)
        self._open_index(incident)
        items = [self._incident_put(incident, None)]
        opened = {"cluster": cluster, "service": service, **(payload or {})}
        seq = self._next("event", 2 if related_to is not None else 1)
        items += self._event_items(seq, incident_id, at, [("opened", opened)])
        if related_to is not None:
            items += self._event_items(seq + 1, related_to, at, [("split", {
                "incident": incident_id, "root_cause": (payload or {}).get("root_cause"),
                "summary": f"another fault, {(payload or {}).get('root_cause', '?')}: incident "
                           f"{incident_id}"})])
        if self._transact(items) is not None:
            raise Contention(f"incident {incident_id} could not be written")
        return incident_id

    def split_incident(self, cluster: str, service: str, at: Any, related_to: int, payload: dict) -> int:
        """Open an incident told apart from ``related_to``; both timelines say so, in one write."""
        return self.open_incident(cluster, service, at, related_to=related_to,
                                  payload={"related_to": related_to, **payload})

    def get(self, incident_id: int) -> Incident:
        return self._read(incident_id)[0]

    def open_for(self, cluster: str, service: str) -> Incident | None:
        found = self.open_incidents(cluster, service)
        return found[-1] if found else None

    def open_incidents(self, cluster: str, service: str) -> list[Incident]:
        """Every incident of the service still in progress, oldest first (consistent reads of the
        service's ``OPEN`` item and of those incidents: two reads by key, whatever the log holds)."""
        ids = self._ids(_service_pk(cluster, service), OPEN_SK)
        incidents = [_incident_from(i)[0] for i in self._batch_get([_incident_key(n) for n in ids])]
        for closed in (i for i in incidents if not i.status.is_open):
            self._open_index(closed)   # a resolve that stopped before taking it out of the set
        return sorted((i for i in incidents if i.status.is_open), key=lambda i: i.id)

    def _listing(self, kind: str, descending: bool = False, **kwargs: Any) -> Iterator[dict]:
        return self._query(IndexName=KIND_INDEX, KeyConditionExpression="kind = :k",
                           ExpressionAttributeValues={":k": {"S": kind}, **kwargs.pop("values", {})},
                           ScanIndexForward=not descending, **kwargs)

    def list(self, status: str | None = None, limit: int = 50) -> list[Incident]:
        extra: dict[str, Any] = {}
        if status:
            extra = {"FilterExpression": "#s = :s", "ExpressionAttributeNames": {"#s": "status"},
                     "values": {":s": {"S": status}}}
        out: list[Incident] = []
        for item in self._listing("incident", descending=True, **extra):
            if len(out) >= limit:
                break
            out.append(_incident_from(item)[0])
        return out

    def count_by_status(self) -> dict[str, int]:
        items = self._listing("incident", ProjectionExpression="#s",
                              ExpressionAttributeNames={"#s": "status"})
        return dict(Counter(i["status"]["S"] for i in items))

    # ------------------------------------------------------------------ moves

    def _move(self, incident_id: int, at: Any, change, event: tuple[str, dict] | list) -> Incident | None:
        """Read the incident, let ``change(current)`` make the new one (None: no move), and write it
        with its events only if no one wrote the incident in between; read again and retry if one did."""
        for attempt in range(MAX_ATTEMPTS):
            current, rev = self._read(incident_id)
            new = change(current)
            if new is None:
                return None
            events = event(current, new) if callable(event) else event
            events = events if isinstance(events, list) else [events]
            seq = self._next("event", len(events))
            items = [self._incident_put(new, rev), *self._event_items(seq, incident_id, at, events)]
            if self._transact(items) is None:
                if new.status is Status.RESOLVED and current.status is not Status.RESOLVED:
                    self._open_index(new)
                return new
            self._pause(attempt)
        raise Contention(f"incident {incident_id}: {MAX_ATTEMPTS} writers in a row got there first")

    def set_diagnosis(self, incident_id: int, at: Any, diagnosis: dict) -> None:
        typed = diagnosis_from_dict(diagnosis)   # refused here, not when read back
        stamp = pd.Timestamp(_iso(at))
        self._move(incident_id, at, lambda cur: replace(cur, diagnosis=typed, updated_at=stamp),
                   ("diagnosed", json.loads(_dump(diagnosis))))

    def set_status(self, incident_id: int, at: Any, status: str, *, verify_due_at: Any = None,
                   closed: bool = False, payload: dict | None = None,
                   expect: tuple[str, ...] | None = None) -> bool:
        """Move an incident to ``status`` and log the move; with ``expect``, only from one of those."""
        stamp = pd.Timestamp(_iso(at))

        def change(current: Incident) -> Incident | None:
            if expect and current.status not in expect:
                return None
            target = current.check_move(status)
            paging = current.escalated_at
            if target is Status.ESCALATED and current.status is not Status.ESCALATED:
                paging = stamp
            elif target is Status.AWAITING_APPROVAL:
                paging = paging or stamp
            elif target is Status.VERIFYING:
                paging = None
            due = pd.Timestamp(_iso(verify_due_at)) if verify_due_at is not None else current.verify_due_at
            return replace(current, status=target, updated_at=stamp, escalated_at=paging,
                           verify_due_at=due, closed_at=stamp if closed else None)

        moved = self._move(incident_id, at, change,
                           lambda cur, new: (f"status:{new.status}", payload or {}))
        return moved is not None

    def complete_verification(self, incident_id: int, at: Any, passed: bool, payload: dict) -> bool:
        """Record the incident's one verification and move it on; False if it was done already."""
        stamp = pd.Timestamp(_iso(at))
        status = Status.RESOLVED if passed else Status.ESCALATED

        def change(current: Incident) -> Incident | None:
            if current.status is not Status.VERIFYING:
                return None
            return replace(current, status=status, updated_at=stamp, verified_at=stamp,
                           closed_at=stamp if passed else None,
                           escalated_at=current.escalated_at or (None if passed else stamp))

        events = [("verification", {**payload, "passed": passed}),
                  (f"status:{status}", {"summary" if passed else "reason": payload.get("summary", "")})]
        return self._move(incident_id, at, change, events) is not None

    def acknowledge(self, incident_id: int, at: Any, by: str) -> Incident:
        stamp = pd.Timestamp(_iso(at))
        return self._move(incident_id, at, lambda cur: cur.acknowledge(by, stamp),
                          ("acknowledged", {"by": by}))

    def approve(self, incident_id: int, at: Any, by: str) -> Incident:
        stamp = pd.Timestamp(_iso(at))
        return self._move(incident_id, at, lambda cur: cur.approve(by, stamp),
                          lambda cur, new: ("approved", {"by": by, "action": new.auto_action}))

    def resolve(self, incident_id: int, at: Any, by: str, note: str = "") -> Incident:
        stamp = pd.Timestamp(_iso(at))
        return self._move(incident_id, at, lambda cur: cur.resolve(stamp),
                          ("status:resolved", {"by": by, "summary": note or f"resolved by {by}"}))

    # ------------------------------------------------------------------ anomalies and the timeline

    def add_anomalies(self, incident_id: int, anomalies: list[Anomaly]) -> int:
        """Attach anomalies; the same metric and timestamp reported twice is stored once.

        Which are stored already is read by key (the anomalies' own, with the incident's onsets
        in the same read), then the new ones are written and any earlier onset is kept."""
        pk = f"INC#{incident_id}"
        rows: dict[str, dict] = {}
        for a in anomalies:
            stamp = _iso(a.timestamp)
            rows.setdefault(f"AN#{stamp}#{a.metric}", {
                "metric": a.metric, "timestamp": stamp, "value": a.value, "expected": a.expected,
                "lower": a.lower, "upper": a.upper, "score": a.score, "text": a.render()})
        keys = [{"pk": {"S": pk}, "sk": {"S": sk}} for sk in [*rows, ONSETS_SK]]
        found = {i["sk"]["S"]: i for i in self._batch_get(keys)}
        new = {sk: row for sk, row in rows.items() if sk not in found}
        self._batch_write([_item({"pk": pk, "sk": sk, "data": _dump(row),
                                  TTL_ATTRIBUTE: self._expires(row["timestamp"])})
                           for sk, row in new.items()])
        onsets = _onsets(found.get(ONSETS_SK) or {})
        for metric, stamp in sorted(_earliest(new.values()).items()):
            if metric not in onsets or stamp < onsets[metric]:
                self._keep_onset(pk, metric, stamp)
        return len(new)

    def _batch_write(self, items: list[dict]) -> None:
        """Put ``items`` (DynamoDB items), 25 to a request, until none is left unprocessed."""
        requests = [{"PutRequest": {"Item": item}} for item in items]
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def _keep_onset(self, pk: str, metric: str, stamp: str) -> None:
        """Set the metric's onset to ``stamp`` unless another writer set an earlier one."""
        self._unless_newer(self.client.update_item,
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": ONSETS_SK}},
            UpdateExpression="SET #m = :at, #exp = :exp",
            ConditionExpression="attribute_not_exists(#m) OR #m > :at",
            ExpressionAttributeNames={"#m": f"{ONSET_PREFIX}{metric}", "#exp": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":at": {"S": stamp}, ":exp": {"N": str(self._expires(stamp))}})

    def anomalies(self, incident_id: int) -> list[dict]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :an)",
                            ExpressionAttributeValues={":pk": {"S": f"INC#{incident_id}"},
                                                       ":an": {"S": "AN#"}}, ConsistentRead=True)
        rows = [json.loads(i["data"]["S"]) for i in items]
        return sorted(rows, key=lambda r: (r["timestamp"], r["metric"]))

    def anomaly_onsets(self, incident_id: int) -> dict[str, pd.Timestamp]:
        """Each metric of the incident's anomalies and the time of its earliest one (one read)."""
        item = self._get({"pk": {"S": f"INC#{incident_id}"}, "sk": {"S": ONSETS_SK}})
        return {m: pd.Timestamp(at) for m, at in sorted(_onsets(item or {}).items())}

    def record(self, incident_id: int | None, at: Any, kind: str, payload: dict | None = None) -> None:
        """Append one event to an incident's timeline (or the platform's, with no incident)."""
        [put] = self._event_items(self._next("event"), incident_id, at, [(kind, payload or {})])
        self.client.put_item(**put["Put"])

    def _timeline(self, incident_id: int | None, descending: bool = False) -> Iterator[dict]:
        pk = f"INC#{incident_id}" if incident_id is not None else "PLATFORM"
        for item in self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
                                ExpressionAttributeValues={":pk": {"S": pk}, ":ev": {"S": "EV#"}},
                                ConsistentRead=True, ScanIndexForward=not descending):
            v = _plain(item)
            yield {"at": v["at"], "kind": v["event_kind"], "data": json.loads(v["data"])}

    def events(self, incident_id: int) -> list[dict]:
        return list(self._timeline(incident_id))

    def last_event(self, incident_id: int, kind: str) -> dict | None:
        """The incident's newest event of one kind (at, kind, data), or None.

        Two reads by key however long the timeline (an escalated incident's grows every
        minute): its ``LAST#`` pointer, then the event it names. No pointer: no such event. Only
        when the event named was never written (see :meth:`_event_items`) is the timeline read,
        newest first and filtered by DynamoDB."""
        pointer = self._get({"pk": {"S": f"INC#{incident_id}"}, "sk": {"S": f"LAST#{kind}"}})
        if pointer is None:
            return None
        seq = int(pointer["event_seq"]["N"])
        item = self._get({"pk": {"S": f"INC#{incident_id}"}, "sk": {"S": f"EV#{seq:015d}"}})
        if item is None:
            item = next(self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
                                    FilterExpression="#kind = :kind",
                                    ExpressionAttributeNames={"#kind": "event_kind"},
                                    ExpressionAttributeValues={":pk": {"S": f"INC#{incident_id}"},
                                                               ":ev": {"S": "EV#"}, ":kind": {"S": kind}},
                                    ConsistentRead=True, ScanIndexForward=False), None)
        if item is None:
            return None
        v = _plain(item)
        return {"at": v["at"], "kind": v["event_kind"], "data": json.loads(v["data"])}

    def events_of_kind(self, kind: str) -> list[dict]:
        """Every event of one kind, oldest first, with its incident id (None for the platform's)."""
        out = []
        for item in self._listing(f"event#{kind}"):
            v = _plain(item)
            out.append({"incident_id": v.get("incident_id"), "at": v["at"], "data": json.loads(v["data"])})
        return out

    def refusals(self) -> Counter:
        """How many actions the guardrails refused, by reason."""
        return Counter(e["data"].get("reason", "?") for e in self.events_of_kind("guardrail_refused"))

    # ------------------------------------------------------------------ actions

    def _guard(self, cluster: str, service: str) -> tuple[int | None, list[int]]:
        """The service's guard: its ``rev`` (None before the first action) and its live action ids."""
        item = self._get({"pk": {"S": _service_pk(cluster, service)}, "sk": {"S": "GUARD"}})
        if item is None:
            return None, []
        v = _plain(item)
        return v["rev"], [int(n) for n in v.get("live", [])]

    def _live(self, ids: list[int]) -> tuple[list[ActionRecord], dict[int, Incident]]:
        """The guard's actions and their incidents, read consistently."""
        records = [_action_from(i) for i in self._batch_get([_action_key(n) for n in ids])]
        incident_ids = sorted({r.incident_id for r in records if r.incident_id is not None})
        incidents = {i.id: i for i in (_incident_from(item)[0] for item in
                                       self._batch_get([_incident_key(n) for n in incident_ids]))}
        return sorted(records, key=lambda r: r.id), incidents

    @staticmethod
    def _judged(records: list[ActionRecord], incidents: dict[int, Incident], at: Any,
                dry_run: bool) -> ActionHistory:
        counted = EFFECTIVE_ACTIONS + (("dry_run",) if dry_run else ())
        since = pd.Timestamp(_iso(at)) - pd.Timedelta(days=1)
        mine = [r for r in records if r.status in counted]
        recent = sorted((r for r in mine if r.requested_at >= since), key=lambda r: r.requested_at)
        flying = [r for r in mine if r.status == "started" or (
            r.incident_id in incidents and incidents[r.incident_id].status is Status.VERIFYING)]
        return ActionHistory(recent, flying)

    @staticmethod
    def _still_live(records: list[ActionRecord], incidents: dict[int, Incident], at: Any) -> list[int]:
        """The actions that may still count for the guardrails after ``at`` (the guard keeps these)."""
        horizon = pd.Timestamp(_iso(at)) - KEEP_LIVE
        keep = []
        for r in records:
            incident = incidents.get(r.incident_id) if r.incident_id is not None else None
            if r.status == "started" or (r.status in EFFECTIVE_ACTIONS + ("dry_run",) and (
                    r.requested_at >= horizon or (incident is not None and incident.status.is_open))):
                keep.append(r.id)
        return keep

    def _guard_write(self, cluster: str, service: str, rev: int | None, live: list[int] | None) -> dict:
        """The guard's update, only if its ``rev`` is still ``rev``; ``live`` None: a check only."""
        key = {"pk": {"S": _service_pk(cluster, service)}, "sk": {"S": "GUARD"}}
        condition = "attribute_not_exists(pk)" if rev is None else "#rev = :rev"
        names = None if rev is None else {"#rev": "rev"}
        values = {} if rev is None else {":rev": {"N": str(rev)}}
        if live is None:
            check = {"TableName": self.table, "Key": key, "ConditionExpression": condition}
            if names:
                check.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            return {"ConditionCheck": check}
        update = {"TableName": self.table, "Key": key, "ConditionExpression": condition,
                  "UpdateExpression": "SET #rev = :next, #live = :live",
                  "ExpressionAttributeNames": {"#rev": "rev", "#live": "live"},
                  "ExpressionAttributeValues": {**values, ":next": {"N": str((rev or 0) + 1)},
                                                ":live": _ser.serialize(live)}}
        return {"Update": update}

    def begin_action(self, request: ActionRequest, at: Any, judge: Judge) -> tuple[int | None, dict]:
        """Judge and record an action in one conditional write, before it is attempted.

        The judge sees the service's history as read through the guard; the action (or the
        refusal) is written only if the guard is unchanged since, otherwise the judge sees the
        new history. A key seen before returns that action's id and ``{"duplicate": True}``.
        """
        base = {"action": request.action, "cluster": request.cluster, "service": request.service,
                "origin": request.origin, **request.params}
        for attempt in range(MAX_ATTEMPTS):
            if request.key:
                seen = self.actions_by_key(request.key)
                if seen is not None:
                    return seen.id, {"duplicate": True}
            rev, ids = self._guard(request.cluster, request.service)
            records, incidents = self._live(ids)
            allowed, verdict = judge(self._judged(records, incidents, at, request.dry_run))
            if not allowed:
                refused = self._event_items(self._next("event"), request.incident_id, at, [
                    ("guardrail_refused", json.loads(_dump({**base, **verdict})))])
                if self._transact([self._guard_write(request.cluster, request.service, rev, None),
                                   *refused]) is None:
                    return None, verdict
                self._pause(attempt)
                continue
            action_id, seq = self._next("action"), self._next("event")
            record = ActionRecord(action_id, request.incident_id, request.cluster, request.service,
                                  request.action, request.origin, request.key, "started",
                                  pd.Timestamp(_iso(at)), None, request.reason, dict(request.params),
                                  None, None)
            live = self._still_live(records, incidents, at) + [action_id]
            kind = "action_started" if request.origin == "auto" else f"{request.origin}_action_started"
            notes = {k: v for k, v in verdict.items() if k == "notes"}
            self._action_index(record)
            items = [self._guard_write(request.cluster, request.service, rev, live),
                     self._action_put(record, new=True),
                     *self._event_items(seq, request.incident_id, at, [(kind, json.loads(_dump(
                         {**base, "action_id": action_id, "reason": request.reason, **notes})))])]
            if request.key:
                items.append(self._put({"pk": f"KEY#{request.key}", "sk": "KEY", "action_id": action_id,
                                        TTL_ATTRIBUTE: self._expires(at)}, "attribute_not_exists(pk)"))
            if self._transact(items) is None:
                return action_id, verdict
            self._pause(attempt)
        raise Contention(f"{request.cluster}/{request.service}: {MAX_ATTEMPTS} actions in a row were "
                         "recorded by other processes while this one was judged")

    def _action_put(self, record: ActionRecord, new: bool = False) -> dict:
        values = {"pk": f"ACT#{record.id}", "sk": "ACT", "kind": "action", "seq": record.id,
                  "id": record.id, "incident_id": record.incident_id, "cluster": record.cluster,
                  "service": record.service, "action": record.action, "origin": record.origin,
                  "key": record.key, "status": record.status, "requested_at": _iso(record.requested_at),
                  "finished_at": _iso(record.finished_at) if record.finished_at is not None else None,
                  "reason": record.reason, "params": _dump(record.params),
                  "result": _dump(record.result) if record.result else None, "error": record.error,
                  TTL_ATTRIBUTE: self._expires(record.requested_at)}
        return self._put(values, "attribute_not_exists(pk)" if new else "attribute_exists(pk)")

    def _action_index(self, record: ActionRecord) -> None:
        """Where the action is found by key: its id in its incident's ``ACTS`` set and an
        ``ACT#`` item under its service. Written before the action itself (not in its
        transaction): an id whose action was never written is skipped by every reader."""
        expires = self._expires(record.requested_at)
        self.client.put_item(TableName=self.table, Item=_item({
            "pk": _service_pk(record.cluster, record.service), "sk": f"ACT#{record.id:012d}",
            "action_id": record.id, TTL_ATTRIBUTE: expires}))
        if record.incident_id is not None:
            self.client.update_item(
                TableName=self.table, Key={"pk": {"S": f"INC#{record.incident_id}"}, "sk": {"S": ACTIONS_SK}},
                UpdateExpression="ADD #ids :id SET #exp = :exp",
                ExpressionAttributeNames={"#ids": "ids", "#exp": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":id": {"NS": [str(record.id)]}, ":exp": {"N": str(expires)}})

    def finish_action(self, action_id: int, at: Any, status: str, result: dict | None = None,
                      error: str | None = None) -> None:
        """Record what a started action came to; the guard moves on, so judges read it anew."""
        record = self.action(action_id)
        result = json.loads(_dump(result)) if result else None
        done = replace(record, status=status, finished_at=pd.Timestamp(_iso(at)), result=result, error=error)
        kind, payload = finished_event(record, status, result, error)
        guard = {"Update": {"TableName": self.table,
                            "Key": {"pk": {"S": _service_pk(record.cluster, record.service)},
                                    "sk": {"S": "GUARD"}},
                            "UpdateExpression": "ADD #rev :one", "ExpressionAttributeNames": {"#rev": "rev"},
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}}
        reasons = self._transact([self._action_put(done), guard, *self._event_items(
            self._next("event"), record.incident_id, at, [(kind, json.loads(_dump(payload)))])])
        if reasons is not None:
            raise KeyError(f"no action {action_id}")

    def action(self, action_id: int) -> ActionRecord:
        item = self._get(_action_key(action_id))
        if item is None:
            raise KeyError(f"no action {action_id}")
        return _action_from(item)

    def actions_by_key(self, key: str) -> ActionRecord | None:
        """The action recorded under an idempotency key, if any."""
        item = self._get({"pk": {"S": f"KEY#{key}"}, "sk": {"S": "KEY"}})
        return self.action(int(item["action_id"]["N"])) if item else None

    def actions(self, incident_id: int | None = None, cluster: str | None = None,
                service: str | None = None, status: str | None = None) -> list[ActionRecord]:
        """Actions, oldest first, filtered by incident, service or status.

        An incident's (its ``ACTS`` set) and a service's (its ``ACT#`` items) are read by key;
        only a listing across every service reads the index."""
        wanted = {"incident_id": incident_id, "cluster": cluster, "service": service, "status": status}
        if incident_id is not None:
            ids = self._ids(f"INC#{incident_id}", ACTIONS_SK)
        elif cluster is not None and service is not None:
            ids = [int(i["action_id"]["N"]) for i in self._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :act)", ConsistentRead=True,
                ExpressionAttributeValues={":pk": {"S": _service_pk(cluster, service)},
                                           ":act": {"S": "ACT#"}})]
        else:
            ids = None
        items = self._listing("action") if ids is None else self._batch_get([_action_key(n) for n in ids])
        records = sorted((_action_from(i) for i in items), key=lambda r: r.id)
        return [r for r in records if all(v is None or getattr(r, k) == v for k, v in wanted.items())]

    def history(self, cluster: str, service: str, at: Any, dry_run: bool = False) -> ActionHistory:
        """The service's action history as the guardrails see it at ``at``."""
        records, incidents = self._live(self._guard(cluster, service)[1])
        return self._judged(records, incidents, at, dry_run)

    # ------------------------------------------------------------------ learned outcomes

    def record_outcome(self, outcome: ActionOutcome) -> bool:
        """One item per incident under its service, put only if absent (a replay writes nothing)."""
        values = {"pk": _service_pk(outcome.cluster, outcome.service),
                  "sk": f"OUT#{outcome.incident_id:012d}", "incident_id": outcome.incident_id,
                  "cause": outcome.cause, "action": outcome.action, "resolved": bool(outcome.resolved),
                  "at": _iso(outcome.at), TTL_ATTRIBUTE: self._expires(outcome.at)}
        try:
            self.client.put_item(**self._put(values, "attribute_not_exists(pk)")["Put"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def outcomes(self, cluster: str, service: str) -> list[ActionOutcome]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :out)",
                            ExpressionAttributeValues={":pk": {"S": _service_pk(cluster, service)},
                                                       ":out": {"S": "OUT#"}}, ConsistentRead=True)
        found = [ActionOutcome(int(v["incident_id"]), cluster, service, v["cause"], v["action"],
                               bool(v["resolved"]), pd.Timestamp(v["at"]))
                 for v in (_plain(i) for i in items)]
        return sorted(found, key=lambda o: (o.at, o.incident_id))

    # ------------------------------------------------------------------ upgrading a table

    def reindex(self) -> dict[str, int]:
        """Write the key-addressed indexes for what a table written before them holds.

        A table written by an earlier version has ``OPEN#<id>`` items instead of the ``OPEN``
        set, and no ``LAST#`` pointers, ``ONSETS`` or action ids: without them its open
        incidents, newest events and actions are not found. One scan of the table; every write
        is idempotent, so running it twice (or while watchers run) is harmless."""
        done: Counter = Counter()
        anomalies: dict[str, list[dict]] = {}
        newest: dict[tuple[int, str], tuple[int, str]] = {}   # (incident, kind) -> (seq, at)
        for item in self._pages(self.client.scan):
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if sk.startswith("OPEN#"):
                self._reopen(pk, int(item["incident_id"]["N"]), item["sk"])
                done["open incidents"] += 1
            elif sk.startswith("EV#") and pk.startswith("INC#"):
                v = _plain(item)
                key = (int(pk[4:]), v["event_kind"])
                newest[key] = max(newest.get(key, (0, "")), (v["seq"], v["at"]))
            elif sk.startswith("AN#"):
                anomalies.setdefault(pk, []).append(json.loads(item["data"]["S"]))
            elif sk == "ACT":
                self._action_index(_action_from(item))
                done["actions"] += 1
        for (incident_id, kind), (seq, at) in sorted(newest.items()):
            self._point_latest(incident_id, kind, seq, at)
            done["newest events"] += 1
        for pk, rows in anomalies.items():
            for metric, stamp in sorted(_earliest(rows).items()):
                self._keep_onset(pk, metric, stamp)
            done["incidents with anomalies"] += 1
        return dict(done)

    def _reopen(self, service_pk: str, incident_id: int, old_sk: dict) -> None:
        """Move an earlier version's ``OPEN#<id>`` item into the service's ``OPEN`` set."""
        self._open_set(service_pk, incident_id, "ADD")
        self.client.delete_item(TableName=self.table, Key={"pk": {"S": service_pk}, "sk": old_sk})

    def close(self) -> None:
        """Nothing to close: the client holds no connection of its own."""


def create_table(client: Any, table: str) -> bool:
    """Create the table (on-demand, TTL on ``expires_at``) if it is absent; True if it was made.

    On AWS the stack in ``deploy/`` makes it (with point-in-time recovery); this is for a local
    endpoint and for a user who runs the platform without the stack.
    """
    try:
        client.describe_table(TableName=table)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    client.create_table(TableName=table, **TABLE_SCHEMA)
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    return True
