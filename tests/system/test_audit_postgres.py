"""The audit log on a real PostgreSQL server: every behaviour of the SQLite log (the tests of
tests/unit/test_audit.py, run again here), and what only a shared log must do: several gateways
writing and reading one log, an erasure on one gateway holding for decisions recorded on
another, and a server that goes away and comes back."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

from services.gateway.audit import AuditError, AuditLog, EventQuery, open_audit_log
from services.gateway.audit_postgres import PostgresAuditLog
from tests.unit import test_audit as spec
from tests.unit.test_audit import decision

# every test of the SQLite log's specification, on PostgreSQL (`open_log` below replaces its fixture)
globals().update({name: test for name, test in vars(spec).items() if name.startswith("test__")})


@pytest.fixture
def database(postgres) -> str:
    """A database of the test's own on the session's server; its URI."""
    return postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def open_log(database) -> Callable[[], AuditLog]:
    return lambda: open_audit_log(database)


def test__a_postgresql_uri_opens_the_shared_log_and_the_schema_is_at_its_newest_version(database):
    log = open_audit_log(database)

    assert isinstance(log, PostgresAuditLog)
    assert log.schema_version() == spec.MIGRATIONS_NEWEST


def test__two_gateways_on_one_log_see_each_others_decisions_and_admin_actions(database):
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)

    gateway_a.record([decision(1, "lobby")])
    gateway_b.record([decision(2, "garage")])
    gateway_b.finish_admin(gateway_b.record_admin("enrol_identity", "alice", "1 of 1 photos", caller="c"), "done")

    assert [d.decision_id for d in gateway_a.query(EventQuery())] == ["d2", "d1"]
    assert [d.decision_id for d in gateway_b.query(EventQuery(door_id="lobby"))] == ["d1"]
    assert [a.detail for a in gateway_a.admin_actions()] == ["1 of 1 photos; result: done"]


def test__a_decision_id_recorded_by_one_gateway_cannot_be_recorded_again_by_another(database):
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)
    gateway_a.record([decision(1)])

    with pytest.raises(AuditError, match="duplicate key"):
        gateway_b.record([decision(2), decision(1)])

    assert gateway_a.count() == 1


def test__an_erasure_on_one_gateway_pseudonymises_a_decision_recorded_just_after_on_another(database):
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)
    erasure = gateway_a.erase("alice", pseudonymise=True, detail="1 templates removed", caller="c")
    late = decision(7)
    late.display_name, late.reason = "Alice", "left before enough frames agreed ('alice' 1); needs review"

    gateway_b.record([late])

    assert (late.identity_id, late.display_name) == (erasure.pseudonym, "")
    assert gateway_a.query(EventQuery())[0].identity_id == erasure.pseudonym


def test__erasures_and_records_racing_on_two_gateways_never_leave_the_erased_id_behind(database):
    """Many decisions about alice recorded on one gateway while another erases her: whatever the
    interleaving, none is left under her id (the shared advisory lock orders them)."""
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)
    errors: list[BaseException] = []

    def keep_recording() -> None:
        try:
            for n in range(100, 160):
                gateway_b.record([decision(n)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writer = threading.Thread(target=keep_recording)
    writer.start()
    erasure = gateway_a.erase("alice", pseudonymise=True, detail="erased mid-stream", caller="c")
    writer.join()

    assert errors == []
    assert {d.identity_id for d in gateway_a.query(EventQuery(limit=1000))} == {erasure.pseudonym}


def test__the_log_fails_while_the_server_is_down_and_works_again_when_it_is_back(postgres):
    url = postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}")
    log = open_audit_log(url)
    log.record([decision(1)])

    postgres.crash()
    try:
        with pytest.raises(AuditError, match="PostgreSQL"):
            log.record([decision(2)])
    finally:
        postgres.restart()
    log.record([decision(3)])

    assert [d.decision_id for d in log.query(EventQuery())] == ["d3", "d1"]  # d2 was refused, not half-kept


def test__the_first_record_after_the_server_restarted_while_the_log_was_idle_lands(postgres):
    """The idle connection broken by a restart is noticed at the transaction's BEGIN, before
    anything of it was sent: the record runs on a new connection instead of failing (a decision
    not published, a door kept locked, for nothing)."""
    log = open_audit_log(postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}"))
    log.record([decision(1)])

    postgres.crash()
    postgres.restart()

    log.record([decision(2)])
    assert log.count() == 2


def test__a_log_written_by_a_newer_facegate_is_refused_with_what_to_do(database):
    import psycopg

    open_audit_log(database).close()
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 0)")

    with pytest.raises(AuditError, match="schema version 99"):
        open_audit_log(database)


def test__a_gateway_hears_what_the_others_record_but_not_its_own_and_skips_what_is_not_a_decision(database):
    import asyncio

    import psycopg

    mine, other = open_audit_log(database), open_audit_log(database)
    heard: list = []

    async def scenario() -> None:
        follower = asyncio.create_task(mine.follow_others(heard.append))
        await asyncio.sleep(0.5)  # listening
        with psycopg.connect(database, autocommit=True) as db:
            db.execute("SELECT pg_notify('facegate_decisions', 'someone-else:not a decision!')")
        await asyncio.to_thread(other.record, [decision(1)])
        await asyncio.to_thread(mine.record, [decision(2)])  # its own: published by itself already
        await asyncio.to_thread(other.record, [decision(3)])
        for _ in range(50):
            if len(heard) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        follower.cancel()

    asyncio.run(scenario())

    assert [d.decision_id for d in heard] == ["d1", "d3"]
    assert heard[0] == decision(1)


def test__a_door_is_held_by_one_gateway_at_a_time_and_freed_when_its_holder_lets_go_or_dies(database):
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)

    assert gateway_a.claim_door("lobby") and gateway_b.claim_door("garage")
    assert not gateway_b.claim_door("lobby") and not gateway_a.claim_door("garage")
    gateway_a.release_door("lobby")
    assert gateway_b.claim_door("lobby")
    gateway_b.close()  # as a gateway that dies: its connection goes, and its doors with it

    assert eventually(lambda: gateway_a.claim_door("lobby")) and gateway_a.claim_door("garage")


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """`check()` became true within `seconds` (the server ends a closed session's locks as its
    backend exits, a few milliseconds after the client is gone)."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test__a_door_claimed_twice_by_one_gateway_is_free_only_after_both_releases(database):
    gateway_a, gateway_b = open_audit_log(database), open_audit_log(database)

    assert gateway_a.claim_door("lobby") and gateway_a.claim_door("lobby")  # a reconnect before the release ran
    gateway_a.release_door("lobby")
    still_held = not gateway_b.claim_door("lobby")
    gateway_a.release_door("lobby")

    assert still_held and gateway_b.claim_door("lobby")


