"""The review queue in PostgreSQL: one queue for any number of gateways (`ReviewQueue` has the behaviour).

By default it lives in the shared audit log's database (`--audit-db postgresql://...` without
`--review-db`), in tables of its own (`reviews`, `review_erasures`, `review_schema_migrations`).
Connections as the audit log's (audit_postgres.py): one per gateway, used under a lock; one
found broken by a transaction's BEGIN (the server restarted or failed over while it sat idle)
is replaced and the transaction begun on the new one (nothing of it had been sent); one that
breaks later fails its call with ReviewStoreError (nothing of it was kept) and is replaced on
the next. A statement over 10 s fails, and a silent peer is noticed within ~15 s.

Across gateways: an answer is one UPDATE of the item's row `WHERE verdict = 0`, and a template
step's claim one `WHERE template_added = 0` (or a stale claim: claim times are the database
server's clock, so the gateways' clocks need not agree). PostgreSQL locks the row for the first;
the second waits for its commit, then finds the condition false and changes nothing: one answer
wins, the other gets ReviewError; one claim holds, the other is refused. Expiry runs in a
transaction of its own and skips rows another gateway has locked (it or its next sweep deletes
them; reads never show an item past the retention period, deleted or not), so concurrent
expiries never wait on each other, and no call holds expired rows' locks while it waits.

Erasures and the writes that name people are ordered with one advisory lock, as the audit log
orders erasures and records: each `add` and `answer` holds it shared for its transaction, an
erasure (`forget`) exclusively, so an item or an answer about a person cannot be written on one
gateway while another erases them, between the erasure's DELETE and its commit: it commits first
(and the DELETE, waiting for the lock, sees it) or reads the erasure in `review_erasures`.

Secure deletion: PostgreSQL has no `secure_delete`. A deleted (or updated: a crop set to NULL)
row disappears for every query at once, but its bytes stay in the table's files (the crops in
its TOAST table) until VACUUM marks the space free and later rows overwrite it, and in the WAL,
in base backups and on replicas until those are recycled or expire. What is done here: the
table is vacuumed by autovacuum after every 50 dead rows (not the default 20 % of the table),
and at once after an erasure (`VACUUM` on a connection of its own, so the gateway's other calls
do not wait for it; best effort: it needs the table's owner, the gateway that created it). What
the operator must do: treat the database's disks, WAL archive and
backups as holding biometric data (encryption at rest, backups kept no longer than the retention
they need).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Literal

import psycopg

from services.core.redaction import without_password
from services.gateway.audit import Cursor
from services.gateway.audit_postgres import begin, conninfo
from services.gateway.review_queue import ReviewQueue, ReviewStoreError

log = logging.getLogger("facegate.gateway.reviews")
MIGRATION_LOCK = 0x46_47_52_56  # "FGRV": the advisory lock gateways starting at once migrate under
ERASURE_LOCK = 0x46_47_52_45  # "FGRE": the advisory lock erasures take exclusively, writes naming people shared
DEAD_ROWS_VACUUMED = 50  # autovacuum runs on the review tables after this many deleted or updated rows


class PostgresReviewQueue(ReviewQueue):
    """The queue in the PostgreSQL database at `url` (a libpq URI; credentials from the URI, a
    PGPASSFILE or the environment, as libpq reads them)."""

    ns_type, real_type, blob_type = "BIGINT", "DOUBLE PRECISION", "BYTEA"
    contains = "strpos(people, ?) > 0"
    tuning = (f"ALTER TABLE reviews SET (autovacuum_vacuum_scale_factor = 0, "
              f"autovacuum_vacuum_threshold = {DEAD_ROWS_VACUUMED}, toast.autovacuum_vacuum_scale_factor = 0, "
              f"toast.autovacuum_vacuum_threshold = {DEAD_ROWS_VACUUMED})")
    expire_sql = ("DELETE FROM reviews WHERE decision_id IN (SELECT decision_id FROM reviews WHERE queued_ns < ? "
                  "FOR UPDATE SKIP LOCKED)")

    def __init__(self, url: str, retention: float, connect_timeout: float = 5.0) -> None:
        self.url = url
        try:  # the audit log's connection settings: every connection gives up on a silent peer within ~15 s
            self._conninfo = conninfo(url)
        except ValueError as exc:
            raise ReviewStoreError(f"review queue (PostgreSQL): {exc}") from None  # libpq's own repeats the URL
        self._timeout = connect_timeout
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        super().__init__(retention)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _connect(self, purpose: str) -> psycopg.Connection:
        """A new connection: autocommit (each `_transaction` block is one explicit transaction);
        a statement over 10 s fails."""
        try:
            return psycopg.connect(self._conninfo, connect_timeout=int(self._timeout), autocommit=True,
                                   application_name=f"facegate-gateway-{purpose}",
                                   options="-c statement_timeout=10000")
        except psycopg.Error as exc:
            raise ReviewStoreError("review queue (PostgreSQL): cannot connect "
                                   f"({without_password(self.url, str(exc).strip())})") from exc

    def _connection(self) -> psycopg.Connection:
        """The connection (a new one if there is none or it broke)."""
        if self._db is None or self._db.closed or self._db.broken:
            self._db = self._connect("reviews")
        return self._db

    def _clock_ns(self, cursor: Cursor) -> int:
        cursor.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint")
        return int(cursor.fetchone()[0])

    @contextlib.contextmanager
    def _transaction(self, migrating: bool = False,
                     erasures: Literal["", "shared", "exclusive"] = "") -> Iterator[Cursor]:
        with self._lock, contextlib.ExitStack() as stack:
            try:
                db = begin(stack, self._connection)
                cursor = stack.enter_context(db.cursor())
                if migrating:  # two gateways creating the tables at once would collide
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                if erasures:  # first: before the transaction holds any row lock an erasure could wait on
                    lock = "pg_advisory_xact_lock" if erasures == "exclusive" else "pg_advisory_xact_lock_shared"
                    cursor.execute(f"SELECT {lock}(%s)", (ERASURE_LOCK,))
                yield cursor
                stack.close()  # commits
            except psycopg.Error as exc:  # the transaction was rolled back
                raise ReviewStoreError(f"review queue (PostgreSQL): {str(exc).strip()}") from exc

    def _scrub(self) -> None:
        """VACUUM the queue after an erasure: the erased rows' space (crops included) is freed for
        later rows to overwrite now, not at autovacuum's next turn. On a connection of its own,
        not under the queue's lock: the gateway's other calls go on meanwhile. Best effort: the
        rows are gone for every query already. SKIP_LOCKED: another gateway vacuuming it does
        that work."""
        try:
            with self._connect("reviews-vacuum") as vacuuming:
                vacuuming.execute("VACUUM (SKIP_LOCKED) reviews")
        except (psycopg.Error, ReviewStoreError) as exc:
            log.warning("the review queue was not vacuumed after an erasure (%s); autovacuum will",
                        without_password(self.url, str(exc).strip()))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
