"""The audit log: every decision, durable before anyone acts on it.

Two engines, one behaviour (`AuditLog`; `open_audit_log` picks one by the target's form):
- SQLite, the embedded default (a file path; WAL journal, `synchronous=FULL`, so a committed
  event survives a crash or power loss), for one gateway;
- PostgreSQL (`postgresql://...`, `audit_postgres.py`), shared by any number of gateways.
The schema is versioned (`MIGRATIONS`, applied at open, recorded in `schema_migrations`), so an
older log is brought up to date and a newer one is refused.

The gateway writes a decision here *before* publishing it to door controllers and watchers: an
unlock never happens without its record. No face images are stored: door, site, times,
outcome, identity or unknown, distance, the number of frames the decision rests on, the reason,
the model version and the track id.

Erasure (`erase`): a person's past decisions keep their id and display name unless the
erasure asks for a pseudonym; then, in one transaction, their id becomes "erased-<16 hex>"
wherever it appears (identity, and their quoted mentions in the reasons of any decision: see
`tracking.mention`) and their display name is cleared, and the erasure is recorded as an admin
action under the pseudonym (never the id it removes). Decisions still in flight when the
erasure happens (a track decided a moment later, on this gateway or another) are pseudonymised
as they are recorded, for `ERASED_MEMORY` seconds after it: the erasure is kept in the log's
`erasures` table, which every gateway reads when it records.
"""

from __future__ import annotations

import abc
import contextlib
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.contracts.v1 import gateway_pb2
from services.gateway.schema import migrate
from services.gateway.tracking import mention

ERASED_MEMORY = 120.0  # s: far longer than a track lives (1.5 s unseen) or a replica's staleness (0.4 s)

# The schema, version by version: (version, what it adds). Written in the SQL both engines take;
# {ns} is a 64-bit integer column, {real} a double (the engines spell them differently).
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at_ns {ns} NOT NULL,
    captured_at_ns {ns} NOT NULL,
    door_id TEXT NOT NULL,
    site TEXT NOT NULL,
    outcome TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    distance {real} NOT NULL,
    frames INTEGER NOT NULL,
    track_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    model_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_door_time ON decisions (door_id, decided_at_ns);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at_ns);
CREATE TABLE IF NOT EXISTS admin_actions (
    action_id TEXT PRIMARY KEY,
    at_ns {ns} NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    caller TEXT NOT NULL
)"""),
    (2, """
