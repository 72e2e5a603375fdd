"""Leases: which watcher replica owns which service, so several replicas share one fleet.

Each replica asks, every tick and for every configured service, to hold the service's lease for
``ttl`` more; only the holder ticks it. A replica that dies stops renewing, its leases lapse
after ``ttl``, and the next replica that asks takes the service over (its watcher then resumes
whatever the dead one left: an interrupted action, a verification or escalation that is due).
Two replicas can never both hold one service's lease at one instant: a lease is taken by one
conditional write (DynamoDB) or one transaction (SQLite, the in-memory store's lock).

Time is the platform's clock; hosts whose clocks differ by less than ``ttl`` agree on expiry.
Leases decide who *watches*; what may be *done* is still decided by the guardrails' conditional
write in the incident log, so even a replica that wrongly believes it holds a lease (paused past
its ``ttl``) cannot act twice on one incident or break a guardrail.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from botocore.exceptions import ClientError

DEFAULT_TTL = pd.Timedelta(minutes=2)


class Leases(Protocol):
    def hold(self, name: str, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> bool:
        """Take or renew ``name`` for ``owner`` until ``now + ttl``; False while another owner
        holds an unexpired lease on it."""

    def release(self, name: str, owner: str) -> None:
        """Give ``name`` up now if ``owner`` holds it (a replica that stops cleanly)."""

    def holder(self, name: str, now: pd.Timestamp) -> str | None:
        """Who holds ``name`` at ``now``, if anyone."""

    def heartbeat(self, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> int:
        """``owner`` is alive until ``now + ttl``; returns how many replicas are alive at ``now``
        (each then takes no more than its fair share of the services)."""


def _epoch(at: pd.Timestamp) -> float:
    return pd.Timestamp(at).timestamp()


class MemoryLeases:
    """Leases in this process (tests, and replicas simulated in one process)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}
        self._members: dict[str, float] = {}
        self._lock = threading.Lock()

    def heartbeat(self, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> int:
        with self._lock:
            self._members[owner] = _epoch(now + ttl)
            return sum(until > _epoch(now) for until in self._members.values())

    def hold(self, name: str, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> bool:
        with self._lock:
            current = self._held.get(name)
            if current is not None and current[0] != owner and current[1] > _epoch(now):
                return False
            self._held[name] = (owner, _epoch(now + ttl))
            return True

    def release(self, name: str, owner: str) -> None:
        with self._lock:
            if self._held.get(name, ("", 0.0))[0] == owner:
                del self._held[name]

    def holder(self, name: str, now: pd.Timestamp) -> str | None:
        current = self._held.get(name)
        return current[0] if current is not None and current[1] > _epoch(now) else None


class SqliteLeases:
    """Leases in the incident log's SQLite file (replicas on one host sharing a data folder)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with closing(self._connect()) as db:
            db.execute("CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                       "until REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS replicas (owner TEXT PRIMARY KEY, until REAL NOT NULL)")

    def heartbeat(self, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> int:
        with closing(self._connect()) as db:
            db.execute("INSERT OR REPLACE INTO replicas (owner, until) VALUES (?, ?)",
                       (owner, _epoch(now + ttl)))
            db.execute("DELETE FROM replicas WHERE until < ?", (_epoch(now) - 86_400,))
            return db.execute("SELECT COUNT(*) FROM replicas WHERE until > ?", (_epoch(now),)).fetchone()[0]

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def hold(self, name: str, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> bool:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT owner, until FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > _epoch(now):
                db.execute("ROLLBACK")
                return False
            db.execute("INSERT OR REPLACE INTO leases (name, owner, until) VALUES (?, ?, ?)",
                       (name, owner, _epoch(now + ttl)))
            db.execute("COMMIT")
            return True

    def release(self, name: str, owner: str) -> None:
        with closing(self._connect()) as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def holder(self, name: str, now: pd.Timestamp) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT owner, until FROM leases WHERE name = ?", (name,)).fetchone()
        return row[0] if row is not None and row[1] > _epoch(now) else None


class DynamoLeases:
    """Leases as items of the shared incident table (``pk = LEASE#<service>``), each taken or
    renewed by one conditional PutItem: free, lapsed, or already ours."""

    def __init__(self, client: Any, table: str):
        self.client = client
        self.table = table

    @staticmethod
    def _key(name: str) -> dict:
        return {"pk": {"S": f"LEASE#{name}"}, "sk": {"S": "LEASE"}}

    def hold(self, name: str, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> bool:
        until = _epoch(now + ttl)
        item = self._key(name) | {"owner": {"S": owner}, "until": {"N": repr(until)},
                                  "expires_at": {"N": str(int(until) + 86_400)}}
        try:
            self.client.put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #o = :me OR #u < :now",
                ExpressionAttributeNames={"#o": "owner", "#u": "until"},
                ExpressionAttributeValues={":me": {"S": owner}, ":now": {"N": repr(_epoch(now))}})
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def heartbeat(self, owner: str, now: pd.Timestamp, ttl: pd.Timedelta) -> int:
        """One item holds every replica's ``until`` in a map; stale entries (a day) are removed."""
        key = self._key("replicas")
        update = dict(TableName=self.table, Key=key, UpdateExpression="SET #m.#me = :until",
                      ExpressionAttributeNames={"#m": "members", "#me": owner},
                      ExpressionAttributeValues={":until": {"N": repr(_epoch(now + ttl))}},
                      ReturnValues="ALL_NEW")
        try:
            members = self.client.update_item(**update)["Attributes"]["members"]["M"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            try:   # the first heartbeat ever: the map does not exist yet
                self.client.put_item(TableName=self.table, Item=key | {"members": {"M": {}}},
                                     ConditionExpression="attribute_not_exists(pk)")
            except ClientError as again:
                if again.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            members = self.client.update_item(**update)["Attributes"]["members"]["M"]
        until = {name: float(value["N"]) for name, value in members.items()}
        stale = [name for name, t in until.items() if t < _epoch(now) - 86_400]
        if stale:
            names = {f"#s{i}": name for i, name in enumerate(stale)}
            self.client.update_item(TableName=self.table, Key=key,
                                    ExpressionAttributeNames=names | {"#m": "members"},
                                    UpdateExpression="REMOVE " + ", ".join(f"#m.{n}" for n in names))
        return sum(t > _epoch(now) for t in until.values())

    def release(self, name: str, owner: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key=self._key(name),
                                    ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                                    ExpressionAttributeValues={":me": {"S": owner}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def holder(self, name: str, now: pd.Timestamp) -> str | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(name),
                                    ConsistentRead=True).get("Item")
        if item is None or float(item["until"]["N"]) <= _epoch(now):
            return None
        return item["owner"]["S"]
