"""The review queue on a real PostgreSQL server: every behaviour of the SQLite queue (the tests of
tests/unit/test_review_queue.py written against `open_queue`, run again here), and what only a
shared queue must do: two gateways ("replicas") on one queue see the same items, an item is
answered once and a template step claimed once across them, an erasure on one holds for both,
beside the audit log in one database, and a server that goes away and comes back."""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable

import psycopg
import pytest

from services.gateway.audit import open_audit_log
from services.gateway.review_postgres import PostgresReviewQueue
from services.gateway.review_queue import ReviewError, ReviewQueue, ReviewStoreError, open_review_queue
from tests.unit import test_review_queue as spec
from tests.unit.test_review_queue import DAY, IS, IS_NOT, UNKNOWN, decision, evidence, pending

# every test of the SQLite queue's specification that runs on any engine, on PostgreSQL (the
# fixtures below replace its own); those about the SQLite file itself stay there
globals().update({name: test for name, test in vars(spec).items()
                  if name.startswith("test__") and "open_queue" in inspect.signature(test).parameters})


@pytest.fixture
def database(postgres) -> str:
    """A database of the test's own on the session's server; its URI."""
    return postgres.create_database(f"reviews_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def open_queue(database) -> Callable[..., ReviewQueue]:
    """Opens a queue on the test's database: each call is another gateway on the same queue."""
    return lambda retention=DAY: open_review_queue(database, retention)


@pytest.fixture
def stored(database) -> Callable[[str], list[tuple]]:
    def query(sql: str) -> list[tuple]:
        with psycopg.connect(database) as db:
            return db.execute(sql).fetchall()

    return query


def test__a_postgresql_uri_opens_the_shared_queue_beside_the_audit_log_in_one_database(database, stored):
    log = open_audit_log(database)
    queue = open_review_queue(database, DAY)
    queue.add(decision(1), evidence())
    log.record([decision(1)])

    assert isinstance(queue, PostgresReviewQueue)
    assert queue.schema_version() == spec.MIGRATIONS_NEWEST and log.schema_version() >= 1  # versions of their own
    assert [i.decision.decision_id for i in queue.items()] == ["d1"] and log.count() == 1
    assert {"reviews", "review_schema_migrations", "decisions", "schema_migrations"} <= {
        name for (name,) in stored("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test__an_item_queued_on_one_gateway_is_listed_and_answered_on_the_other(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())

    listed = [i.decision.decision_id for i in gateway_b.items()]
    gateway_b.answer("d1", IS, "alice", "seen at the desk", who="operator")

    answered = gateway_a.item("d1")
    assert listed == ["d1"] and gateway_a.items() == []
    assert answered is not None and (answered.verdict, answered.answered_by) == (IS, "operator")
    assert answered.HasField("face_crop") and gateway_a.embedding("d1") == evidence().embedding  # for the template
    with pytest.raises(ReviewError, match="already answered"):
        gateway_a.answer("d1", IS_NOT, "alice", "", who="someone else")


def test__two_gateways_answering_the_same_items_at_once_one_answer_wins_each_time(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    items = 20
    for n in range(items):
        gateway_a.add(decision(n), evidence())
    outcomes: dict[str, list[str]] = {f"d{n}": [] for n in range(items)}
    start = threading.Barrier(2)

    def answer_all(queue: ReviewQueue, who: str) -> None:
        start.wait()
        for n in range(items):
            try:
                queue.answer(f"d{n}", UNKNOWN, "", "", who=who)
                outcomes[f"d{n}"].append(who)
            except ReviewError:
                outcomes[f"d{n}"].append("refused")

    threads = [threading.Thread(target=answer_all, args=(queue, who))
               for queue, who in ((gateway_a, "a"), (gateway_b, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for decision_id, said in outcomes.items():
        assert sorted(said) in (["a", "refused"], ["b", "refused"]), (decision_id, said)
        winner = next(who for who in said if who != "refused")
        item = gateway_b.item(decision_id)
        assert item is not None and item.answered_by == winner
    assert pending() == 0


def test__a_template_step_claimed_on_one_gateway_is_refused_on_the_other_until_released(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())
    gateway_a.answer("d1", IS, "alice", "", who="operator")

    claim = gateway_a.claim_template("d1")
    assert claim and not gateway_b.claim_template("d1")
    gateway_a.release_template("d1", claim)  # the step failed on A
    assert gateway_b.claim_template("d1") and not gateway_a.claim_template("d1")
    gateway_b.template_added("d1")

    done = gateway_a.item("d1")
    assert done is not None and done.template_added and not done.HasField("face_crop")
    assert gateway_a.embedding("d1") is None and not gateway_a.claim_template("d1")


def test__claims_racing_on_two_gateways_hold_once(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    items = 20
    for n in range(items):
        gateway_a.add(decision(n), evidence())
        gateway_a.answer(f"d{n}", IS, "alice", "", who="operator")
    claimed: dict[str, list[bool]] = {f"d{n}": [] for n in range(items)}
    start = threading.Barrier(2)

    def claim_all(queue: ReviewQueue) -> None:
        start.wait()
        for n in range(items):
            claimed[f"d{n}"].append(bool(queue.claim_template(f"d{n}")))

    threads = [threading.Thread(target=claim_all, args=(queue,)) for queue in (gateway_a, gateway_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(sorted(said) == [False, True] for said in claimed.values()), claimed


def test__an_erasure_on_one_gateway_deletes_the_items_for_every_gateway_and_the_space_is_vacuumed(
        open_queue, stored):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())  # names alice and bob
    gateway_b.add(decision(2), evidence(candidates=(("carol", "Carol", 0.5),)))  # alice
    stranger = decision(3)
    stranger.identity_id = ""
    gateway_b.add(stranger, evidence(candidates=()))

    erased = gateway_b.forget("alice")

    assert erased == 2
    assert [i.decision.decision_id for i in gateway_a.items(include_answered=True)] == ["d3"]
    assert gateway_a.item("d1") is None and gateway_a.embedding("d1") is None
    with pytest.raises(ReviewError):
        gateway_a.answer("d1", UNKNOWN, "", "", who="operator")
    assert stored("SELECT decision_id FROM reviews") == [("d3",)]
    [(vacuumed,)] = stored("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'reviews'")
    assert vacuumed  # the erased rows' space is free for later rows, not at autovacuum's next turn


def test__every_gateway_reports_the_whole_shared_backlog(open_queue):
    gateway_a, gateway_b = open_queue(), open_queue()
    gateway_a.add(decision(1), evidence())
    gateway_a.add(decision(2), evidence())

    gateway_b.expire()  # B's sweep: it counts what A queued
    seen_by_b = pending()
    gateway_b.answer("d1", UNKNOWN, "", "", who="operator")
    gateway_a.expire()

    assert seen_by_b == 2 and pending() == 1


def test__the_review_table_is_vacuumed_often_for_the_crops_it_deletes(database, stored):
    open_review_queue(database, DAY).close()

    [(options,)] = stored("SELECT reloptions FROM pg_class WHERE relname = 'reviews'")
    [(toast_options,)] = stored("SELECT t.reloptions FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid "
                                "WHERE c.relname = 'reviews'")

    assert "autovacuum_vacuum_scale_factor=0" in options and "autovacuum_vacuum_threshold=50" in options
    assert "autovacuum_vacuum_scale_factor=0" in toast_options


def test__gateways_opening_one_new_queue_at_once_create_it_once(database):
    opened: list[ReviewQueue] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(open_review_queue(database, DAY))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and len(opened) == 4
    assert {queue.schema_version() for queue in opened} == {spec.MIGRATIONS_NEWEST}


def test__a_queue_written_by_a_newer_facegate_is_refused_with_what_to_do(database):
    open_review_queue(database, DAY).close()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("INSERT INTO review_schema_migrations VALUES (99, 0)")

    with pytest.raises(ReviewStoreError, match="schema version 99"):
        open_review_queue(database, DAY)


def test__the_queue_fails_while_the_server_is_down_and_works_again_when_it_is_back(postgres):
    url = postgres.create_database(f"reviews_{uuid.uuid4().hex[:12]}")
    queue = open_review_queue(url, DAY)
    queue.add(decision(1), evidence())

    postgres.crash()
    try:
        with pytest.raises(ReviewStoreError, match="PostgreSQL"):
            queue.add(decision(2), evidence())
        with pytest.raises(ReviewStoreError, match="PostgreSQL"):
            queue.items()
    finally:
        postgres.restart()
    queue.add(decision(3), evidence())

    assert [i.decision.decision_id for i in queue.items()] == ["d1", "d3"]  # d2 was refused, not half-kept


def test__the_first_calls_after_the_server_restarted_while_the_queue_was_idle_succeed(postgres):
    """Every gateway's idle connection is broken by a restart: the first call notices it at its
    BEGIN (nothing of it sent) and runs on a new connection, so no crop is lost to it."""
    url = postgres.create_database(f"reviews_{uuid.uuid4().hex[:12]}")
    gateway_a, gateway_b = open_review_queue(url, DAY), open_review_queue(url, DAY)
    gateway_a.add(decision(1), evidence())
    gateway_b.items()

    postgres.crash()
    postgres.restart()

    assert gateway_a.add(decision(2), evidence())
    gateway_b.answer("d1", UNKNOWN, "", "", who="operator")
    assert [i.decision.decision_id for i in gateway_a.items()] == ["d2"]


def test__an_erasure_vacuums_on_a_connection_of_its_own_without_holding_the_queue(open_queue, monkeypatch):
    queue = open_queue()
    queue.add(decision(1), evidence())
    vacuums: list[tuple[bool, bool]] = []  # (on the queue's connection, under the queue's lock)
    execute = psycopg.Connection.execute

    def noted(self, query, *args, **kwargs):
        if str(query).startswith("VACUUM"):
            vacuums.append((self is queue._db, queue._lock.locked()))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", noted)

    assert queue.forget("alice") == 1
    assert vacuums == [(False, False)]