CREATE INDEX IF NOT EXISTS decisions_by_identity ON decisions (identity_id, decided_at_ns);
CREATE TABLE IF NOT EXISTS erasures (
    identity_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    until_ns {ns} NOT NULL
)"""),
)
COLUMNS = ("decision_id", "decided_at_ns", "captured_at_ns", "door_id", "site", "outcome", "identity_id",
           "display_name", "distance", "frames", "track_id", "reason", "model_key")


class AuditError(RuntimeError):
    """The log cannot take a write (the message says why; nothing of the write was kept)."""


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


class Cursor(Protocol):
    """What the log needs of a database cursor (sqlite3's and psycopg's both fit)."""

    def execute(self, sql: str, args: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class AuditLog(abc.ABC):
    """Append decisions, query them back, record admin actions and erasures. Thread-safe. The
    engines differ only in how they connect, run a transaction and spell a few things."""

    ns_type, real_type = "INTEGER", "REAL"
    contains = "instr(reason, ?) > 0"  # `reason` contains the argument

    @abc.abstractmethod
    def _transaction(self, erasing: bool = False) -> contextlib.AbstractContextManager[Cursor]:
        """A cursor in one transaction (committed on exit, rolled back on error). `erasing`:
        exclusive of every `record` (an erasure and a decision about the person cannot pass each
        other); otherwise records may run side by side."""

    def _sql(self, statement: str) -> str:
        return statement

    @abc.abstractmethod
    def close(self) -> None: ...

    def _migrate(self) -> None:
        """Bring the schema up to `MIGRATIONS`' last version; refuse a log from a newer FaceGate."""
        with self._transaction(erasing=True) as cursor:
            migrate(cursor, "schema_migrations", MIGRATIONS, {"ns": self.ns_type, "real": self.real_type}, self._sql,
                    lambda current, newest: AuditError(
                        f"the audit log is at schema version {current}; this gateway knows up to {newest}: run the "
                        "newer gateway (or restore a copy made for this one)"))

    def schema_version(self) -> int:
        with self._transaction() as cursor:
            cursor.execute("SELECT MAX(version) FROM schema_migrations")
            return int(cursor.fetchone()[0])

    def record(self, decisions: list[gateway_pb2.Decision]) -> None:
        """Store decisions in one transaction (all or none). A person erased with a pseudonym
        moments ago (by any gateway) is recorded under it: the decisions are rewritten in place,
        so what is published afterwards matches the record."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("SELECT identity_id, pseudonym FROM erasures WHERE until_ns > ?"),
                           (time.time_ns(),))
            erased = dict(cursor.fetchall())
            for d in decisions:
                _pseudonymise(d, erased)
            rows = [(
                d.decision_id, d.decided_at.ToNanoseconds(), d.captured_at.ToNanoseconds(), d.door_id, d.site,
                gateway_pb2.Decision.Outcome.Name(d.outcome), d.identity_id, d.display_name, float(d.distance),
                d.frames, d.track_id, d.reason, d.model_key,
            ) for d in decisions]
            cursor.executemany(self._sql(f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES "
                                         f"({', '.join('?' * len(COLUMNS))})"), rows)
            self._announce(cursor, decisions)

    def _announce(self, cursor: Cursor, decisions: list[gateway_pb2.Decision]) -> None:
        """Tell the other gateways on this log, with the commit (only a shared log has any)."""
        return None

    async def follow_others(self, publish: Callable[[gateway_pb2.Decision], None],
                            gap: Callable[[], None] = lambda: None) -> None:
        """Until cancelled: `publish` every decision other gateways record in this log, as they
        commit; `gap()` when some may have been missed (the feed was interrupted). A log of one
        gateway has no others: returns at once."""
        return None

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
        with self._transaction() as cursor:
            cursor.execute(self._sql(sql), [*args, query.limit])
            rows = cursor.fetchall()
        return [_decision(dict(zip(COLUMNS, row, strict=True))) for row in rows]

    def record_admin(self, action: str, subject: str, detail: str, caller: str, result: str = "pending") -> str:
        """Record an admin action: before it is carried out (result "pending": an action the log
        could not take is not carried out, no change without its record; `finish_admin` adds the
        result), or once done, with its result. Returns its id."""
        message = gateway_pb2.AdminAction(action_id=uuid.uuid4().hex, action=action, subject=subject,
                                          detail=f"{detail}; result: {result}", caller=caller)
        message.at.FromNanoseconds(time.time_ns())
        with self._transaction() as cursor:
            self._insert_admin(cursor, message)
        return message.action_id

    def _insert_admin(self, cursor: Cursor, action: gateway_pb2.AdminAction) -> None:
        cursor.execute(self._sql("INSERT INTO admin_actions (action_id, at_ns, action, subject, detail, caller) "
                                 "VALUES (?, ?, ?, ?, ?, ?)"),
                       (action.action_id, action.at.ToNanoseconds(), action.action, action.subject, action.detail,
                        action.caller))

    def finish_admin(self, action_id: str, result: str) -> None:
        with self._transaction() as cursor:
            cursor.execute(self._sql("UPDATE admin_actions SET detail = replace(detail, '; result: pending', ?) "
                                     "WHERE action_id = ?"), (f"; result: {result}", action_id))

    def erase(self, identity_id: str, pseudonymise: bool, detail: str, caller: str) -> Erasure:
        """Record an erasure as an admin action and, if asked, pseudonymise the person's past
        decisions, all in one transaction that no decision being recorded can pass."""
        pseudonym = f"erased-{secrets.token_hex(8)}" if pseudonymise else ""
        quoted = mention(identity_id)
        action = gateway_pb2.AdminAction(action_id=uuid.uuid4().hex, action="erase_identity",
                                         subject=pseudonym or identity_id, caller=caller)
        action.at.FromNanoseconds(time.time_ns())
        changed = 0
        with self._transaction(erasing=True) as cursor:
            if pseudonymise:
                cursor.execute(self._sql("SELECT decision_id, identity_id, display_name, reason FROM decisions "
                                         f"WHERE identity_id = ? OR {self.contains}"), (identity_id, quoted))
                updates = [(pseudonym if who == identity_id else who, "" if who == identity_id else name,
                            reason.replace(quoted, mention(pseudonym)), decision_id)
                           for decision_id, who, name, reason in cursor.fetchall()]
                if updates:
                    cursor.executemany(self._sql("UPDATE decisions SET identity_id = ?, display_name = ?, reason = ? "
                                                 "WHERE decision_id = ?"), updates)
                changed = len(updates)
                # earlier admin actions about the person (enrolments) name the pseudonym too
                cursor.execute(self._sql("UPDATE admin_actions SET subject = ? WHERE subject = ?"),
                               (pseudonym, identity_id))
                now = time.time_ns()
                cursor.execute(self._sql("DELETE FROM erasures WHERE until_ns < ?"), (now,))
                cursor.execute(self._sql("INSERT INTO erasures VALUES (?, ?, ?)"),
                               (identity_id, pseudonym, now + int(ERASED_MEMORY * 1e9)))
            action.detail = f"{detail}; {changed} past decisions pseudonymised" if pseudonymise else \
                f"{detail}; past decisions keep the identity"
            self._insert_admin(cursor, action)
        return Erasure(changed, pseudonym, action)

    def admin_actions(self, limit: int = 1000) -> list[gateway_pb2.AdminAction]:
        """Admin actions, newest first."""
        with self._transaction() as cursor:
            cursor.execute(self._sql("SELECT action_id, at_ns, action, subject, detail, caller FROM admin_actions "
                                     "ORDER BY at_ns DESC LIMIT ?"), (limit,))
            rows = cursor.fetchall()
        actions = []
        for action_id, at_ns, action, subject, detail, caller in rows:
            message = gateway_pb2.AdminAction(action_id=action_id, action=action, subject=subject, detail=detail,
                                              caller=caller)
            message.at.FromNanoseconds(at_ns)
            actions.append(message)
        return actions

    def claim_door(self, door_id: str) -> bool:
        """Hold `door_id`'s camera stream for this gateway among all gateways on this log: False
        if another holds it. A log of one gateway has no others (the gateway checks its own)."""
        return True

    def release_door(self, door_id: str) -> None:
        """Give the door's stream up (its camera stopped)."""
        return None

    def check_doors(self) -> set[str]:
        """The doors this gateway held but no longer does (another took them while the shared
        log was away); their streams must end. Never any with a log of one gateway."""
        return set()

    def count(self) -> int:
        with self._transaction() as cursor:
            cursor.execute("SELECT COUNT(*) FROM decisions")
            return int(cursor.fetchone()[0])


