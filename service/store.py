"""The incident log: incidents, their anomalies, actions and every event of their lifecycle, in SQLite.

WAL mode, one short transaction per write, so a crash loses at most the step in progress and
a restarted watcher finds every incident whose verification or escalation is still pending.
Times are stored as ISO 8601 UTC text; payloads as JSON.

The incident itself, its statuses and the moves between them are :mod:`service.incident` (pure);
this log asks it before every write (a move it does not allow raises IncidentStateError) and
stores each move as one conditional update.

A service may have several open incidents at once, never two in the automated phase (``open``,
``verifying``). The watcher (:mod:`service.watcher`, :mod:`service.triage`) files new anomalies:
they join the incident in its automated phase if there is one; otherwise they join an open
incident that has their root cause or already shows their symptoms (the same fault is one
incident), and a different root cause opens a new incident with its own diagnosis and action.
Such an incident is *split off*: its ``related_to`` column names the open incident it was told
apart from, its ``opened`` event says why (and which symptom metrics it left to that incident),
and the other incident gets a ``split`` event; anomalies that join an incident needing or
owned by a person leave a ``joined`` event when what joins changes. Everything the policy needs
is read back from this log, so a restarted watcher files anomalies exactly as before.
:meth:`IncidentStore.open_incidents` lists a service's open incidents; :meth:`open_for` gives
the newest one.

Actions (automatic, manual or from the Lambda handler) have their own table, written before the
ECS call (``started``) and after it (``done``, ``dry_run``, ``failed``); an action still
``started`` when the watcher restarts was interrupted by a crash and is never repeated blindly.
The guardrails judge a new action inside the same transaction that records it, so two
processes cannot both start an action on one service.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from detection.anomaly import Anomaly
from service.action import (  # noqa: F401 - re-exported
    ActionHistory,
    ActionOutcome,
    ActionRecord,
    ActionRequest,
    finished_event,
)
from service.incident import (  # noqa: F401 - re-exported: the log speaks of incidents
    OPEN_STATUSES,
    STATUSES,
    Incident,
    IncidentStateError,
    Status,
    diagnosis_from_dict,
)

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
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER REFERENCES incidents(id),
    cluster TEXT NOT NULL,
    service TEXT NOT NULL,
    action TEXT NOT NULL,
    origin TEXT NOT NULL,
    key TEXT UNIQUE,
    status TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    finished_at TEXT,
    reason TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS actions_by_service ON actions (cluster, service, requested_at);
CREATE TABLE IF NOT EXISTS outcomes (
    incident_id INTEGER PRIMARY KEY REFERENCES incidents(id),
    cluster TEXT NOT NULL,
    service TEXT NOT NULL,
    cause TEXT NOT NULL,
    action TEXT NOT NULL,
    resolved INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_by_service ON outcomes (cluster, service, at);
"""

# Columns added after the first release; an older log gets them on open.
LATER_COLUMNS = {"incidents": (("escalated_at", "TEXT"), ("acked_at", "TEXT"), ("acked_by", "TEXT"),
                               ("approved_at", "TEXT"), ("approved_by", "TEXT"),
                               ("verified_at", "TEXT"), ("related_to", "INTEGER"))}

# Actions whose effect may be on the service: they count for cooldowns, caps and "in flight".
EFFECTIVE_ACTIONS = ("started", "done", "interrupted")


def _iso(ts: Any) -> str:
    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")).isoformat()


def _ts(value: str | None) -> pd.Timestamp | None:
    return pd.Timestamp(value) if value else None


def _incident(row: sqlite3.Row) -> Incident:
    return Incident(row["id"], row["cluster"], row["service"], Status(row["status"]), _ts(row["opened_at"]),
                    _ts(row["updated_at"]),
                    diagnosis_from_dict(json.loads(row["diagnosis"]) if row["diagnosis"] else None),
                    _ts(row["verify_due_at"]), _ts(row["closed_at"]), _ts(row["escalated_at"]),
                    _ts(row["acked_at"]), row["acked_by"], _ts(row["approved_at"]), row["approved_by"],
                    _ts(row["verified_at"]), row["related_to"])


