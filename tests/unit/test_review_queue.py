"""The review queue: decisions waiting for a person's judgment, and face crops kept no longer than needed.

Written against `open_queue` and `stored` (SQLite here); tests/system/test_review_postgres.py runs
every test of this module that takes `open_queue` again on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.contracts.v1 import common_pb2, gateway_pb2
from services.core import ndarray
from services.gateway import audit, review_queue
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
            rows = db.execute(sql).fetchall()
            db.commit()  # an UPDATE ... RETURNING changes the store (the tests' way to age an item)
            return rows

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


@pytest.mark.parametrize("erased", ["a.b%c", "a_b_c", "a%", "_", "%", "x%y_"])
def test__ids_with_sql_wildcards_are_matched_exactly_by_an_erasure(open_queue, erased):
    queue = open_queue()
    queue.add(decision(1), evidence(candidates=(("a.b_c", "A", 0.4), ("x%y", "X", 0.5))))

    assert queue.forget(erased) == 0 and len(queue.items()) == 1
    assert queue.forget("x%y") == 1


def stranger(n: int) -> gateway_pb2.Decision:
    """A REVIEW decision that matched nobody (its candidates name whoever it is near)."""
    unknown = decision(n)
    unknown.identity_id = ""
    return unknown


def test__a_review_naming_a_person_erased_moments_ago_is_not_queued_by_any_gateway(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_b.forget("alice")

    added = [gateway_a.add(decision(1), evidence()),  # alice matched (a track that ended just after the erasure)
             gateway_a.add(stranger(2), evidence(candidates=(("carol", "Carol", 0.5), ("alice", "Alice", 0.6)))),
             gateway_a.add(stranger(3), evidence(candidates=(("carol", "Carol", 0.5),)))]

    assert added == [False, False, True]
    assert [i.decision.decision_id for i in gateway_b.items(include_answered=True)] == ["d3"]


def test__an_erasure_is_remembered_as_long_as_the_audit_log_remembers_it(open_queue, monkeypatch):
    assert review_queue.ERASED_MEMORY == audit.ERASED_MEMORY
    monkeypatch.setattr(review_queue, "ERASED_MEMORY", 0.2)
    queue = open_queue()
    queue.forget("alice")

    time.sleep(0.3)

    assert queue.add(decision(1), evidence())  # alice enrolled again, seen again: her reviews are queued
    assert [i.decision.decision_id for i in queue.items()] == ["d1"]


def test__an_answer_naming_a_person_erased_moments_ago_is_refused_and_changes_nothing(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(stranger(3), evidence(candidates=(("carol", "Carol", 0.5),)))
    gateway_b.forget("alice")

    for verdict in (IS, IS_NOT):
        with pytest.raises(ReviewError, match="'alice' was erased moments ago"):
            gateway_a.answer("d3", verdict, "alice", "", who="operator")

    item = gateway_b.item("d3")
    assert item is not None and item.verdict == 0 and item.HasField("face_crop")
    assert gateway_b.forget("carol") == 1  # what it named is unchanged


class Noted:
    """A cursor that runs everything through the real one and stops the transaction right after
    the first statement starting with `statement` until `release` is set (its locks held, not
    committed): another gateway's call can then be made to meet it there."""

    def __init__(self, cursor, statement: str, reached: threading.Event, release: threading.Event) -> None:
        self._cursor, self._statement, self._reached, self._release = cursor, statement, reached, release

    def execute(self, sql: str, *args):
        result = self._cursor.execute(sql, *args)
        if sql.startswith(self._statement) and not self._reached.is_set():
            self._reached.set()
            self._release.wait(10)
        return result

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)


