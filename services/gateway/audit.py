"""The audit log: every decision, durable before anyone acts on it.

SQLite by default (a file path in the gateway's settings; WAL journal, `synchronous=FULL`, so a
committed event survives a crash or power loss). The gateway writes a decision here *before*
publishing it to door controllers and watchers: an unlock never happens without its record.
No face images are stored: door, site, times, outcome, identity or unknown, distance, the
number of frames the decision rests on, the reason, the model version and the track id.

Erasure (`erase`): a person's past decisions keep their id and display name unless the
erasure asks for a pseudonym; then, in one transaction, their id becomes "erased-<16 hex>"
wherever it appears (identity, and their quoted mentions in the reasons of any decision: see
`tracking.mention`) and their display name is cleared, and the erasure is recorded as an admin
action under the pseudonym (never the id it removes). Decisions still in flight when the
erasure happens (a track decided a moment later) are pseudonymised as they are recorded, for
`ERASED_MEMORY` seconds after it.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.contracts.v1 import gateway_pb2
from services.gateway.tracking import mention

ERASED_MEMORY = 120.0  # s: far longer than a track lives (1.5 s unseen) or a replica's staleness (0.4 s)

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at_ns INTEGER NOT NULL,
    captured_at_ns INTEGER NOT NULL,
    door_id TEXT NOT NULL,
    site TEXT NOT NULL,
    outcome TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    distance REAL NOT NULL,
    frames INTEGER NOT NULL,
    track_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    model_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_door_time ON decisions (door_id, decided_at_ns);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at_ns);
CREATE INDEX IF NOT EXISTS decisions_by_identity ON decisions (identity_id, decided_at_ns);
CREATE TABLE IF NOT EXISTS admin_actions (
    action_id TEXT PRIMARY KEY,
    at_ns INTEGER NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    caller TEXT NOT NULL
);
"""
COLUMNS = ("decision_id", "decided_at_ns", "captured_at_ns", "door_id", "site", "outcome", "identity_id",
           "display_name", "distance", "frames", "track_id", "reason", "model_key")


@dataclass(frozen=True)
class Erasure:
    """What `AuditLog.erase` changed."""

    decisions: int  # rows whose identity or reason named the person
    pseudonym: str  # "" when no pseudonym was asked for
    action: gateway_pb2.AdminAction


@dataclass(frozen=True)
class EventQuery:
    door_id: str = ""
    site: str = ""
    outcome: str = ""  # e.g. "OUTCOME_GRANTED"
    since_ns: int = 0
    until_ns: int = 0  # 0 = now
    limit: int = 1000
    identity_id: str = ""


