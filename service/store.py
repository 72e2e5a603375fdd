"""The incident log: incidents, their anomalies and every event of their lifecycle, in SQLite.

WAL mode, one short transaction per write, so a crash loses at most the step in progress and
a restarted watcher finds every incident whose verification or escalation is still pending.
Times are stored as ISO 8601 UTC text; payloads as JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from detection.anomaly import Anomaly

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    service TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    root_cause TEXT,
    severity TEXT,
    confidence REAL,
    diagnosis TEXT,
    verify_due_at TEXT,
    closed_at TEXT
);
CREATE INDEX IF NOT EXISTS incidents_by_service ON incidents (cluster, service, status);
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    metric TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    value REAL NOT NULL,
    expected REAL NOT NULL,
    lower REAL NOT NULL,
    upper REAL NOT NULL,
    score REAL NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (incident_id, metric, timestamp)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER REFERENCES incidents(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_incident ON events (incident_id, id);
"""

OPEN_STATUSES = ("open", "verifying", "escalated")


def _iso(ts: Any) -> str:
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")).isoformat()


@dataclass(frozen=True)
class Incident:
    """An incident row as the rest of the platform reads it."""

    id: int
    cluster: str
    service: str
    status: str
    opened_at: pd.Timestamp
    updated_at: pd.Timestamp
    root_cause: str | None
    severity: str | None
    confidence: float | None
    diagnosis: dict | None
    verify_due_at: pd.Timestamp | None
    closed_at: pd.Timestamp | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Incident":
        def ts(v):
            return pd.Timestamp(v) if v else None
        return cls(row["id"], row["cluster"], row["service"], row["status"], ts(row["opened_at"]),
                   ts(row["updated_at"]), row["root_cause"], row["severity"], row["confidence"],
                   json.loads(row["diagnosis"]) if row["diagnosis"] else None,
                   ts(row["verify_due_at"]), ts(row["closed_at"]))

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        for key in ("opened_at", "updated_at", "verify_due_at", "closed_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


class IncidentStore:
    """The SQLite incident log. Every method is one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def open_incident(self, cluster: str, service: str, at: Any) -> int:
        with self._connect() as db:
            cur = db.execute("INSERT INTO incidents (cluster, service, status, opened_at, updated_at) "
                             "VALUES (?, ?, 'open', ?, ?)", (cluster, service, _iso(at), _iso(at)))
            incident_id = int(cur.lastrowid)
            self._event(db, incident_id, at, "opened", {"cluster": cluster, "service": service})
            return incident_id

    def add_anomalies(self, incident_id: int, anomalies: list[Anomaly]) -> int:
        """Attach anomalies; the same metric and timestamp reported twice is stored once."""
        rows = [(incident_id, a.metric, _iso(a.timestamp), a.value, a.expected, a.lower, a.upper,
                 a.score, a.render()) for a in anomalies]
        with self._connect() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO anomalies (incident_id, metric, timestamp, value, "
                           "expected, lower, upper, score, text) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            return db.total_changes - before

    def record(self, incident_id: int | None, at: Any, kind: str, payload: dict | None = None) -> None:
        """Append one event to an incident's timeline (or the platform's, with no incident)."""
        with self._connect() as db:
            self._event(db, incident_id, at, kind, payload or {})

    @staticmethod
    def _event(db: sqlite3.Connection, incident_id: int | None, at: Any, kind: str, payload: dict) -> None:
        db.execute("INSERT INTO events (incident_id, at, kind, payload) VALUES (?, ?, ?, ?)",
                   (incident_id, _iso(at), kind, json.dumps(payload, default=str)))

    def set_diagnosis(self, incident_id: int, at: Any, diagnosis: dict) -> None:
        with self._connect() as db:
            db.execute("UPDATE incidents SET root_cause=?, severity=?, confidence=?, diagnosis=?, "
                       "updated_at=? WHERE id=?",
                       (diagnosis["root_cause"], diagnosis["severity"], diagnosis["confidence"],
                        json.dumps(diagnosis, default=str), _iso(at), incident_id))
            self._event(db, incident_id, at, "diagnosed", diagnosis)

    def set_status(self, incident_id: int, at: Any, status: str, *, verify_due_at: Any = None,
                   closed: bool = False, payload: dict | None = None) -> None:
        """Move an incident to ``status`` and log the move, in one transaction."""
        with self._connect() as db:
            db.execute("UPDATE incidents SET status=?, updated_at=?, "
                       "verify_due_at=COALESCE(?, verify_due_at), closed_at=? WHERE id=?",
                       (status, _iso(at), _iso(verify_due_at) if verify_due_at is not None else None,
                        _iso(at) if closed else None, incident_id))
            self._event(db, incident_id, at, f"status:{status}", payload or {})

    def get(self, incident_id: int) -> Incident:
        with self._connect() as db:
            row = db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(f"no incident {incident_id} in {self.path}")
        return Incident.from_row(row)

    def open_for(self, cluster: str, service: str) -> Incident | None:
        """The service's incident still in progress, if any (one per service at a time)."""
        marks = ",".join("?" * len(OPEN_STATUSES))
        with self._connect() as db:
            row = db.execute(f"SELECT * FROM incidents WHERE cluster=? AND service=? AND status IN "
                             f"({marks}) ORDER BY id DESC LIMIT 1",
                             (cluster, service, *OPEN_STATUSES)).fetchone()
        return Incident.from_row(row) if row else None

    def list(self, status: str | None = None, limit: int = 50) -> list[Incident]:
        query, args = "SELECT * FROM incidents", []
        if status:
            query, args = query + " WHERE status=?", [status]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Incident.from_row(r) for r in rows]

    def anomalies(self, incident_id: int) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT metric, timestamp, value, expected, lower, upper, score, text "
                              "FROM anomalies WHERE incident_id=? ORDER BY timestamp, metric",
                              (incident_id,)).fetchall()
        return [dict(r) for r in rows]

    def events(self, incident_id: int) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT at, kind, payload FROM events WHERE incident_id=? ORDER BY id",
                              (incident_id,)).fetchall()
        return [{"at": r["at"], "kind": r["kind"], "data": json.loads(r["payload"])} for r in rows]