def _action(row: sqlite3.Row) -> ActionRecord:
    return ActionRecord(row["id"], row["incident_id"], row["cluster"], row["service"], row["action"],
                        row["origin"], row["key"], row["status"], _ts(row["requested_at"]),
                        _ts(row["finished_at"]), row["reason"], json.loads(row["params"] or "{}"),
                        json.loads(row["result"]) if row["result"] else None, row["error"])


class IncidentStore:
    """The SQLite incident log. Every method is one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._connection()
        db.executescript(SCHEMA)  # runs (and commits) on its own
        with self._connect() as db:
            self._migrate(db)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        for table, columns in LATER_COLUMNS.items():
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, kept open: closing the last one makes SQLite checkpoint."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut too
            self._local.db = db
        return db

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; ``immediate`` takes the write lock first, so read-check-insert is atomic."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # ------------------------------------------------------------------ incidents

    def open_incident(self, cluster: str, service: str, at: Any) -> int:
        with self._connect() as db:
            cur = db.execute("INSERT INTO incidents (cluster, service, status, opened_at, updated_at) "
                             "VALUES (?, ?, 'open', ?, ?)", (cluster, service, _iso(at), _iso(at)))
            incident_id = int(cur.lastrowid)
            self._event(db, incident_id, at, "opened", {"cluster": cluster, "service": service})
            return incident_id

    def split_incident(self, cluster: str, service: str, at: Any, related_to: int,
                       payload: dict) -> int:
        """Open an incident told apart from the open incident ``related_to``, in one transaction.

        The new incident's ``opened`` event carries ``payload`` (why it is another fault, which
        symptom metrics it leaves to the other incident) and the other incident gets a ``split``
        event naming it, so the log links the two both ways even across a crash.
        """
        with self._connect() as db:
            cur = db.execute("INSERT INTO incidents (cluster, service, status, opened_at, updated_at, "
                             "related_to) VALUES (?, ?, 'open', ?, ?, ?)",
                             (cluster, service, _iso(at), _iso(at), related_to))
            incident_id = int(cur.lastrowid)
            self._event(db, incident_id, at, "opened", {"cluster": cluster, "service": service,
                                                        "related_to": related_to, **payload})
            self._event(db, related_to, at, "split", {
                "incident": incident_id, "root_cause": payload.get("root_cause"),
                "summary": f"another fault, {payload.get('root_cause', '?')}: incident {incident_id}"})
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
        diagnosis_from_dict(diagnosis)   # refused here, not when read back
        with self._connect() as db:
            db.execute("UPDATE incidents SET root_cause=?, severity=?, confidence=?, diagnosis=?, "
                       "updated_at=? WHERE id=?",
                       (diagnosis["root_cause"], diagnosis["severity"], diagnosis["confidence"],
                        json.dumps(diagnosis, default=str), _iso(at), incident_id))
            self._event(db, incident_id, at, "diagnosed", diagnosis)

    def set_status(self, incident_id: int, at: Any, status: str, *, verify_due_at: Any = None,
                   closed: bool = False, payload: dict | None = None,
                   expect: tuple[str, ...] | None = None) -> bool:
        """Move an incident to ``status`` and log the move, in one transaction.

        With ``expect``, the move happens only from one of those statuses; returns whether it
        happened (a step already taken by an earlier run is not taken twice).
        """
        guard, args = "", []
        if expect:
            guard = f" AND status IN ({','.join(f'?{6 + i}' for i in range(len(expect)))})"
            args = list(expect)
        # escalated_at is when the current round of paging started: a request for approval, or
        # an escalation (a new round, even after an approval request); verification ends it.
        paging = ("CASE WHEN ?1 = 'escalated' THEN (CASE WHEN status = 'escalated' THEN escalated_at "
                  "ELSE ?2 END) WHEN ?1 = 'awaiting_approval' THEN COALESCE(escalated_at, ?2) "
                  "WHEN ?1 = 'verifying' THEN NULL ELSE escalated_at END")
        with self._connect() as db:
            current = self._get(db, incident_id)
            if expect and current.status not in expect:
                return False
            status = current.check_move(status)
            cur = db.execute("UPDATE incidents SET status=?1, updated_at=?2, "
                             "verify_due_at=COALESCE(?3, verify_due_at), closed_at=?4, "
                             f"escalated_at={paging} WHERE id=?5" + guard,
                             (status, _iso(at), _iso(verify_due_at) if verify_due_at is not None
                              else None, _iso(at) if closed else None, incident_id, *args))
            if cur.rowcount == 0:
                return False
            self._event(db, incident_id, at, f"status:{status}", payload or {})
            return True

    def complete_verification(self, incident_id: int, at: Any, passed: bool, payload: dict) -> bool:
        """Record the incident's one verification and move it on, atomically.

        Only an incident still ``verifying`` is verified; returns False (and writes nothing) when
        an earlier run already did it, so a verification happens exactly once.
        """
        status = "resolved" if passed else "escalated"
        with self._connect() as db:
            cur = db.execute("UPDATE incidents SET status=?, updated_at=?, verified_at=?, closed_at=?, "
                             "escalated_at=COALESCE(escalated_at, ?) WHERE id=? AND status='verifying'",
                             (status, _iso(at), _iso(at), _iso(at) if passed else None,
                              None if passed else _iso(at), incident_id))
            if cur.rowcount == 0:
                return False
            self._event(db, incident_id, at, "verification", {**payload, "passed": passed})
            self._event(db, incident_id, at, f"status:{status}",
                        {"summary" if passed else "reason": payload.get("summary", "")})
            return True

    def acknowledge(self, incident_id: int, at: Any, by: str) -> Incident:
        """Someone is on it: escalation stops paging; an escalated incident becomes acknowledged."""
        with self._connect() as db:
            taken = self._get(db, incident_id).acknowledge(by, pd.Timestamp(at))
            db.execute("UPDATE incidents SET acked_at=?, acked_by=?, status=?, updated_at=? WHERE id=?",
                       (_iso(at), by, taken.status.value, _iso(at), incident_id))
            self._event(db, incident_id, at, "acknowledged", {"by": by})
            return self._get(db, incident_id)

    def approve(self, incident_id: int, at: Any, by: str) -> Incident:
        """Approve the action an incident waits for; the watcher runs it on its next tick."""
        with self._connect() as db:
            approved = self._get(db, incident_id).approve(by, pd.Timestamp(at))
            db.execute("UPDATE incidents SET approved_at=?, approved_by=?, updated_at=? WHERE id=?",
                       (_iso(at), by, _iso(at), incident_id))
            self._event(db, incident_id, at, "approved", {"by": by, "action": approved.auto_action})
            return self._get(db, incident_id)

    def resolve(self, incident_id: int, at: Any, by: str, note: str = "") -> Incident:
        """Close an incident by hand (after a person fixed what automation could not)."""
        with self._connect() as db:
            self._get(db, incident_id).resolve(pd.Timestamp(at))
            db.execute("UPDATE incidents SET status='resolved', closed_at=?, updated_at=? WHERE id=?",
                       (_iso(at), _iso(at), incident_id))
            self._event(db, incident_id, at, "status:resolved",
                        {"by": by, "summary": note or f"resolved by {by}"})
            return self._get(db, incident_id)

    @staticmethod
    def _get(db: sqlite3.Connection, incident_id: int) -> Incident:
        row = db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(f"no incident {incident_id}")
        return _incident(row)

    def get(self, incident_id: int) -> Incident:
        with self._connect() as db:
            try:
                return self._get(db, incident_id)
            except KeyError:
                raise KeyError(f"no incident {incident_id} in {self.path}") from None

    def open_for(self, cluster: str, service: str) -> Incident | None:
        """The service's newest incident still in progress, if any.

        A service may have several open incidents (one split off from another); the newest is
        the one automation works on, if any does. :meth:`open_incidents` lists them all.
        """
        found = self.open_incidents(cluster, service)
        return found[-1] if found else None

    def open_incidents(self, cluster: str, service: str) -> list[Incident]:
        """Every incident of the service still in progress, oldest first."""
        marks = ",".join("?" * len(OPEN_STATUSES))
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM incidents WHERE cluster=? AND service=? AND status IN "
                              f"({marks}) ORDER BY id", (cluster, service, *OPEN_STATUSES)).fetchall()
        return [_incident(r) for r in rows]

    def list(self, status: str | None = None, limit: int = 50) -> list[Incident]:
        query, args = "SELECT * FROM incidents", []
        if status:
            query, args = query + " WHERE status=?", [status]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_incident(r) for r in rows]

    def count_by_status(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT status, count(*) FROM incidents GROUP BY status").fetchall()
        return {r[0]: r[1] for r in rows}

    def anomalies(self, incident_id: int) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT metric, timestamp, value, expected, lower, upper, score, text "
                              "FROM anomalies WHERE incident_id=? ORDER BY timestamp, metric",
                              (incident_id,)).fetchall()
        return [dict(r) for r in rows]

    def anomaly_onsets(self, incident_id: int) -> dict[str, pd.Timestamp]:
        """Each metric of the incident's anomalies and the time of its earliest one."""
        with self._connect() as db:
            rows = db.execute("SELECT metric, MIN(timestamp) AS first FROM anomalies WHERE incident_id=? "
                              "GROUP BY metric ORDER BY metric", (incident_id,)).fetchall()
        return {r["metric"]: pd.Timestamp(r["first"]) for r in rows}

    def events(self, incident_id: int) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT at, kind, payload FROM events WHERE incident_id=? ORDER BY id",
                              (incident_id,)).fetchall()
        return [{"at": r["at"], "kind": r["kind"], "data": json.loads(r["payload"])} for r in rows]

    def last_event(self, incident_id: int, kind: str) -> dict | None:
        """The incident's newest event of one kind (at, kind, data), or None."""
        with self._connect() as db:
            row = db.execute("SELECT at, kind, payload FROM events WHERE incident_id=? AND kind=? "
                             "ORDER BY id DESC LIMIT 1", (incident_id, kind)).fetchone()
        return {"at": row["at"], "kind": row["kind"], "data": json.loads(row["payload"])} if row else None

    def events_of_kind(self, kind: str) -> list[dict]:
        """Every event of one kind, oldest first, with its incident id (None for the platform's)."""
        with self._connect() as db:
            rows = db.execute("SELECT incident_id, at, payload FROM events WHERE kind=? ORDER BY id",
                              (kind,)).fetchall()
        return [{"incident_id": r["incident_id"], "at": r["at"], "data": json.loads(r["payload"])}
                for r in rows]

    def refusals(self) -> Counter:
        """How many actions the guardrails refused, by reason."""
        return Counter(e["data"].get("reason", "?") for e in self.events_of_kind("guardrail_refused"))

    # ------------------------------------------------------------------ actions

    def begin_action(self, request: ActionRequest, at: Any,
                     judge: Callable[[ActionHistory], tuple[bool, dict]]) -> tuple[int | None, dict]:
        """Judge and record an action in one write transaction, before it is attempted.

        ``judge`` sees the service's action history and returns ``(allowed, verdict)``. When
        allowed, the action is recorded as ``started`` (with an ``action_started`` event); when
        not, a ``guardrail_refused`` event names the reason. Returns ``(action_id or None,
        verdict)``. A request whose idempotency key was seen before returns that action's id and
        ``{"duplicate": True}`` without judging it again.
        """
        with self._connect(immediate=True) as db:
            if request.key:
                row = db.execute("SELECT id FROM actions WHERE key=?", (request.key,)).fetchone()
                if row is not None:
                    return int(row[0]), {"duplicate": True}
            history = self._history(db, request.cluster, request.service, at, request.dry_run)
            allowed, verdict = judge(history)
            base = {"action": request.action, "cluster": request.cluster, "service": request.service,
                    "origin": request.origin, **request.params}
            if not allowed:
                self._event(db, request.incident_id, at, "guardrail_refused", {**base, **verdict})
                return None, verdict
            cur = db.execute(
                "INSERT INTO actions (incident_id, cluster, service, action, origin, key, status, "
                "requested_at, reason, params) VALUES (?,?,?,?,?,?, 'started', ?,?,?)",
                (request.incident_id, request.cluster, request.service, request.action,
                 request.origin, request.key, _iso(at), request.reason,
                 json.dumps(request.params, default=str)))
            kind = "action_started" if request.origin == "auto" else f"{request.origin}_action_started"
            self._event(db, request.incident_id, at, kind,
                        {**base, "action_id": cur.lastrowid, "reason": request.reason,
                         **{k: v for k, v in verdict.items() if k == "notes"}})
            return int(cur.lastrowid), verdict

    def finish_action(self, action_id: int, at: Any, status: str, result: dict | None = None,
                      error: str | None = None) -> None:
        """Record what a started action came to (``done``, ``dry_run``, ``failed``, ``interrupted``)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM actions WHERE id=?", (action_id,)).fetchone()
            if row is None:
                raise KeyError(f"no action {action_id}")
            record = _action(row)
            db.execute("UPDATE actions SET status=?, finished_at=?, result=?, error=? WHERE id=?",
                       (status, _iso(at), json.dumps(result, default=str) if result else None, error,
                        action_id))
            kind, payload = finished_event(record, status, result, error)
            self._event(db, record.incident_id, at, kind, payload)

    def action(self, action_id: int) -> ActionRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM actions WHERE id=?", (action_id,)).fetchone()
        if row is None:
            raise KeyError(f"no action {action_id}")
        return _action(row)

    def actions_by_key(self, key: str) -> ActionRecord | None:
        """The action recorded under an idempotency key, if any."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM actions WHERE key=?", (key,)).fetchone()
        return _action(row) if row else None

    def actions(self, incident_id: int | None = None, cluster: str | None = None,
                service: str | None = None, status: str | None = None) -> list[ActionRecord]:
        """Actions, oldest first, filtered by incident, service or status."""
        clauses, args = [], []
        for column, value in (("incident_id", incident_id), ("cluster", cluster),
                              ("service", service), ("status", status)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM actions{where} ORDER BY id", args).fetchall()
        return [_action(r) for r in rows]

    def record_outcome(self, outcome: ActionOutcome) -> bool:
        """Keep one verification's outcome (once per incident); whether it was written."""
        with self._connect() as db:
            cur = db.execute("INSERT OR IGNORE INTO outcomes (incident_id, cluster, service, cause, "
                             "action, resolved, at) VALUES (?,?,?,?,?,?,?)",
                             (outcome.incident_id, outcome.cluster, outcome.service, outcome.cause,
                              outcome.action, int(outcome.resolved), _iso(outcome.at)))
            return cur.rowcount == 1

    def outcomes(self, cluster: str, service: str) -> list[ActionOutcome]:
        """The service's verified outcomes, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM outcomes WHERE cluster=? AND service=? "
                              "ORDER BY at, incident_id", (cluster, service)).fetchall()
        return [ActionOutcome(r["incident_id"], r["cluster"], r["service"], r["cause"], r["action"],
                              bool(r["resolved"]), pd.Timestamp(r["at"])) for r in rows]

    def history(self, cluster: str, service: str, at: Any, dry_run: bool = False) -> ActionHistory:
        """The service's action history as the guardrails see it at ``at``."""
        with self._connect() as db:
            return self._history(db, cluster, service, at, dry_run)

    @staticmethod
    def _history(db: sqlite3.Connection, cluster: str, service: str, at: Any,
                 dry_run: bool) -> ActionHistory:
        counted = EFFECTIVE_ACTIONS + (("dry_run",) if dry_run else ())
        marks = ",".join("?" * len(counted))
        since = _iso(pd.Timestamp(_iso(at)) - pd.Timedelta(days=1))
        rows = db.execute(f"SELECT * FROM actions WHERE cluster=? AND service=? AND requested_at>=? "
                          f"AND status IN ({marks}) ORDER BY requested_at",
                          (cluster, service, since, *counted)).fetchall()
        recent = [_action(r) for r in rows]
        flying = db.execute(
            f"SELECT a.* FROM actions a LEFT JOIN incidents i ON a.incident_id = i.id "
            f"WHERE a.cluster=? AND a.service=? AND a.status IN ({marks}) "
            f"AND (a.status='started' OR i.status='verifying') ORDER BY a.id",
            (cluster, service, *counted)).fetchall()
        return ActionHistory(recent, [_action(r) for r in flying])