class AuditLog:
    """Append decisions, query them back. Thread-safe; one connection per log."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._erased: dict[str, tuple[str, float]] = {}  # recently erased id -> (pseudonym, until monotonic)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, decisions: list[gateway_pb2.Decision]) -> None:
        """Store decisions in one transaction (all or none). A person erased with a pseudonym
        moments ago is recorded under it: the decisions are rewritten in place, so what is
        published afterwards matches the record."""
        with self._lock:
            for d in decisions:
                self._pseudonymise(d)
            rows = [(
                d.decision_id, d.decided_at.ToNanoseconds(), d.captured_at.ToNanoseconds(), d.door_id, d.site,
                gateway_pb2.Decision.Outcome.Name(d.outcome), d.identity_id, d.display_name, float(d.distance),
                d.frames, d.track_id, d.reason, d.model_key,
            ) for d in decisions]
            with self._db:  # BEGIN ... COMMIT, or ROLLBACK on error
                self._db.execute("BEGIN")
                self._db.executemany(f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES "
                                     f"({', '.join('?' * len(COLUMNS))})", rows)

    def query(self, query: EventQuery) -> list[gateway_pb2.Decision]:
        """Decisions matching `query`, newest first."""
        clauses = ["decided_at_ns >= ?"]
        args: list[int | str] = [query.since_ns]
        if query.until_ns:
            clauses.append("decided_at_ns < ?")
            args.append(query.until_ns)
        for column, value in (("door_id", query.door_id), ("site", query.site), ("outcome", query.outcome),
                              ("identity_id", query.identity_id)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        sql = (f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE {' AND '.join(clauses)} "
               "ORDER BY decided_at_ns DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, [*args, query.limit]).fetchall()
        return [self._decision(dict(zip(COLUMNS, row, strict=True))) for row in rows]

    def _pseudonymise(self, decision: gateway_pb2.Decision) -> None:
        """Apply recent erasures to a decision about to be recorded (under the lock)."""
        if not self._erased:
            return
        now = time.monotonic()
        self._erased = {k: v for k, v in self._erased.items() if v[1] > now}
        for identity_id, (pseudonym, _) in self._erased.items():
            if decision.identity_id == identity_id:
                decision.identity_id, decision.display_name = pseudonym, ""
            decision.reason = decision.reason.replace(mention(identity_id), mention(pseudonym))

    def record_admin(self, action: str, subject: str, detail: str, caller: str, result: str = "pending") -> str:
        """Record an admin action: before it is carried out (result "pending": an action the log
        could not take is not carried out, no change without its record; `finish_admin` adds the
        result), or once done, with its result. Returns its id."""
        message = gateway_pb2.AdminAction(action_id=uuid.uuid4().hex, action=action, subject=subject,
                                          detail=f"{detail}; result: {result}", caller=caller)
        message.at.FromNanoseconds(time.time_ns())
        with self._lock, self._db:
            self._insert_admin(message)
        return message.action_id

    def _insert_admin(self, action: gateway_pb2.AdminAction) -> None:
        """One admin_actions row (the caller holds the lock, inside a transaction)."""
        self._db.execute("INSERT INTO admin_actions (action_id, at_ns, action, subject, detail, caller) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (action.action_id, action.at.ToNanoseconds(), action.action,
                                                       action.subject, action.detail, action.caller))

    def finish_admin(self, action_id: str, result: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE admin_actions SET detail = replace(detail, '; result: pending', ?) "
                             "WHERE action_id = ?", (f"; result: {result}", action_id))

    def erase(self, identity_id: str, pseudonymise: bool, detail: str, caller: str) -> Erasure:
        """Record an erasure as an admin action and, if asked, pseudonymise the person's past
        decisions, all in one transaction."""
        pseudonym = f"erased-{secrets.token_hex(8)}" if pseudonymise else ""
        quoted = mention(identity_id)
        action = gateway_pb2.AdminAction(action_id=uuid.uuid4().hex, action="erase_identity",
                                         subject=pseudonym or identity_id, caller=caller)
        action.at.FromNanoseconds(time.time_ns())
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                changed = 0
                if pseudonymise:
                    rows = self._db.execute(
                        "SELECT decision_id, identity_id, display_name, reason FROM decisions "
                        "WHERE identity_id = ? OR instr(reason, ?) > 0", (identity_id, quoted)).fetchall()
                    updates = [(pseudonym if who == identity_id else who, "" if who == identity_id else name,
                                reason.replace(quoted, mention(pseudonym)), decision_id)
                               for decision_id, who, name, reason in rows]
                    self._db.executemany("UPDATE decisions SET identity_id = ?, display_name = ?, reason = ? "
                                         "WHERE decision_id = ?", updates)
                    changed = len(updates)
                    # earlier admin actions about the person (enrolments) name the pseudonym too
                    self._db.execute("UPDATE admin_actions SET subject = ? WHERE subject = ?", (pseudonym, identity_id))
                action.detail = f"{detail}; {changed} past decisions pseudonymised" if pseudonymise else \
                    f"{detail}; past decisions keep the identity"
                self._insert_admin(action)
            if pseudonymise:
                self._erased[identity_id] = (pseudonym, time.monotonic() + ERASED_MEMORY)
        return Erasure(changed, pseudonym, action)

    def admin_actions(self, limit: int = 1000) -> list[gateway_pb2.AdminAction]:
        """Admin actions, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT action_id, at_ns, action, subject, detail, caller FROM admin_actions "
                                    "ORDER BY at_ns DESC LIMIT ?", (limit,)).fetchall()
        actions = []
        for action_id, at_ns, action, subject, detail, caller in rows:
            message = gateway_pb2.AdminAction(action_id=action_id, action=action, subject=subject, detail=detail,
                                              caller=caller)
            message.at.FromNanoseconds(at_ns)
            actions.append(message)
        return actions

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    @staticmethod
    def _decision(row: dict) -> gateway_pb2.Decision:
        decision = gateway_pb2.Decision(
            decision_id=row["decision_id"], door_id=row["door_id"], site=row["site"],
            outcome=row["outcome"], identity_id=row["identity_id"],  # outcome: the enum's name, as stored
            display_name=row["display_name"], distance=row["distance"], frames=row["frames"],
            track_id=row["track_id"], reason=row["reason"], model_key=row["model_key"],
        )
        decision.decided_at.FromNanoseconds(row["decided_at_ns"])
        decision.captured_at.FromNanoseconds(row["captured_at_ns"])
        return decision
