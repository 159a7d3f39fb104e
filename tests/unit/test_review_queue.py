"""The review queue: decisions waiting for a person's judgment, and face crops kept no longer than needed.

Written against `open_queue` and `stored` (SQLite here); tests/system/test_review_postgres.py runs
every test of this module that takes `open_queue` again on a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.contracts.v1 import common_pb2, gateway_pb2
from services.core import ndarray
from services.gateway.review_queue import (
    MIGRATIONS,
    Evidence,
    ReviewError,
    ReviewQueue,
    ReviewStoreError,
    SqliteReviewQueue,
    open_review_queue,
)

Outcome = gateway_pb2.Decision.Outcome
IS, IS_NOT = gateway_pb2.REVIEW_VERDICT_IS, gateway_pb2.REVIEW_VERDICT_IS_NOT
UNKNOWN = gateway_pb2.REVIEW_VERDICT_UNKNOWN
DAY = 24 * 3600.0
MIGRATIONS_NEWEST = MIGRATIONS[-1][0]


@pytest.fixture
def open_queue(tmp_path) -> Callable[..., ReviewQueue]:
    """Opens the test's queue (the same store each time: a reopening sees what was written)."""
    return lambda retention=DAY: open_review_queue(str(tmp_path / "review.db"), retention)


@pytest.fixture
def stored(tmp_path) -> Callable[[str], list[tuple]]:
    """The rows a query finds in the queue's store itself: what is kept, not what the queue shows."""

    def query(sql: str) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(tmp_path / "review.db")) as db:
            return db.execute(sql).fetchall()

    return query


def pending() -> float | None:
    return REGISTRY.get_sample_value("facegate_gateway_reviews_pending")


def decision(n: int, site: str = "hq") -> gateway_pb2.Decision:
    return gateway_pb2.Decision(decision_id=f"d{n}", door_id="lobby", site=site, outcome=Outcome.OUTCOME_REVIEW,
                                identity_id="alice", distance=0.41, frames=2, reason="frames disagree")


def face_crop(seed: int = 0) -> np.ndarray:
    """A smooth 150 x 150 RGB gradient (JPEG keeps it close)."""
    ramp = np.linspace(40, 200, 150, dtype=np.float64)
    grey = (ramp[None, :] + ramp[:, None]) / 2 + seed
    return np.repeat(grey[:, :, None], 3, axis=2).astype(np.uint8)


def evidence(seed: int = 0, candidates=(("alice", "Alice", 0.41), ("bob", "Bob", 0.52))) -> Evidence:
    return Evidence(crop=ndarray.encode(face_crop(seed)), face=common_pb2.Face(quality=0.8),
                    embedding=common_pb2.Embedding(vector=[float(seed), 1.0], model_id="m", model_version="1"),
                    candidates=candidates)


def test__an_item_comes_back_with_its_decision_a_jpeg_crop_and_its_candidates(open_queue):
    queue = open_queue()

    queue.add(decision(1), evidence())

    [item] = queue.items()
    assert item.decision == decision(1) and item.face_quality == pytest.approx(0.8)
    assert item.face_crop.encoding == common_pb2.NDArray.ENCODING_JPEG
    assert np.abs(ndarray.decode(item.face_crop).astype(int) - face_crop()).max() < 8
    assert [(c.identity_id, c.display_name) for c in item.candidates] == [("alice", "Alice"), ("bob", "Bob")]
    assert [c.distance for c in item.candidates] == pytest.approx([0.41, 0.52])
    assert item.verdict == gateway_pb2.REVIEW_VERDICT_UNSPECIFIED and not item.HasField("answered_at")


def test__open_items_come_oldest_first(open_queue):
    queue = open_queue()

    for n in (3, 1, 2):
        queue.add(decision(n), evidence(n))

    assert [i.decision.decision_id for i in queue.items()] == ["d3", "d1", "d2"]
    assert [i.decision.decision_id for i in queue.items(limit=2)] == ["d3", "d1"]


def test__an_item_expires_a_retention_period_after_it_was_queued(open_queue):
    queue = open_queue(3600)
    before = time.time_ns()

    queue.add(decision(1), evidence())

    expires = queue.items()[0].expires_at.ToNanoseconds()
    assert before + 3600 * 10**9 <= expires <= time.time_ns() + 3600 * 10**9


