"""The review queue: decisions a person should judge, with the face crop that caused them.

Two engines, one behaviour (`ReviewQueue`; `open_review_queue` picks one by the target's form),
as the audit log has (audit.py):
- SQLite, the embedded default (a file path: `--review-db`, or a file beside the audit log's
  file), for one gateway;
- PostgreSQL (`postgresql://...`, `review_postgres.py`): one queue for any number of gateways, by
  default in the shared audit log's database (in tables of its own). The console sees the whole
  queue whichever gateway it calls, an answer given on one gateway holds on all (an item is
  answered once; a template step is claimed once), and the queue outlives any gateway's pod.
The schema is versioned (`MIGRATIONS`, applied at open, recorded in `review_schema_migrations`:
not the audit log's `schema_migrations`, so both can share one database), so an older queue is
brought up to date and a newer one is refused.

Erasure (`forget`) deletes every item naming the person and, as the audit log does, remembers
the erasure for `ERASED_MEMORY` seconds (`review_erasures`): a review that a track still open at
the erasure (on this gateway or another) queues a moment later is dropped, and an answer naming
the person is refused. Erasures and the writes that name people (`add`, `answer`) are ordered
(SQLite: one writer at a time; PostgreSQL: an advisory lock, review_postgres.py), so neither can
pass an erasure half-way: it either lands before it (and is deleted by it) or sees it.

Kept apart from the audit log's decisions and from the gallery: it holds face crops of people who
may be strangers, so it keeps them only as long as needed — until the item is answered (after
"this is X", until the template step or the end of the retention period) and at most `retention`
seconds, after which the whole item is deleted (the decision itself stays in the audit log).
Answers are recorded in the admin log by the servicer, before they land here. What a deletion
leaves behind depends on the engine: SQLite overwrites deleted rows (`secure_delete`);
PostgreSQL has no such setting (review_postgres.py says what holds there instead).
"""

from __future__ import annotations

import abc
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Gauge

from services.contracts.v1 import common_pb2, gateway_pb2
from services.gateway.audit import ERASED_MEMORY, Cursor
from services.gateway.schema import migrate

# The schema, version by version: (version, what it adds). Written in the SQL both engines take;
# {ns} is a 64-bit integer column, {real} a double, {blob} bytes (the engines spell them
# differently); {tuning}: the engine's own settings for the table (PostgreSQL's vacuuming).
# Statements are split at ";": none in the comments.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE IF NOT EXISTS reviews (
    decision_id TEXT PRIMARY KEY,
    queued_ns {ns} NOT NULL,
    site TEXT NOT NULL,
    decision {blob} NOT NULL,          -- the Decision message
    crop {blob},                       -- JPEG of the aligned face crop (NULL once deleted)
    embedding {blob},                  -- the crop's Embedding message (for clustering, the template step)
    candidates TEXT NOT NULL,          -- JSON [[identity_id, display_name, distance], ...]
    people TEXT NOT NULL DEFAULT '',   -- " id1 id2 ... ": everyone it names (an erasure deletes the item)
    face_quality {real} NOT NULL,
    verdict INTEGER NOT NULL DEFAULT 0,
    verdict_identity_id TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    answered_by TEXT NOT NULL DEFAULT '',
    answered_ns {ns} NOT NULL DEFAULT 0,
    template_added INTEGER NOT NULL DEFAULT 0   -- 0 not yet, 2 under way (claimed), 1 done
);
CREATE INDEX IF NOT EXISTS reviews_open ON reviews (verdict, queued_ns);
CREATE INDEX IF NOT EXISTS reviews_by_age ON reviews (queued_ns);
{tuning}"""),
    # the people erased lately (no item nor answer may name them until until_ns); when a template
    # step was claimed (template_added 2; no comment in an ALTER TABLE: SQLite keeps it in the schema)
    (2, """
