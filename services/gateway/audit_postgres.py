"""The audit log in PostgreSQL: one log for any number of gateways (`AuditLog` has the behaviour).

One connection per gateway, used under a lock (the gateway's audit writes are batched per
decision round, and reads are rare). A connection found broken by a transaction's BEGIN (the
server restarted or failed over while it sat idle) is replaced and the transaction begun on the
new one: nothing of it had been sent, so nothing can be written twice. One that breaks later,
with statements of the transaction sent (its COMMIT's fate unknown), is not retried: the call
fails with AuditError, the gateway publishes nothing it could not record, and the connection is
replaced on the next call. Commits are synchronous (the server's default): a decision is on the
server's disk before the gateway publishes it.

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
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
from google.protobuf.message import DecodeError
from psycopg.conninfo import make_conninfo

from services.contracts.v1 import gateway_pb2
from services.core.redaction import without_password
from services.gateway.audit import AuditError, AuditLog, Cursor

log = logging.getLogger("facegate.gateway.audit")
ERASURE_LOCK = 0x46_61_63_65_47_61_74_65  # "FaceGate": the advisory lock key erasures and records share
DOOR_LOCKS = 0x46_47_44_52  # "FGDR": the advisory lock space of door streams (with hashtext(door id))
CHANNEL = "facegate_decisions"  # NOTIFY channel: "<origin>:<base64 Decision>" (~600 bytes; the limit is 8,000)
MAX_NOTIFIED_BYTES = 5000  # a Decision larger than this (a long reason) is notified with its reason cut


def conninfo(url: str) -> str:
    """The connection string for `url` with the settings every connection of the gateway takes
    (a silent peer — a partition, a failover without a reset — is given up within ~15 s).
    ValueError, without the URL's password, for one libpq cannot read (libpq's own error
    repeats the URL, or the part of it that is wrong, password and all)."""
    try:
        return make_conninfo(url, keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                             tcp_user_timeout=15000)
    except psycopg.Error as exc:
        raise ValueError(f"{without_password(url)} is not a URL libpq can read "
                         f"({without_password(url, str(exc).strip())})") from None


def begin(stack: contextlib.ExitStack, connection: Callable[[], psycopg.Connection]) -> psycopg.Connection:
    """A transaction begun on `connection()`, entered on `stack` (committed when it closes,
    rolled back if it unwinds with an error). A connection that its BEGIN finds broken (the
    server restarted or failed over while it sat idle) is replaced once: nothing of the
    transaction had reached the server, so beginning it again can do nothing twice."""
    db = connection()
    try:
        stack.enter_context(db.transaction())
    except psycopg.OperationalError:
        if not db.broken:
            raise
        db = connection()  # a new one: `connection()` replaces a broken connection
        stack.enter_context(db.transaction())
    return db


class PostgresAuditLog(AuditLog):
    """The log in the PostgreSQL database at `url` (a libpq URI; credentials from the URI, a
    PGPASSFILE or the environment, as libpq reads them)."""

    ns_type, real_type = "BIGINT", "DOUBLE PRECISION"
    contains = "strpos(reason, ?) > 0"

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        try:
            self._conninfo = conninfo(url)
        except ValueError as exc:
            raise AuditError(f"audit log (PostgreSQL): {exc}") from None  # libpq's own error repeats the URL
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        self.origin = uuid.uuid4().hex[:16]  # this gateway, in its notifications (it skips its own)
        self._claims: psycopg.Connection | None = None  # holds the door locks (session-level)
        self._claimed: Counter[str] = Counter()  # door -> times locked (PostgreSQL counts them too)
        self._claims_lock = threading.Lock()  # not `_lock`: a slow audit write must not hold a door up
        self._migrate()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _connect(self, purpose: str) -> psycopg.Connection:
        """A new connection that gives up instead of hanging: a statement over 10 s fails, and a
        silent peer (a partition, a failover without a reset) is noticed within ~15 s."""
        try:
            # autocommit: each `transaction()` block is one explicit transaction
            return psycopg.connect(self._conninfo, connect_timeout=int(self._timeout), autocommit=True,
                                   application_name=f"facegate-gateway-{purpose}", options="-c statement_timeout=10000")
        except psycopg.Error as exc:
            raise AuditError("audit log (PostgreSQL): cannot connect "
                             f"({without_password(self.url, str(exc).strip())})") from exc

    def _connection(self) -> psycopg.Connection:
        if self._db is None or self._db.closed or self._db.broken:
            self._db = self._connect("log")
        return self._db

    @contextlib.contextmanager
    def _transaction(self, erasing: bool = False) -> Iterator[Cursor]:
        with self._lock, contextlib.ExitStack() as stack:
            try:
                db = begin(stack, self._connection)
                cursor = stack.enter_context(db.cursor())
                lock = "pg_advisory_xact_lock" if erasing else "pg_advisory_xact_lock_shared"
                cursor.execute(f"SELECT {lock}(%s)", (ERASURE_LOCK,))
                yield cursor
                stack.close()  # commits
            except psycopg.Error as exc:  # the transaction was rolled back
                raise AuditError(f"audit log (PostgreSQL): {str(exc).strip()}") from exc

    def _lock_door(self, door_id: str) -> bool:
        """One more hold on the door's lock (the caller holds `_claims_lock`, on a live connection)."""
        assert self._claims is not None
        row = self._claims.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (DOOR_LOCKS, door_id)).fetchone()
        return bool(row and row[0])

    def claim_door(self, door_id: str) -> bool:
        with self._claims_lock:
            if self._claims is None or self._claims.closed or self._claims.broken:
                self.keep_doors_locked()
            try:
                if not self._lock_door(door_id):
                    return False
            except psycopg.Error as exc:
                raise AuditError(f"audit log (PostgreSQL): {str(exc).strip()}") from exc
            self._claimed[door_id] += 1
            return True

    def release_door(self, door_id: str) -> None:
        with self._claims_lock:
            if self._claimed[door_id] <= 0:
                return
            self._claimed[door_id] -= 1  # one release per claim: PostgreSQL counts holds the same way
            if self._claimed[door_id] == 0:
                del self._claimed[door_id]
            if self._claims is not None and not self._claims.closed:
                with contextlib.suppress(psycopg.Error):  # a broken connection has released it already
                    self._claims.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (DOOR_LOCKS, door_id))

    def keep_doors_locked(self) -> set[str]:
        """Check the door locks' connection; if it was lost (the server restarted), take the held
        doors again on a new one. Returns the doors another gateway took meanwhile: this gateway
        no longer holds them and must end their streams."""
        lost: set[str] = set()
        if self._claims is not None and not self._claims.closed and not self._claims.broken:
            try:
                self._claims.execute("SELECT 1")
                return lost
            except psycopg.Error:
                pass  # gone: reconnect below
        self._claims = self._connect("doors")
        for door_id, holds in list(self._claimed.items()):
            if self._lock_door(door_id):
                for _ in range(holds - 1):
                    self._lock_door(door_id)
            else:
                lost.add(door_id)
                del self._claimed[door_id]
        if lost:
            log.warning("doors taken by another gateway while the log's server was away: %s", ", ".join(sorted(lost)))
        return lost

    def check_doors(self) -> set[str]:
        with self._claims_lock:
            if not self._claimed:
                return set()
            try:
                return self.keep_doors_locked()
            except (AuditError, psycopg.Error) as exc:
                log.warning("cannot check the door locks (%s); the doors stay held here", exc)
                return set()

    def _announce(self, cursor: Cursor, decisions: list[gateway_pb2.Decision]) -> None:
        for decision in decisions:
            body = decision.SerializeToString()
            if len(body) > MAX_NOTIFIED_BYTES:  # NOTIFY takes 8,000 bytes; the log keeps the whole reason
                short = gateway_pb2.Decision()
                short.CopyFrom(decision)
                short.reason = decision.reason[:500] + " (cut; the whole reason is in the audit log)"
                body = short.SerializeToString()
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.origin}:{base64.b64encode(body).decode()}"))

    async def follow_others(self, publish: Callable[[gateway_pb2.Decision], None],
                            gap: Callable[[], None] = lambda: None) -> None:
        connected_before = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=int(self._timeout),
                        application_name="facegate-gateway-listener") as listener:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    if connected_before:  # decisions notified while away were missed: watchers must backfill
                        gap()
                    connected_before = True
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
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away, or anything else: log it, never stop following
                log.warning("decision feed from the other gateways interrupted (%s); reconnecting", exc)
                await asyncio.sleep(1.0)

    def close(self) -> None:
        with self._lock, self._claims_lock:
            for connection in (self._db, self._claims):
                if connection is not None:
                    connection.close()
