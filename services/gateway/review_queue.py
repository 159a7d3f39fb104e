"""The review queue: decisions a person should judge, with the face crop that caused them.

A separate SQLite file from the audit log and the gallery (`--review-db`): it holds face crops
of people who may be strangers, so it keeps them only as long as needed — until the item is
answered (after "this is X", until the template step or the end of the retention period) and
at most `retention` seconds, after which the whole item is deleted (the decision itself stays in
the audit log). Answers are recorded in the admin log by the servicer, before they land here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Gauge

from services.contracts.v1 import common_pb2, gateway_pb2

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    decision_id TEXT PRIMARY KEY,
    queued_ns INTEGER NOT NULL,
    site TEXT NOT NULL,
    decision BLOB NOT NULL,            -- the Decision message
    crop BLOB,                         -- JPEG of the aligned face crop; NULL once deleted
    embedding BLOB,                    -- the crop's Embedding message (for clustering, the template step)
    candidates TEXT NOT NULL,          -- JSON [[identity_id, display_name, distance], ...]
    people TEXT NOT NULL DEFAULT '',   -- " id1 id2 ... ": everyone it names (an erasure deletes the item)
    face_quality REAL NOT NULL,
    verdict INTEGER NOT NULL DEFAULT 0,
    verdict_identity_id TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    answered_by TEXT NOT NULL DEFAULT '',
    answered_ns INTEGER NOT NULL DEFAULT 0,
    template_added INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS reviews_open ON reviews (verdict, queued_ns);
CREATE INDEX IF NOT EXISTS reviews_by_age ON reviews (queued_ns);
"""
CROP_JPEG_QUALITY = 92
# The backlog a person still has to judge: counted again whenever items are queued, answered,
# erased or expire (an indexed count: reviews_open), so it is right from the gateway's start on.
REVIEWS_PENDING = Gauge("facegate_gateway_reviews_pending", "Review items waiting for an answer")


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


