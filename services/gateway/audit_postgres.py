"""The audit log in PostgreSQL: one log for any number of gateways (`AuditLog` has the behaviour).

One connection per gateway, used under a lock (the gateway's audit writes are batched per
decision round, and reads are rare); a connection that breaks (the server restarted, failed
over) is replaced on the next call, and the call that met the break fails with AuditError, so
the gateway publishes nothing it could not record. Commits are synchronous (the server's
default): a decision is on the server's disk before the gateway publishes it.

Other gateways hear each decision as it commits: `record` sends it with `pg_notify` in its
transaction (PostgreSQL delivers notifications only on commit, in commit order), and
`follow_others` listens on a connection of its own and hands the other gateways' decisions to
this gateway's watchers. A listener that loses its connection reconnects within a second; what
was notified meanwhile is in the log (watchers backfill with ListDecisions), not in the stream.

One camera stream per door across gateways: the gateway holding a door's stream holds a
session advisory lock keyed by the door on a connection kept for that (`claim_door`); another
gateway cannot take it, and when the holder dies its connection closes and the lock goes with
it, so the door's camera can reconnect to any gateway at once. (Doors whose ids hash alike
would exclude each other: about one pair in 4 billion.)

Erasures and decision writes are ordered with one advisory lock: each `record` holds it shared
for its transaction, an erasure holds it exclusively, so a decision about a person cannot be
written on one gateway while another erases them, between the erasure's rename of past
decisions and its note in `erasures` that later decisions read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg
from google.protobuf.message import DecodeError

from services.contracts.v1 import gateway_pb2
from services.gateway.audit import AuditError, AuditLog, Cursor

log = logging.getLogger("facegate.gateway.audit")
ERASURE_LOCK = 0x46_61_63_65_47_61_74_65  # "FaceGate": the advisory lock key erasures and records share
DOOR_LOCKS = 0x46_47_44_52  # "FGDR": the advisory lock space of door streams (with hashtext(door id))
CHANNEL = "facegate_decisions"  # NOTIFY channel: "<origin>:<base64 Decision>" (~600 bytes; the limit is 8,000)


class PostgresAuditLog(AuditLog):
    """The log in the PostgreSQL database at `url` (a libpq URI; credentials from the URI, a
    PGPASSFILE or the environment, as libpq reads them)."""

    ns_type, real_type = "BIGINT", "DOUBLE PRECISION"
    contains = "strpos(reason, ?) > 0"

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        self.origin = uuid.uuid4().hex[:16]  # this gateway, in its notifications (it skips its own)
        self._claims: psycopg.Connection | None = None  # holds the door locks (session-level)
        self._claimed: set[str] = set()
        self._claims_lock = threading.Lock()  # not `_lock`: a slow audit write must not hold a door up
        self._migrate()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _connection(self) -> psycopg.Connection:
        if self._db is None or self._db.closed or self._db.broken:
            try:
                # autocommit: each `transaction()` block below is one explicit transaction
                self._db = psycopg.connect(self.url, connect_timeout=int(self._timeout), autocommit=True,
                                           application_name="facegate-gateway")
            except psycopg.Error as exc:
                raise AuditError(f"audit log (PostgreSQL): cannot connect ({str(exc).strip()})") from exc
        return self._db

    @contextlib.contextmanager
    def _transaction(self, erasing: bool = False) -> Iterator[Cursor]:
        with self._lock:
            db = self._connection()
            try:
                with db.transaction(), db.cursor() as cursor:
                    lock = "pg_advisory_xact_lock" if erasing else "pg_advisory_xact_lock_shared"
                    cursor.execute(f"SELECT {lock}(%s)", (ERASURE_LOCK,))
                    yield cursor
            except psycopg.Error as exc:  # the transaction was rolled back
                raise AuditError(f"audit log (PostgreSQL): {str(exc).strip()}") from exc

    def claim_door(self, door_id: str) -> bool:
        with self._claims_lock:
            if self._claims is None or self._claims.closed or self._claims.broken:
                self._claimed.clear()  # a new connection holds none of the old one's locks
                try:
                    self._claims = psycopg.connect(self.url, connect_timeout=int(self._timeout), autocommit=True,
                                                   application_name="facegate-gateway-doors")
                except psycopg.Error as exc:
                    raise AuditError(f"audit log (PostgreSQL): cannot connect ({str(exc).strip()})") from exc
            try:
                row = self._claims.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                           (DOOR_LOCKS, door_id)).fetchone()
            except psycopg.Error as exc:
                raise AuditError(f"audit log (PostgreSQL): {str(exc).strip()}") from exc
            if row is not None and row[0]:
                self._claimed.add(door_id)
                return True
            return False

    def release_door(self, door_id: str) -> None:
        with self._claims_lock:
            if door_id not in self._claimed or self._claims is None or self._claims.closed:
                return
            self._claimed.discard(door_id)
            with contextlib.suppress(psycopg.Error):  # a broken connection has released it already
                self._claims.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (DOOR_LOCKS, door_id))

    def _announce(self, cursor: Cursor, decisions: list[gateway_pb2.Decision]) -> None:
        for decision in decisions:
            payload = f"{self.origin}:{base64.b64encode(decision.SerializeToString()).decode()}"
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    async def follow_others(self, publish: Callable[[gateway_pb2.Decision], None]) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=int(self._timeout),
                        application_name="facegate-gateway-listener") as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    log.info("following the other gateways' decisions", extra={"fields": {"origin": self.origin}})
                    async for note in listener.notifies():
                        origin, _, body = note.payload.partition(":")
                        if origin == self.origin:
                            continue
                        try:
                            decision = gateway_pb2.Decision.FromString(base64.b64decode(body))
                        except (ValueError, DecodeError):  # not one of ours: skip it, keep listening
                            log.warning("skipped a notification on %s that is not a decision", CHANNEL)
                            continue
                        publish(decision)
            except (psycopg.Error, OSError) as exc:  # the server went away
                log.warning("decision feed from the other gateways interrupted (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    def close(self) -> None:
        with self._lock, self._claims_lock:
            for connection in (self._db, self._claims):
                if connection is not None:
                    connection.close()