def test__an_answered_item_leaves_the_open_list_and_records_the_answer(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.add(decision(2), evidence())

    queue.answer("d1", IS_NOT, "alice", "someone else", who="spiffe://facegate/console/bob")

    assert [i.decision.decision_id for i in queue.items()] == ["d2"]
    answered = queue.item("d1")
    assert answered is not None
    assert (answered.verdict, answered.verdict_identity_id, answered.note, answered.answered_by) == (
        IS_NOT, "alice", "someone else", "spiffe://facegate/console/bob")
    assert answered.HasField("answered_at")
    assert [i.decision.decision_id for i in queue.items(include_answered=True)] == ["d2", "d1"]  # newest first


@pytest.mark.parametrize("verdict", [IS_NOT, UNKNOWN])
def test__an_answer_other_than_this_is_x_deletes_the_crop_at_once(open_queue, verdict):
    queue = open_queue()
    queue.add(decision(1), evidence())

    queue.answer("d1", verdict, "", "", who="bob")

    item = queue.item("d1")
    assert item is not None and not item.HasField("face_crop")


def test__this_is_x_keeps_the_crop_until_the_template_step_is_done(open_queue, stored):
    queue = open_queue()
    queue.add(decision(1), evidence())

    queue.answer("d1", IS, "alice", "", who="bob")
    kept = queue.item("d1")
    queue.template_added("d1")

    assert kept is not None and kept.HasField("face_crop") and not kept.template_added
    done = queue.item("d1")
    assert done is not None and done.template_added and not done.HasField("face_crop")
    assert stored("SELECT crop, embedding FROM reviews") == [(None, None)]


@pytest.mark.parametrize("decision_id", ["d1", "never-queued"])
def test__an_item_is_answered_once(open_queue, decision_id):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.answer("d1", UNKNOWN, "", "", who="bob")

    with pytest.raises(ReviewError, match=f"review '{decision_id}' is already answered or no longer queued"):
        queue.answer(decision_id, IS, "alice", "", who="mallory")

    item = queue.item("d1")
    assert item is not None and (item.verdict, item.answered_by) == (UNKNOWN, "bob")


def test__an_item_past_the_retention_period_is_deleted_from_the_store(open_queue, stored):
    queue = open_queue(0.05)
    queue.add(decision(1), evidence())

    time.sleep(0.1)

    assert queue.items() == [] and queue.item("d1") is None
    assert queue.open_embeddings() == []
    assert stored("SELECT COUNT(*) FROM reviews") == [(0,)]


def test__open_embeddings_are_those_of_the_sites_unanswered_items_oldest_first(open_queue):
    queue = open_queue()
    queue.add(decision(1, "hq"), evidence(1))
    queue.add(decision(2, "branch"), evidence(2))
    queue.add(decision(3, "hq"), evidence(3))
    queue.add(decision(4, "hq"), evidence(4))
    queue.answer("d3", UNKNOWN, "", "", who="bob")

    hq = queue.open_embeddings(site="hq")
    everywhere = queue.open_embeddings()

    assert [(d, e.vector[0]) for d, e in hq] == [("d1", 1.0), ("d4", 4.0)]
    assert [d for d, _ in everywhere] == ["d1", "d2", "d4"]
    assert queue.embedding("d2") == evidence(2).embedding


def test__items_can_be_listed_by_site(open_queue):
    queue = open_queue()
    queue.add(decision(1, "hq"), evidence())
    queue.add(decision(2, "branch"), evidence())

    assert [i.decision.decision_id for i in queue.items(site="branch")] == ["d2"]


def test__the_same_decision_queued_twice_is_one_item_with_its_first_evidence(open_queue):
    queue = open_queue()

    queue.add(decision(1), evidence(1))
    queue.add(decision(1), evidence(2, candidates=()))

    [item] = queue.items()
    assert len(item.candidates) == 2 and queue.embedding("d1") == evidence(1).embedding


def test__open_items_survive_a_restart(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.close()

    reopened = open_queue()

    assert [i.decision for i in reopened.items()] == [decision(1)]


def test__an_erasure_deletes_every_item_naming_the_person_as_match_candidate_or_answer(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())  # alice matched, bob a candidate
    queue.add(decision(2), evidence(candidates=(("carol", "Carol", 0.5),)))  # alice matched
    stranger = gateway_pb2.Decision(decision_id="d3", site="hq", outcome=Outcome.OUTCOME_REVIEW)
    queue.add(stranger, evidence(candidates=()))
    queue.answer("d3", IS, "dave", "", "operator")  # dave named only by the answer

    assert queue.forget("bob") == 1
    assert queue.forget("dave") == 1
    assert queue.forget("alice") == 1  # d2 (d1 went with bob)
    assert queue.items(include_answered=True) == []


def test__a_partial_id_is_not_a_match_for_an_erasure(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence(candidates=(("bobby", "Bobby", 0.5),)))

    assert queue.forget("bob") == 0 and queue.forget("lice") == 0
    assert len(queue.items()) == 1


def test__an_id_in_another_case_is_another_person_for_an_erasure(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence(candidates=(("Bob", "Bob", 0.5),)))

    assert queue.forget("bob") == 0 and queue.forget("ALICE") == 0
    assert queue.forget("Bob") == 1


def test__not_x_drops_the_embedding_with_the_crop_and_the_template_step_is_claimed_once(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.add(decision(2), evidence())

    queue.answer("d1", IS_NOT, "alice", "", "operator")
    queue.answer("d2", IS, "alice", "", "operator")

    assert queue.embedding("d1") is None and queue.embedding("d2") is not None
    assert queue.claim_template("d2") and not queue.claim_template("d2")  # a second, concurrent step is refused
    queue.release_template("d2")  # the step failed: it may be tried again
    assert queue.claim_template("d2")
    queue.template_added("d2")
    assert queue.embedding("d2") is None and queue.item("d2").template_added


def test__the_backlog_gauge_counts_the_open_items_from_the_start_as_they_are_answered_and_erased(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.add(decision(2), evidence(candidates=(("carol", "Carol", 0.5),)))
    queue.add(decision(3), evidence(candidates=(("carol", "Carol", 0.5),)))
    queue.close()

    reopened = open_queue()
    at_start = pending()
    reopened.answer("d1", UNKNOWN, "", "", who="bob")
    answered = pending()
    reopened.forget("carol")

    assert (at_start, answered, pending()) == (3, 2, 0)


def test__a_new_queue_is_at_the_newest_schema_version_and_stays_there_when_reopened(open_queue):
    open_queue().close()

    assert open_queue().schema_version() == MIGRATIONS_NEWEST


def test__a_queue_from_before_schema_versions_is_brought_up_to_date_and_keeps_its_items(tmp_path):
    old = sqlite3.connect(tmp_path / "review.db")  # the schema as the first gateways wrote it, no versions table
    old.executescript(MIGRATIONS[0][1].format(ns="INTEGER", real="REAL", blob="BLOB", tuning=""))
    old.close()
    SqliteReviewQueue(tmp_path / "review.db", DAY).add(decision(1), evidence())
    with contextlib.closing(sqlite3.connect(tmp_path / "review.db")) as db:
        db.execute("DROP TABLE review_schema_migrations")
        db.commit()

    queue = SqliteReviewQueue(tmp_path / "review.db", DAY)

    assert queue.schema_version() == MIGRATIONS_NEWEST
    assert [i.decision for i in queue.items()] == [decision(1)]


def test__a_queue_from_a_newer_facegate_is_refused_saying_what_to_do(tmp_path):
    SqliteReviewQueue(tmp_path / "review.db", DAY).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "review.db")) as db:
        db.execute("INSERT INTO review_schema_migrations VALUES (99, 0)")
        db.commit()

    with pytest.raises(ReviewStoreError, match="schema version 99; this gateway knows up to"):
        SqliteReviewQueue(tmp_path / "review.db", DAY)


# -- where the gateway keeps its queue (--review-db beside --audit-db) ---------------------------

SHARED = "postgresql://facegate@db.example:5432/facegate?sslmode=verify-full"


@pytest.mark.parametrize(("audit_db", "review_db", "queue"), [
    ("/data/audit.db", "", "/data/audit-reviews.db"),  # one gateway: a file beside the log's
    (":memory:", "", ":memory:"),
    (SHARED, "", SHARED),  # a shared log: the queue in its database, shared too
    (SHARED, "postgresql://facegate@other.example/reviews", "postgresql://facegate@other.example/reviews"),
    (SHARED, "/var/lib/facegate/reviews.db", "/var/lib/facegate/reviews.db"),  # allowed (one gateway), warned
    ("/data/audit.db", "/elsewhere/reviews.db", "/elsewhere/reviews.db"),
])
def test__the_queue_is_beside_the_audit_log_in_its_database_or_next_to_its_file_unless_named(audit_db, review_db,
                                                                                             queue):
    from services.gateway.server import review_target

    assert review_target(audit_db, review_db) == queue


@pytest.mark.parametrize(("audit_db", "review_db", "said"), [
    ("/data/audit.db", SHARED, "--review-db is a PostgreSQL database but --audit-db is not"),
    (":memory:", "postgres://facegate@db/facegate", "make --audit-db a postgresql:// URL too"),
    (SHARED, "mysql://root:secret@db/reviews", r"--review-db mysql://\.\.\.: the review queue is a SQLite file path "
                                               "or a postgresql:// URL"),
])
def test__a_queue_that_cannot_work_with_the_audit_log_is_refused_saying_why(audit_db, review_db, said):
    from services.gateway.server import review_target

    with pytest.raises(ValueError, match=said) as refused:
        review_target(audit_db, review_db)

    assert "secret" not in str(refused.value)  # a password in a URL is never repeated
