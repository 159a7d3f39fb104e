"""The audit log keeps every decision, durably, and answers questions about them.

Written against `open_log` (SQLite here); tests/system/test_audit_postgres.py runs every test of
this module again on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.contracts.v1 import gateway_pb2
from services.gateway.audit import MIGRATIONS, AuditError, AuditLog, EventQuery, SqliteAuditLog

Outcome = gateway_pb2.Decision.Outcome
MIGRATIONS_NEWEST = MIGRATIONS[-1][0]


@pytest.fixture
def open_log(tmp_path) -> Callable[[], AuditLog]:
    """Opens the test's log (the same one each time: a reopening sees what was written)."""
    return lambda: SqliteAuditLog(tmp_path / "audit.db")


def decision(n: int, door: str = "lobby", outcome: int = Outcome.OUTCOME_GRANTED) -> gateway_pb2.Decision:
    d = gateway_pb2.Decision(decision_id=f"d{n}", door_id=door, site="hq", outcome=outcome, identity_id="alice",
                             distance=0.3, frames=2, track_id=f"{door}#{n}", reason="ok", model_key="m@1")
    d.decided_at.FromNanoseconds(n * 1_000_000_000)
    d.captured_at.FromNanoseconds(n * 1_000_000_000 - 100)
    return d


def test__decisions_survive_reopening_and_come_back_newest_first_by_door_time_and_outcome(open_log):
    log = open_log()
    log.record([decision(1), decision(2, "garage"), decision(3, outcome=Outcome.OUTCOME_DENIED_UNKNOWN)])
    log.record([decision(4)])
    log.close()

    reopened = open_log()
    lobby = reopened.query(EventQuery(door_id="lobby"))
    recent = reopened.query(EventQuery(since_ns=2_000_000_000))
    unknown = reopened.query(EventQuery(outcome="OUTCOME_DENIED_UNKNOWN"))

    assert [d.decision_id for d in lobby] == ["d4", "d3", "d1"]
    assert [d.decision_id for d in recent] == ["d4", "d3", "d2"]
    assert [d.decision_id for d in unknown] == ["d3"]
    assert lobby[-1] == decision(1)  # every field round-trips


def test__a_batch_is_written_whole_or_not_at_all(open_log):
    log = open_log()
    log.record([decision(1)])

    with pytest.raises(AuditError):
        log.record([decision(2), decision(1)])  # d1 again: the whole batch fails

    assert log.count() == 1


def test__erasure_pseudonymises_every_mention_of_the_person_and_only_of_that_person(open_log):
    log = open_log()
    mine, other = decision(1), decision(2)
    mine.identity_id, mine.display_name = "2", "Two"  # an id that is also a number in every reason
    mine.reason = "'2' in 2 of 2 frames and no other person in any, best distance 0.2 <= 0.375"
    other.reason = "frames disagree ('alice' 1, '2' 1; matched '2', 'alice'); needs review"
    log.record([mine, other, decision(3)])

    erasure = log.erase("2", pseudonymise=True, detail="3 templates removed from the gallery", caller="ipv4:x")
    kept = {d.decision_id: d for d in log.query(EventQuery())}

    p = erasure.pseudonym
    assert erasure.decisions == 2 and p.startswith("erased-") and len(p) == len("erased-") + 16
    assert (kept["d1"].identity_id, kept["d1"].display_name) == (p, "")
    assert kept["d1"].reason == f"'{p}' in 2 of 2 frames and no other person in any, best distance 0.2 <= 0.375"
    assert kept["d2"].identity_id == "alice" and kept["d2"].reason == (
        f"frames disagree ('alice' 1, '{p}' 1; matched '{p}', 'alice'); needs review")
    assert kept["d3"] == decision(3)
    assert [(a.action, a.subject, a.caller) for a in log.admin_actions()] == [("erase_identity", p, "ipv4:x")]
    assert log.admin_actions()[0].detail == "3 templates removed from the gallery; 2 past decisions pseudonymised"


def test__a_decision_about_an_erased_person_recorded_just_after_the_erasure_carries_the_pseudonym(open_log):
    log = open_log()
    erasure = log.erase("alice", pseudonymise=True, detail="1 templates removed from the gallery", caller="c")
    late = decision(4)  # a track that was being decided while the erasure ran
    late.display_name, late.reason = "Alice", "left before enough frames agreed ('alice' 1); needs review"

    log.record([late])

    assert (late.identity_id, late.display_name) == (erasure.pseudonym, "")  # what is published matches
    assert log.query(EventQuery())[0].reason == (f"left before enough frames agreed ('{erasure.pseudonym}' 1); "
                                                 "needs review")


def test__an_erasure_without_a_pseudonym_is_recorded_and_leaves_decisions_as_they_were(open_log):
    log = open_log()
    log.record([decision(1)])

    erasure = log.erase("alice", pseudonymise=False, detail="1 templates removed from the gallery", caller="c")

    assert (erasure.decisions, erasure.pseudonym) == (0, "")
    assert log.query(EventQuery()) == [decision(1)]
    assert [(a.subject, a.detail) for a in log.admin_actions()] == [
        ("alice", "1 templates removed from the gallery; past decisions keep the identity")]


def test__an_admin_action_is_on_record_before_it_is_carried_out_and_its_result_after(open_log):
    log = open_log()

    action = log.record_admin("enrol_identity", "alice", "2 of 2 photos with a face",
                             caller="spiffe://facegate/user/bob")
    pending = log.admin_actions()[0].detail
    log.finish_admin(action, "2 templates added")

    assert pending == "2 of 2 photos with a face; result: pending"
    assert [(a.action, a.subject, a.caller, a.detail) for a in log.admin_actions()] == [
        ("enrol_identity", "alice", "spiffe://facegate/user/bob",
         "2 of 2 photos with a face; result: 2 templates added")]


def test__erasing_with_a_pseudonym_renames_the_person_in_earlier_admin_actions_too(open_log):
    log = open_log()
    log.finish_admin(log.record_admin("enrol_identity", "alice", "1 of 1 photos", caller="c"), "1 templates added")

    erasure = log.erase("alice", pseudonymise=True, detail="1 templates removed from the gallery", caller="c")

    assert [a.subject for a in log.admin_actions()] == [erasure.pseudonym, erasure.pseudonym]


def test__a_log_from_before_schema_versions_is_brought_up_to_date_and_keeps_its_decisions(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "audit.db")  # the schema as the first gateways wrote it, no versions table
    old.executescript(MIGRATIONS[0][1].format(ns="INTEGER", real="REAL"))
    old.execute("INSERT INTO decisions VALUES ('d1', 1, 0, 'lobby', 'hq', 'OUTCOME_GRANTED', 'alice', '', 0.3, 2, "
                "'lobby#1', 'ok', 'm@1')")
    old.commit()
    old.close()

    log = SqliteAuditLog(tmp_path / "audit.db")

    assert log.schema_version() == MIGRATIONS_NEWEST
    assert [d.decision_id for d in log.query(EventQuery(identity_id="alice"))] == ["d1"]


def test__a_log_from_a_newer_facegate_is_refused_saying_what_to_do(tmp_path):
    import sqlite3

    SqliteAuditLog(tmp_path / "audit.db").close()
    newer = sqlite3.connect(tmp_path / "audit.db")
    newer.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    newer.commit()
    newer.close()

    with pytest.raises(AuditError, match="schema version 99"):
        SqliteAuditLog(tmp_path / "audit.db")