@contextlib.contextmanager
def paused(queue: ReviewQueue, statement: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """(reached, release): `queue`'s transactions stop after `statement` once, until released."""
    reached, release = threading.Event(), threading.Event()
    transaction = queue._transaction

    @contextlib.contextmanager
    def noted(*args, **kwargs):
        with transaction(*args, **kwargs) as cursor:
            yield Noted(cursor, statement, reached, release)

    queue._transaction = noted  # type: ignore[method-assign]
    try:
        yield reached, release
    finally:
        release.set()


def test__a_review_queued_while_another_gateway_erases_the_person_does_not_survive_the_erasure(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()

    with ThreadPoolExecutor(2) as pool, paused(gateway_a, "INSERT INTO reviews") as (reached, release):
        adding = pool.submit(gateway_a.add, decision(1), evidence())  # names alice; not committed yet
        assert reached.wait(10)
        erasing = pool.submit(gateway_b.forget, "alice")
        time.sleep(0.3)
        release.set()
        adding.result(20)
        erased = erasing.result(20)

    assert erased == 1 and gateway_b.items(include_answered=True) == []


def test__an_answer_given_while_another_gateway_erases_the_person_does_not_bring_them_back(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(stranger(3), evidence(candidates=(("carol", "Carol", 0.5),)))

    with ThreadPoolExecutor(2) as pool, paused(gateway_a, "UPDATE reviews SET verdict") as (reached, release):
        answering = pool.submit(gateway_a.answer, "d3", IS, "alice", "", "operator")  # "this is alice"
        assert reached.wait(10)
        erasing = pool.submit(gateway_b.forget, "alice")
        time.sleep(0.3)
        release.set()
        answering.result(20)
        erased = erasing.result(20)

    assert erased == 1 and gateway_b.item("d3") is None


def test__an_erasure_meeting_another_calls_expiry_neither_deadlocks_nor_fails(open_queue, stored):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())  # open; names alice
    gateway_a.add(decision(2), evidence())  # past the retention period (below); names alice too
    stored("UPDATE reviews SET queued_ns = 1 WHERE decision_id = 'd2' RETURNING decision_id")
    expiry = gateway_a._sql(gateway_a.expire_sql)

    with ThreadPoolExecutor(2) as pool, paused(gateway_a, expiry) as (reached, release):
        answering = pool.submit(gateway_a.answer, "d1", UNKNOWN, "", "", "operator")  # A's expiry holds d2
        assert reached.wait(10)
        erasing = pool.submit(gateway_b.forget, "alice")  # deletes d1, meets d2
        time.sleep(0.5)
        release.set()
        with contextlib.suppress(ReviewError):  # erased first: "no longer queued"
            answering.result(20)
        erased = erasing.result(20)  # not ReviewStoreError("deadlock detected")

    assert erased >= 1 and gateway_b.items(include_answered=True) == []


def test__a_template_step_left_by_a_gateway_that_stopped_may_be_claimed_again_once_stale(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())
    gateway_a.answer("d1", IS, "alice", "", who="operator")

    first = gateway_a.claim_template("d1", stale_after=0.3)  # then A's pod is killed
    refused = gateway_b.claim_template("d1", stale_after=0.3)
    time.sleep(0.5)
    second = gateway_b.claim_template("d1", stale_after=0.3)

    assert first and not refused and second
    gateway_a.release_template("d1", first)  # a late release of the stale claim frees nothing
    assert not gateway_a.renew_template_claim("d1", first)  # nor may it go on to enrol
    assert not gateway_a.claim_template("d1", stale_after=60)
    renewed = gateway_b.renew_template_claim("d1", second)
    assert renewed and not gateway_a.claim_template("d1", stale_after=0.3)
    gateway_b.template_added("d1")
    time.sleep(0.5)
    assert not gateway_a.claim_template("d1", stale_after=0.3)  # done is done, however old


def test__not_x_drops_the_embedding_with_the_crop_and_the_template_step_is_claimed_once(open_queue):
    queue = open_queue()
    queue.add(decision(1), evidence())
    queue.add(decision(2), evidence())

    queue.answer("d1", IS_NOT, "alice", "", "operator")
    queue.answer("d2", IS, "alice", "", "operator")

    assert queue.embedding("d1") is None and queue.embedding("d2") is not None
    claim = queue.claim_template("d2")
    assert claim and not queue.claim_template("d2")  # a second, concurrent step is refused
    queue.release_template("d2", claim)  # the step failed: it may be tried again
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


def test__a_queue_from_before_schema_versions_is_brought_up_to_date_and_keeps_its_items(tmp_path, monkeypatch):
    with monkeypatch.context() as first_gateways:  # the schema as the first gateways wrote it, no versions table
        first_gateways.setattr(review_queue, "MIGRATIONS", MIGRATIONS[:1])
        first_gateways.setattr(ReviewQueue, "_erased", lambda self, cursor: set())  # had no erasure memory
        SqliteReviewQueue(tmp_path / "review.db", DAY).add(decision(1), evidence())
    with contextlib.closing(sqlite3.connect(tmp_path / "review.db")) as db:
        db.execute("DROP TABLE review_schema_migrations")
        db.commit()

    queue = SqliteReviewQueue(tmp_path / "review.db", DAY)

    assert queue.schema_version() == MIGRATIONS_NEWEST
    assert [i.decision for i in queue.items()] == [decision(1)]


def test__a_queue_at_the_first_schema_version_is_brought_up_to_date_and_keeps_its_items_and_steps(
        open_queue, monkeypatch):
    with monkeypatch.context() as older_gateway:
        older_gateway.setattr(review_queue, "MIGRATIONS", MIGRATIONS[:1])
        older_gateway.setattr(ReviewQueue, "_erased", lambda self, cursor: set())  # had no erasure memory
        old = open_queue()
        old.add(decision(1), evidence())
        old.answer("d1", IS, "alice", "", "operator")
        assert old.schema_version() == 1
        old.close()

    queue = open_queue()

    assert queue.schema_version() == MIGRATIONS_NEWEST
    assert [i.decision for i in queue.items(include_answered=True)] == [decision(1)]
    assert queue.claim_template("d1") and queue.forget("bob") == 1


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


@pytest.mark.parametrize(("audit_db", "review_db", "said"), [
    ("POSTGRESQL://gw:S3CRET@db/x", "", r"--audit-db POSTGRESQL://\.\.\.: .*lower case"),  # not a file "POSTGRESQL:"
    ("/data/audit.db", "Postgres://gw:S3CRET@db/x", r"--review-db Postgres://\.\.\.: .*lower case"),
    ("mysql://gw:S3CRET@db/x", "", r"--audit-db mysql://\.\.\.: the audit log is a SQLite file path or a "
                                   "postgresql:// URL"),
    ("host=db user=gw password=S3CRET", "", "--audit-db is a libpq keyword string"),
    (SHARED, "host=db dbname=reviews password=S3CRET", "--review-db is a libpq keyword string"),
    ("gw:S3CRET@db://x", "", r"--audit-db \(not a URL scheme\)://\.\.\."),
])
def test__a_database_flag_that_is_neither_a_file_nor_a_postgresql_url_is_refused_without_its_password(
        audit_db, review_db, said):
    from services.gateway.server import review_target

    with pytest.raises(ValueError, match=said) as refused:
        review_target(audit_db, review_db)

    assert "S3CRET" not in str(refused.value)


def test__a_review_queue_that_cannot_be_opened_closes_the_audit_log_opened_before_it(tmp_path, monkeypatch):
    from services.gateway import server

    opened: list[audit.AuditLog] = []

    def open_log(target: str) -> audit.AuditLog:
        opened.append(audit.open_audit_log(target))
        return opened[-1]

    monkeypatch.setattr(server, "open_audit_log", open_log)
    (tmp_path / "reviews.db").mkdir()  # no SQLite file can be opened there
    gateway = server.GatewayServicer(server.GatewayServiceSettings(
        insecure=True, audit_db=str(tmp_path / "audit.db"), review_db=str(tmp_path / "reviews.db")))

    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(gateway.start())

    [log] = opened
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        log.count()


# -- database URLs in messages --------------------------------------------------------------------

@pytest.mark.parametrize(("target", "shown"), [
    ("postgresql://gw:S3CRET@db:5432/facegate?sslmode=verify-full",
     "postgresql://gw:***@db:5432/facegate?sslmode=verify-full"),
    ("postgresql://gw@db/facegate", "postgresql://gw@db/facegate"),  # no password: nothing to hide
    ("postgresql://db/facegate?user=gw&password=S3CRET&sslmode=require",
     "postgresql://db/facegate?user=gw&password=***&sslmode=require"),
    ("postgres://gw:S3%ZZCRET@db/x", "postgres://gw:***@db/x"),  # malformed, still hidden
    ("postgresql://gw:S3CRET@[::1/facegate", "postgresql://gw:***@[::1/facegate"),
    ("postgresql://gw:S3/CR@ET@db/x", "postgresql://gw:***@db/x"),  # unencoded "/" and "@" in it
    ("host=db user=gw password=S3CRET dbname=x", "host=db user=gw password=*** dbname=x"),
    ("host=db password = 'S3 CRET' dbname=x", "host=db password = *** dbname=x"),
    ("/var/lib/facegate/audit.db", "/var/lib/facegate/audit.db"),
])
def test__a_database_target_is_shown_without_its_password(target, shown):
    from services.core.redaction import without_password

    assert without_password(target) == shown


def test__a_message_repeating_a_password_or_a_part_of_its_target_is_shown_without_it():
    from services.core.redaction import without_password

    target = "postgresql://gw:S3%ZZCRET@db/x"

    assert without_password(target, 'invalid percent-encoded token: "S3%ZZCRET"') == \
        'invalid percent-encoded token: "***"'
    assert without_password(target, f'bad URI: "{target}"') == 'bad URI: "postgresql://gw:***@db/x"'


@pytest.mark.parametrize("url", ["postgresql://gw:S3%ZZCRET@db/facegate", "postgresql://gw:S3CRET@[::1/facegate",
                                 "postgresql://gw:S3CRET@db/facegate?bogus=1"])
@pytest.mark.parametrize("store", ["reviews", "audit"])
def test__a_malformed_postgresql_url_is_refused_by_either_store_without_its_password(url, store):
    opened = (lambda: open_review_queue(url, DAY)) if store == "reviews" else (lambda: audit.open_audit_log(url))

    with pytest.raises((ReviewStoreError, audit.AuditError), match=r"PostgreSQL.*gw:\*\*\*@") as refused:
        opened()

    assert "S3" not in str(refused.value) and "S3" not in repr(refused.value.__cause__)


# -- the gateway's use of the queue ---------------------------------------------------------------

class Peer:
    """A servicer context as far as the admin log needs one (the caller, on a plaintext server)."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"


class Matcher:
    """The gateway's backends as the template step uses them: enrolments counted, or failing."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.enrolled, self.failure = 0, failure

    async def enroll(self, request):
        from services.contracts.v1 import matcher_pb2

        if self.failure is not None:
            raise self.failure
        self.enrolled += 1
        return matcher_pb2.EnrollResponse(templates_added=len(request.embeddings))


def gateway_on(queue: ReviewQueue, backends) -> tuple:
    """A started gateway's servicer as far as its review RPCs go (an admin log in memory); (servicer, log)."""
    from services.gateway.server import GatewayServicer, GatewayServiceSettings, Running

    servicer = GatewayServicer(GatewayServiceSettings(insecure=True))
    log = audit.SqliteAuditLog(":memory:")
    servicer._running = Running(backends=backends, audit=log, detect=None, embed=None, reviews=queue,
                                model=common_pb2.ModelInfo(model_id="m", model_version="1"))
    return servicer, log


class FailingStore(SqliteReviewQueue):
    """A queue whose template bookkeeping fails as a store that went away would."""

    failing = ("template_added",)

    def template_added(self, decision_id: str) -> None:
        if "template_added" in self.failing:
            raise ReviewStoreError("review queue (test): server closed the connection unexpectedly")
        super().template_added(decision_id)

    def release_template(self, decision_id: str, claim: int) -> None:
        if "release_template" in self.failing:
            raise ReviewStoreError("review queue (test): server closed the connection unexpectedly")
        super().release_template(decision_id, claim)


def answered_is(queue: ReviewQueue) -> None:
    queue.add(decision(1), evidence())
    queue.answer("d1", IS, "alice", "", who="operator")


def test__a_template_enrolled_whose_step_cannot_be_marked_done_is_not_enrolled_again(tmp_path):
    from services.core.errors import FailedPrecondition

    queue = FailingStore(tmp_path / "review.db", DAY)
    answered_is(queue)
    matcher = Matcher()
    servicer, log = gateway_on(queue, matcher)
    request = gateway_pb2.AddReviewTemplateRequest(decision_id="d1")

    added = asyncio.run(servicer.AddReviewTemplate(request, Peer()))  # the face is a template: that is the answer
    with pytest.raises(FailedPrecondition, match="already"):
        asyncio.run(servicer.AddReviewTemplate(request, Peer()))  # a retry, or a second click

    assert added.templates_added == 1 and matcher.enrolled == 1
    [action] = log.admin_actions()
    assert action.action == "add_templates" and "result: 1 templates added" in action.detail


def test__a_failed_template_step_reports_its_own_error_even_when_the_claim_cannot_be_released(tmp_path):
    from services.core.errors import Unavailable
    from services.gateway.backends import BackendError

    queue = FailingStore(tmp_path / "review.db", DAY)
    queue.failing = ("release_template",)
    answered_is(queue)
    servicer, log = gateway_on(queue, Matcher(BackendError("matcher", grpc.StatusCode.UNAVAILABLE, "gone")))

    with pytest.raises(Unavailable, match="cannot add the template now: matcher UNAVAILABLE"):
        asyncio.run(servicer.AddReviewTemplate(gateway_pb2.AddReviewTemplateRequest(decision_id="d1"), Peer()))

    [action] = log.admin_actions()
    assert "result: failed: matcher UNAVAILABLE" in action.detail


def test__a_decision_is_published_before_its_review_is_queued(tmp_path):
    """A slow review store never holds a door's decision up: watchers and door controllers hear
    it first (it is in the audit log already)."""
    writing, done = threading.Event(), threading.Event()

    class SlowStore(SqliteReviewQueue):
        def add(self, decision: gateway_pb2.Decision, evidence: Evidence) -> bool:
            writing.set()
            done.wait(10)
            return super().add(decision, evidence)

    queue = SlowStore(tmp_path / "review.db", DAY)
    servicer, log = gateway_on(queue, Matcher())
    servicer._evidence["d1"] = ("lobby", evidence())

    async def scenario() -> gateway_pb2.Decision | None | str:
        watcher = servicer._hub.subscribe()
        publishing = asyncio.create_task(servicer._publish([decision(1)]))
        try:
            return await asyncio.wait_for(watcher.get(), 5)  # while the review store is still busy
        finally:
            done.set()
            await publishing

    heard = asyncio.run(scenario())

    assert heard == decision(1) and writing.is_set()
    assert [d.decision_id for d in log.query(audit.EventQuery())] == ["d1"]
    assert [i.decision.decision_id for i in queue.items()] == ["d1"]