def test__after_the_server_restarts_a_gateway_takes_its_doors_again_or_learns_they_are_gone(postgres):
    url = postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}")
    gateway_a, gateway_b = open_audit_log(url), open_audit_log(url)
    assert gateway_a.claim_door("lobby") and gateway_a.claim_door("garage")

    postgres.crash()
    postgres.restart()
    taken = gateway_b.claim_door("garage")  # B gets there first for one door
    lost = gateway_a.check_doors()

    assert taken and lost == {"garage"}
    assert not gateway_b.claim_door("lobby")  # A holds lobby again


def test__a_decision_too_long_for_a_notification_is_heard_with_its_reason_cut_and_kept_whole(database):
    import asyncio

    mine, other = open_audit_log(database), open_audit_log(database)
    long = decision(1)
    long.reason = "backend said: " + "x" * 20_000
    heard: list = []

    async def scenario() -> None:
        follower = asyncio.create_task(mine.follow_others(heard.append))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(other.record, [long])
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.1)
        follower.cancel()

    asyncio.run(scenario())

    assert heard and heard[0].decision_id == "d1" and heard[0].reason.endswith("the whole reason is in the audit log)")
    assert mine.query(EventQuery())[0].reason == long.reason


def test__a_feed_that_was_interrupted_says_so_when_it_is_back(postgres):
    import asyncio

    url = postgres.create_database(f"audit_{uuid.uuid4().hex[:12]}")
    mine = open_audit_log(url)
    gaps: list[str] = []
    heard: list = []

    async def scenario() -> None:
        follower = asyncio.create_task(mine.follow_others(heard.append, gap=lambda: gaps.append("gap")))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(postgres.crash)
        await asyncio.to_thread(postgres.restart)
        for _ in range(50):
            if gaps:
                break
            await asyncio.sleep(0.1)
        other = await asyncio.to_thread(open_audit_log, url)  # a gateway that (re)connects after the restart
        await asyncio.to_thread(other.record, [decision(2)])
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.1)
        follower.cancel()

    asyncio.run(scenario())

    assert gaps == ["gap"] and [d.decision_id for d in heard] == ["d2"]