class ReviewQueue:
    """Review items in the SQLite file at `path`, deleted `retention` seconds after queueing."""

    def __init__(self, path: Path | str, retention: float) -> None:
        self.retention = retention
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # a deleted face is overwritten, not left in free pages
        self._db.executescript(SCHEMA)
        with self._lock:
            self._count_pending()  # what was left waiting before a restart counts from the start

    def close(self) -> None:
        self._db.close()

    def add(self, decision: gateway_pb2.Decision, evidence: Evidence) -> None:
        crop = np.frombuffer(evidence.crop.data, np.uint8).reshape(tuple(evidence.crop.shape))
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
        if not ok:
            raise ValueError("the face crop could not be encoded")
        people = {decision.identity_id, *(c[0] for c in evidence.candidates)} - {""}
        with self._lock:
            self._expire()
            self._db.execute(
                "INSERT OR IGNORE INTO reviews (decision_id, queued_ns, site, decision, crop, embedding, candidates, "
                "face_quality, people) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (decision.decision_id, time.time_ns(), decision.site, decision.SerializeToString(), jpeg.tobytes(),
                 evidence.embedding.SerializeToString(), json.dumps(evidence.candidates), evidence.face.quality,
                 f" {' '.join(sorted(people))} "))
            self._count_pending()

    def _expire(self) -> None:
        """Delete items past the retention period (under the lock)."""
        self._db.execute("DELETE FROM reviews WHERE queued_ns < ?", (time.time_ns() - int(self.retention * 1e9),))
        self._count_pending()

    def _count_pending(self) -> None:
        """Set the backlog gauge (under the lock)."""
        REVIEWS_PENDING.set(self._db.execute("SELECT count(*) FROM reviews WHERE verdict = 0").fetchone()[0])

    def expire(self) -> None:
        """Delete items past the retention period now (the gateway sweeps every few minutes, so
        nothing outlives it because nobody used the queue)."""
        with self._lock:
            self._expire()

    def forget(self, identity_id: str) -> int:
        """Right to erasure: delete every item naming the person (as the decision's match, a
        candidate or an answer), crops and all. Returns how many."""
        with self._lock:
            erased = int(self._db.execute("DELETE FROM reviews WHERE people LIKE ?",
                                          (f"% {identity_id} %",)).rowcount)
            self._count_pending()
            return erased

    def items(self, site: str = "", include_answered: bool = False, limit: int = 100,
              decision_id: str = "") -> list[gateway_pb2.ReviewItem]:
        clauses, args = ["1 = 1"], []
        if site:
            clauses.append("site = ?")
            args.append(site)
        if decision_id:
            clauses.append("decision_id = ?")
            args.append(decision_id)
        if not include_answered:
            clauses.append("verdict = 0")
        order = "queued_ns DESC" if include_answered else "queued_ns ASC"
        with self._lock:
            self._expire()
            rows = self._db.execute(
                f"SELECT decision_id, queued_ns, decision, crop, candidates, face_quality, verdict, "
                f"verdict_identity_id, note, answered_by, answered_ns, template_added FROM reviews "
                f"WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?", [*args, limit]).fetchall()
        return [self._item(row) for row in rows]

    def _item(self, row: tuple) -> gateway_pb2.ReviewItem:
        (_, queued_ns, decision, crop, candidates, quality, verdict, verdict_identity, note, answered_by,
         answered_ns, template_added) = row
        item = gateway_pb2.ReviewItem(
            decision=gateway_pb2.Decision.FromString(decision), face_quality=quality, verdict=verdict,
            verdict_identity_id=verdict_identity, note=note, answered_by=answered_by,
            template_added=template_added == 1,
            candidates=[gateway_pb2.ReviewCandidate(identity_id=i, display_name=n, distance=d)
                        for i, n, d in json.loads(candidates)])
        if crop is not None:
            item.face_crop.CopyFrom(common_pb2.NDArray(data=crop, encoding=common_pb2.NDArray.ENCODING_JPEG))
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
        """Record the answer; the crop goes with it unless the answer is "this is X"."""
        keep_crop = verdict == gateway_pb2.REVIEW_VERDICT_IS  # for the template step
        with self._lock:
            self._expire()
            changed = self._db.execute(
                "UPDATE reviews SET verdict = ?, verdict_identity_id = ?, note = ?, answered_by = ?, answered_ns = ?, "
                f"people = people || ? {'' if keep_crop else ', crop = NULL, embedding = NULL'} "
                "WHERE decision_id = ? AND verdict = 0",
                (verdict, identity_id, note, who, time.time_ns(), f"{identity_id} " if identity_id else "",
                 decision_id)).rowcount
            self._count_pending()
        if not changed:
            raise ReviewError(f"review {decision_id!r} is already answered or no longer queued")

    def embedding(self, decision_id: str) -> common_pb2.Embedding | None:
        with self._lock:
            self._expire()
            row = self._db.execute("SELECT embedding FROM reviews WHERE decision_id = ?", (decision_id,)).fetchone()
        return common_pb2.Embedding.FromString(row[0]) if row and row[0] else None

    def claim_template(self, decision_id: str) -> bool:
        """Start the template step, once: False if it is under way or done already."""
        with self._lock:
            return bool(self._db.execute("UPDATE reviews SET template_added = 2 WHERE decision_id = ? AND "
                                         "template_added = 0", (decision_id,)).rowcount)

    def release_template(self, decision_id: str) -> None:
        """The template step failed: it may be tried again."""
        with self._lock:
            self._db.execute("UPDATE reviews SET template_added = 0 WHERE decision_id = ? AND template_added = 2",
                             (decision_id,))

    def template_added(self, decision_id: str) -> None:
        """The template step is done: the crop and its embedding are no longer needed."""
        with self._lock:
            self._db.execute("UPDATE reviews SET template_added = 1, crop = NULL, embedding = NULL "
                             "WHERE decision_id = ?", (decision_id,))

    def open_embeddings(self, site: str = "", limit: int = 5000) -> list[tuple[str, common_pb2.Embedding]]:
        """(decision id, embedding) of open items, oldest first (for clustering)."""
        with self._lock:
            self._expire()
            rows = self._db.execute(
                "SELECT decision_id, embedding FROM reviews WHERE verdict = 0 AND embedding IS NOT NULL"
                f"{' AND site = ?' if site else ''} ORDER BY queued_ns LIMIT ?",
                (site, limit) if site else (limit,)).fetchall()
        return [(row[0], common_pb2.Embedding.FromString(row[1])) for row in rows]