class SqliteAuditLog(AuditLog):
    """The log in a SQLite file (or ":memory:"): one gateway."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    @contextlib.contextmanager
    def _transaction(self, erasing: bool = False) -> Iterator[Cursor]:
        with self._lock:  # one connection: the lock orders this process's transactions
            cursor = self._db.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE" if erasing else "BEGIN")
                yield cursor
                self._db.commit()
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.rollback()
                if isinstance(exc, sqlite3.Error):  # a full disk, a duplicate id, a locked file
                    raise AuditError(f"audit log (SQLite {self.path}): {exc}") from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_audit_log(target: str) -> AuditLog:
    """The log at `target`: a PostgreSQL URI (postgresql://... or postgres://...), else a SQLite
    file path."""
    if target.startswith(("postgresql://", "postgres://")):
        from services.gateway.audit_postgres import PostgresAuditLog  # psycopg only where it is used

        return PostgresAuditLog(target)
    return SqliteAuditLog(target)


def _pseudonymise(decision: gateway_pb2.Decision, erased: dict[str, str]) -> None:
    """Apply recent erasures (id -> pseudonym) to a decision about to be recorded."""
    for identity_id, pseudonym in erased.items():
        if decision.identity_id == identity_id:
            decision.identity_id, decision.display_name = pseudonym, ""
        decision.reason = decision.reason.replace(mention(identity_id), mention(pseudonym))


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