CREATE TABLE IF NOT EXISTS review_erasures (
    identity_id TEXT NOT NULL,
    until_ns {ns} NOT NULL
);
ALTER TABLE reviews ADD COLUMN claimed_ns {ns} NOT NULL DEFAULT 0
"""),
)
CROP_JPEG_QUALITY = 92
# A template step's claim older than this (s) is of a call that ended without finishing or
# releasing it (its gateway was killed): it may be claimed again. The gateway passes its own.
TEMPLATE_CLAIM_STALE = 10.0
# The backlog a person still has to judge: counted again whenever items are queued, answered,
# erased or expire (an indexed count: reviews_open), so it is right from the gateway's start on.
# With a shared queue (PostgreSQL) every gateway counts the same, shared items: each replica
# reports the whole backlog (as of its own last use of the queue or its sweep, at most a minute
# old), so a rule takes the max over replicas, never the sum (FaceGateReviewBacklog).
REVIEWS_PENDING = Gauge("facegate_gateway_reviews_pending", "Review items waiting for an answer")
COLUMNS = ("decision_id, queued_ns, decision, crop, candidates, face_quality, verdict, verdict_identity_id, note, "
           "answered_by, answered_ns, template_added")


@dataclass(frozen=True)
class Evidence:
    """What a track leaves for its reviewer: its best frame's crop and face, that crop's
    embedding, and the nearest people seen (identity, name, smallest distance)."""

    crop: common_pb2.NDArray  # raw uint8 S x S x 3 RGB, as the detector cut it
    face: common_pb2.Face
    embedding: common_pb2.Embedding
    candidates: tuple[tuple[str, str, float], ...]


class ReviewError(ValueError):
    """An answer or a template step that does not fit the item (the message says why)."""


class ReviewStoreError(RuntimeError):
    """The queue's store cannot be read or written now (the message says why; nothing of the
    call was kept)."""


def is_postgres(target: str) -> bool:
    """`target` names a PostgreSQL database (a libpq URI), not a SQLite file."""
    return target.startswith(("postgresql://", "postgres://"))


class ReviewQueue(abc.ABC):
    """Review items, each deleted `retention` seconds after it was queued. Thread-safe. The
    engines differ only in how they connect, run a transaction and spell a few things.

    Every gateway on a shared queue deletes by its own `retention` (--review-retention-days): give
    them all the same one (the shortest wins). Times are each gateway's clock: a skew of seconds
    matters nothing against days of retention."""

    ns_type, real_type, blob_type = "INTEGER", "REAL", "BLOB"
    contains = "instr(people, ?) > 0"  # `people` contains the argument (case-sensitive, as ids are)
    tuning = ""
    # the items past the retention period (the argument: the oldest queued_ns kept)
    expire_sql = "DELETE FROM reviews WHERE queued_ns < ?"

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._migrate()
        with self._using():
            pass  # what was left waiting before a restart (or on other gateways) counts from the start

    @abc.abstractmethod
    def _transaction(self, migrating: bool = False,
                     erasures: Literal["", "shared", "exclusive"] = "") -> contextlib.AbstractContextManager[Cursor]:
        """A cursor in one transaction (committed on exit, rolled back on error; a failure of the
        store raises ReviewStoreError). `migrating`: exclusive of other gateways' migrations.
        `erasures`: "exclusive" for an erasure, "shared" for a write naming people: no such write
        runs beside an erasure, on any gateway (the engine's way: a lock taken first)."""

    def _sql(self, statement: str) -> str:
        return statement

    def _clock_ns(self, cursor: Cursor) -> int:
        """Now, by the clock every gateway on the queue shares (for claims: the engine's own)."""
        return time.time_ns()

    @abc.abstractmethod
    def close(self) -> None: ...

    def _scrub(self) -> None:
        """After an erasure deleted items: whatever the engine can do so that their bytes do not
        linger in its files (SQLite's secure_delete needs nothing more)."""
        return None

    def _migrate(self) -> None:
        """Bring the schema up to `MIGRATIONS`' last version; refuse a queue from a newer FaceGate."""
        types = {"ns": self.ns_type, "real": self.real_type, "blob": self.blob_type, "tuning": self.tuning}
        with self._transaction(migrating=True) as cursor:
            migrate(cursor, "review_schema_migrations", MIGRATIONS, types, self._sql,
                    lambda current, newest: ReviewStoreError(
                        f"the review queue is at schema version {current}; this gateway knows up to {newest}: run "
                        "the newer gateway (or restore a copy made for this one)"))

    def schema_version(self) -> int:
        with self._transaction() as cursor:
            cursor.execute("SELECT MAX(version) FROM review_schema_migrations")
            return int(cursor.fetchone()[0])

    def _oldest_kept(self) -> int:
        """queued_ns of the oldest item still within the retention period."""
        return time.time_ns() - int(self.retention * 1e9)

    @contextlib.contextmanager
    def _using(self, expire: bool = True, counted: bool = True,
               erasures: Literal["", "shared", "exclusive"] = "") -> Iterator[Cursor]:
        """A transaction that, before it commits, counts the backlog (the gauge is set once it has
        committed); first, in a short transaction of its own, the items past the retention period
        are deleted (on their own, so that their row locks are never held while the call waits
        for others: an erasure deleting them too could otherwise deadlock with it). Reads filter
        by the retention period themselves."""
        if expire:
            with self._transaction() as cursor:
                cursor.execute(self._sql(self.expire_sql), (self._oldest_kept(),))
        with self._transaction(erasures=erasures) as cursor:
            yield cursor
            if counted:
                cursor.execute(self._sql("SELECT count(*) FROM reviews WHERE verdict = 0 AND queued_ns >= ?"),
                               (self._oldest_kept(),))
                pending = int(cursor.fetchone()[0])
        if counted:
            REVIEWS_PENDING.set(pending)

    def _erased(self, cursor: Cursor) -> set[str]:
        """The people erased within the last `ERASED_MEMORY` seconds, by any gateway."""
        cursor.execute(self._sql("SELECT identity_id FROM review_erasures WHERE until_ns > ?"), (time.time_ns(),))
        return {row[0] for row in cursor.fetchall()}

    def add(self, decision: gateway_pb2.Decision, evidence: Evidence) -> bool:
        """Queue a decision with its evidence (a decision queued again keeps its first evidence).
        False if it was not queued: it names a person (as the match or a candidate; a decision
        recorded under an erasure's pseudonym still has them among its candidates) erased moments
        ago, whose face and name it must not keep."""
        crop = np.frombuffer(evidence.crop.data, np.uint8).reshape(tuple(evidence.crop.shape))
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
        if not ok:
            raise ValueError("the face crop could not be encoded")
        people = {decision.identity_id, *(c[0] for c in evidence.candidates)} - {""}
        with self._using(erasures="shared") as cursor:
            if people & self._erased(cursor):
                return False
            cursor.execute(self._sql(
                "INSERT INTO reviews (decision_id, queued_ns, site, decision, crop, embedding, candidates, "
                "face_quality, people) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING"),
                (decision.decision_id, time.time_ns(), decision.site, decision.SerializeToString(), jpeg.tobytes(),
                 evidence.embedding.SerializeToString(), json.dumps(evidence.candidates), float(evidence.face.quality),
                 f" {' '.join(sorted(people))} "))
        return True

    def expire(self) -> None:
        """Delete items past the retention period now (the gateway sweeps every minute, so
        nothing outlives it because nobody used the queue, and the backlog gauge stays fresh)."""
        with self._using():
            pass

    def forget(self, identity_id: str) -> int:
        """Right to erasure: delete every item naming the person (as the decision's match, a
        candidate or an answer), crops and all, and refuse any naming them for `ERASED_MEMORY`
        seconds (items of tracks still open now, answers). Returns how many were deleted."""
        with self._using(erasures="exclusive") as cursor:
            now = time.time_ns()
            cursor.execute(self._sql("DELETE FROM review_erasures WHERE until_ns < ?"), (now,))
            cursor.execute(self._sql("INSERT INTO review_erasures (identity_id, until_ns) VALUES (?, ?)"),
                           (identity_id, now + int(ERASED_MEMORY * 1e9)))
            erased = int(cursor.execute(self._sql(f"DELETE FROM reviews WHERE {self.contains}"),
                                        (f" {identity_id} ",)).rowcount)
        if erased:
            self._scrub()
        return erased

    def items(self, site: str = "", include_answered: bool = False, limit: int = 100,
              decision_id: str = "") -> list[gateway_pb2.ReviewItem]:
        clauses = ["queued_ns >= ?"]
        args: list[int | str] = [self._oldest_kept()]
        if site:
            clauses.append("site = ?")
            args.append(site)
        if decision_id:
            clauses.append("decision_id = ?")
            args.append(decision_id)
        if not include_answered:
            clauses.append("verdict = 0")
        order = "queued_ns DESC" if include_answered else "queued_ns ASC"
        with self._using() as cursor:
            rows = cursor.execute(self._sql(f"SELECT {COLUMNS} FROM reviews WHERE {' AND '.join(clauses)} "
                                            f"ORDER BY {order} LIMIT ?"), [*args, limit]).fetchall()
        return [self._item(row) for row in rows]

    def _item(self, row: tuple) -> gateway_pb2.ReviewItem:
        (_, queued_ns, decision, crop, candidates, quality, verdict, verdict_identity, note, answered_by,
         answered_ns, template_added) = row
        item = gateway_pb2.ReviewItem(
            decision=gateway_pb2.Decision.FromString(bytes(decision)), face_quality=quality, verdict=verdict,
            verdict_identity_id=verdict_identity, note=note, answered_by=answered_by,
            template_added=template_added == 1,
            candidates=[gateway_pb2.ReviewCandidate(identity_id=i, display_name=n, distance=d)
                        for i, n, d in json.loads(candidates)])
        if crop is not None:
            item.face_crop.CopyFrom(common_pb2.NDArray(data=bytes(crop), encoding=common_pb2.NDArray.ENCODING_JPEG))
        expires = Timestamp()
        expires.FromNanoseconds(queued_ns + int(self.retention * 1e9))
        item.expires_at.CopyFrom(expires)
        if answered_ns:
            item.answered_at.FromNanoseconds(answered_ns)
        return item

    def item(self, decision_id: str) -> gateway_pb2.ReviewItem | None:
        found = self.items(include_answered=True, limit=1, decision_id=decision_id)
        return found[0] if found else None

    def answer(self, decision_id: str, verdict: int, identity_id: str, note: str, who: str) -> None:
        """Record the answer; the crop goes with it unless the answer is "this is X". Once: of two
        answers to one item (on this gateway or another), the second raises ReviewError; so does
        an answer naming a person erased moments ago (it would write them back into the queue)."""
        keep_crop = verdict == gateway_pb2.REVIEW_VERDICT_IS  # for the template step
        with self._using(erasures="shared") as cursor:
            if identity_id and identity_id in self._erased(cursor):
                raise ReviewError(f"{identity_id!r} was erased moments ago: an answer may not name them (if they "
                                  "were enrolled again since, answer in a few minutes)")
            # one statement: the row's lock orders two answers, and the second finds verdict != 0
            changed = cursor.execute(self._sql(
                "UPDATE reviews SET verdict = ?, verdict_identity_id = ?, note = ?, answered_by = ?, answered_ns = ?, "
                f"people = people || ? {'' if keep_crop else ', crop = NULL, embedding = NULL'} "
                "WHERE decision_id = ? AND verdict = 0 AND queued_ns >= ?"),
                (verdict, identity_id, note, who, time.time_ns(), f"{identity_id} " if identity_id else "",
                 decision_id, self._oldest_kept())).rowcount
        if not changed:
            raise ReviewError(f"review {decision_id!r} is already answered or no longer queued")

    def embedding(self, decision_id: str) -> common_pb2.Embedding | None:
        with self._using(counted=False) as cursor:
            row = cursor.execute(self._sql("SELECT embedding FROM reviews WHERE decision_id = ? AND queued_ns >= ?"),
                                 (decision_id, self._oldest_kept())).fetchone()
        return common_pb2.Embedding.FromString(bytes(row[0])) if row and row[0] else None

    def claim_template(self, decision_id: str, stale_after: float = TEMPLATE_CLAIM_STALE) -> int:
        """Start the template step, once (across gateways): the claim (its time, ns), or 0 if the
        step is done or under way already. A claim older than `stale_after` seconds (neither
        finished nor released: its gateway stopped during the step) may be taken again."""
        with self._using(expire=False, counted=False) as cursor:
            now = self._clock_ns(cursor)
            changed = cursor.execute(self._sql(
                "UPDATE reviews SET template_added = 2, claimed_ns = ? WHERE decision_id = ? AND "
                "(template_added = 0 OR (template_added = 2 AND claimed_ns < ?))"),
                (now, decision_id, now - int(stale_after * 1e9))).rowcount
        return now if changed else 0

    def renew_template_claim(self, decision_id: str, claim: int) -> int:
        """The claim made fresh (the step is about to enrol the face: it has `stale_after`
        seconds again), or 0 if it is no longer this call's (it went stale and was taken)."""
        with self._using(expire=False, counted=False) as cursor:
            now = self._clock_ns(cursor)
            changed = cursor.execute(self._sql(
                "UPDATE reviews SET claimed_ns = ? WHERE decision_id = ? AND template_added = 2 AND claimed_ns = ?"),
                (now, decision_id, claim)).rowcount
        return now if changed else 0

    def release_template(self, decision_id: str, claim: int) -> None:
        """The template step failed before the face was enrolled: it may be tried again (unless
        the claim is no longer this call's)."""
        with self._using(expire=False, counted=False) as cursor:
            cursor.execute(self._sql("UPDATE reviews SET template_added = 0 WHERE decision_id = ? AND "
                                     "template_added = 2 AND claimed_ns = ?"), (decision_id, claim))

    def template_added(self, decision_id: str) -> None:
        """The template step is done: the crop and its embedding are no longer needed."""
        with self._using(expire=False, counted=False) as cursor:
            cursor.execute(self._sql("UPDATE reviews SET template_added = 1, crop = NULL, embedding = NULL "
                                     "WHERE decision_id = ?"), (decision_id,))

    def open_embeddings(self, site: str = "", limit: int = 5000) -> list[tuple[str, common_pb2.Embedding]]:
        """(decision id, embedding) of open items, oldest first (for clustering)."""
        with self._using(counted=False) as cursor:
            rows = cursor.execute(self._sql(
                "SELECT decision_id, embedding FROM reviews WHERE verdict = 0 AND embedding IS NOT NULL AND "
                f"queued_ns >= ?{' AND site = ?' if site else ''} ORDER BY queued_ns LIMIT ?"),
                (self._oldest_kept(), site, limit) if site else (self._oldest_kept(), limit)).fetchall()
        return [(row[0], common_pb2.Embedding.FromString(bytes(row[1]))) for row in rows]


class SqliteReviewQueue(ReviewQueue):
    """The queue in a SQLite file (or ":memory:"): one gateway."""

    def __init__(self, path: Path | str, retention: float) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted face is overwritten, not left in free pages
        super().__init__(retention)

    @contextlib.contextmanager
    def _transaction(self, migrating: bool = False,
                     erasures: Literal["", "shared", "exclusive"] = "") -> Iterator[Cursor]:
        with self._lock:  # one connection: the lock orders this process's transactions
            cursor = self._db.cursor()
            try:
                # writes follow: take the file's write lock now (it orders erasures and everything
                # else, this gateway's and any other process's on the file)
                cursor.execute("BEGIN IMMEDIATE")
                yield cursor
                self._db.commit()
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.rollback()
                if isinstance(exc, sqlite3.Error):  # a full disk, a locked file
                    raise ReviewStoreError(f"review queue (SQLite {self.path}): {exc}") from exc
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_review_queue(target: str, retention: float) -> ReviewQueue:
    """The queue at `target`, items kept `retention` seconds: a PostgreSQL URI (postgresql://... or
    postgres://...), else a SQLite file path."""
    if is_postgres(target):
        from services.gateway.review_postgres import PostgresReviewQueue  # psycopg only where it is used

        return PostgresReviewQueue(target, retention)
    return SqliteReviewQueue(target, retention)
