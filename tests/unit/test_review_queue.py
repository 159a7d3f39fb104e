"""The review queue: decisions waiting for a person's judgment, and face crops kept no longer than needed."""

from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from services.contracts.v1 import common_pb2, gateway_pb2
from services.core import ndarray
from services.gateway.review_queue import Evidence, ReviewError, ReviewQueue

Outcome = gateway_pb2.Decision.Outcome
IS, IS_NOT = gateway_pb2.REVIEW_VERDICT_IS, gateway_pb2.REVIEW_VERDICT_IS_NOT
UNKNOWN = gateway_pb2.REVIEW_VERDICT_UNKNOWN
DAY = 24 * 3600.0


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


def test__an_item_comes_back_with_its_decision_a_jpeg_crop_and_its_candidates():
    queue = ReviewQueue(":memory:", retention=DAY)

    queue.add(decision(1), evidence())

    [item] = queue.items()
    assert item.decision == decision(1) and item.face_quality == pytest.approx(0.8)
    assert item.face_crop.encoding == common_pb2.NDArray.ENCODING_JPEG
    assert np.abs(ndarray.decode(item.face_crop).astype(int) - face_crop()).max() < 8
    assert [(c.identity_id, c.display_name) for c in item.candidates] == [("alice", "Alice"), ("bob", "Bob")]
    assert [c.distance for c in item.candidates] == pytest.approx([0.41, 0.52])
    assert item.verdict == gateway_pb2.REVIEW_VERDICT_UNSPECIFIED and not item.HasField("answered_at")


def test__open_items_come_oldest_first():
    queue = ReviewQueue(":memory:", retention=DAY)

    for n in (3, 1, 2):
        queue.add(decision(n), evidence(n))

    assert [i.decision.decision_id for i in queue.items()] == ["d3", "d1", "d2"]
    assert [i.decision.decision_id for i in queue.items(limit=2)] == ["d3", "d1"]


def test__an_item_expires_a_retention_period_after_it_was_queued():
    queue = ReviewQueue(":memory:", retention=3600)
    before = time.time_ns()

    queue.add(decision(1), evidence())

    expires = queue.items()[0].expires_at.ToNanoseconds()
    assert before + 3600 * 10**9 <= expires <= time.time_ns() + 3600 * 10**9


def test__an_answered_item_leaves_the_open_list_and_records_the_answer():
    queue = ReviewQueue(":memory:", retention=DAY)
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
def test__an_answer_other_than_this_is_x_deletes_the_crop_at_once(verdict):
    queue = ReviewQueue(":memory:", retention=DAY)
    queue.add(decision(1), evidence())

    queue.answer("d1", verdict, "", "", who="bob")

    item = queue.item("d1")
    assert item is not None and not item.HasField("face_crop")


def test__this_is_x_keeps_the_crop_until_the_template_step_is_done(tmp_path):
    queue = ReviewQueue(tmp_path / "review.db", retention=DAY)
    queue.add(decision(1), evidence())

    queue.answer("d1", IS, "alice", "", who="bob")
    kept = queue.item("d1")
    queue.template_added("d1")

    assert kept is not None and kept.HasField("face_crop") and not kept.template_added
    done = queue.item("d1")
    assert done is not None and done.template_added and not done.HasField("face_crop")
    with sqlite3.connect(tmp_path / "review.db") as db:
        assert db.execute("SELECT crop FROM reviews").fetchall() == [(None,)]


@pytest.mark.parametrize("decision_id", ["d1", "never-queued"])
def test__an_item_is_answered_once(decision_id):
    queue = ReviewQueue(":memory:", retention=DAY)
    queue.add(decision(1), evidence())
    queue.answer("d1", UNKNOWN, "", "", who="bob")

    with pytest.raises(ReviewError, match=f"review '{decision_id}' is already answered or no longer queued"):
        queue.answer(decision_id, IS, "alice", "", who="mallory")

    item = queue.item("d1")
    assert item is not None and (item.verdict, item.answered_by) == (UNKNOWN, "bob")


def test__an_item_past_the_retention_period_is_deleted_from_the_file(tmp_path):
    queue = ReviewQueue(tmp_path / "review.db", retention=0.05)
    queue.add(decision(1), evidence())

    time.sleep(0.1)

    assert queue.items() == [] and queue.item("d1") is None
    assert queue.open_embeddings() == []
    with sqlite3.connect(tmp_path / "review.db") as db:
        assert db.execute("SELECT COUNT(*) FROM reviews").fetchone() == (0,)


def test__open_embeddings_are_those_of_the_sites_unanswered_items_oldest_first():
    queue = ReviewQueue(":memory:", retention=DAY)
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


def test__items_can_be_listed_by_site():
    queue = ReviewQueue(":memory:", retention=DAY)
    queue.add(decision(1, "hq"), evidence())
    queue.add(decision(2, "branch"), evidence())

    assert [i.decision.decision_id for i in queue.items(site="branch")] == ["d2"]


def test__the_same_decision_queued_twice_is_one_item_with_its_first_evidence():
    queue = ReviewQueue(":memory:", retention=DAY)

    queue.add(decision(1), evidence(1))
    queue.add(decision(1), evidence(2, candidates=()))

    [item] = queue.items()
    assert len(item.candidates) == 2 and queue.embedding("d1") == evidence(1).embedding


def test__open_items_survive_a_restart(tmp_path):
    queue = ReviewQueue(tmp_path / "review.db", retention=DAY)
    queue.add(decision(1), evidence())
    queue.close()

    reopened = ReviewQueue(tmp_path / "review.db", retention=DAY)

    assert [i.decision for i in reopened.items()] == [decision(1)]


def test__an_erasure_deletes_every_item_naming_the_person_as_match_candidate_or_answer():
    queue = ReviewQueue(":memory:", retention=DAY)
    queue.add(decision(1), evidence())  # alice matched, bob a candidate
    queue.add(decision(2), evidence(candidates=(("carol", "Carol", 0.5),)))  # alice matched
    stranger = gateway_pb2.Decision(decision_id="d3", site="hq", outcome=Outcome.OUTCOME_REVIEW)
    queue.add(stranger, evidence(candidates=()))
    queue.answer("d3", IS, "dave", "", "operator")  # dave named only by the answer

    assert queue.forget("bob") == 1
    assert queue.forget("dave") == 1
    assert queue.forget("alice") == 1  # d2 (d1 went with bob)
    assert queue.items(include_answered=True) == []


def test__a_partial_id_is_not_a_match_for_an_erasure():
    queue = ReviewQueue(":memory:", retention=DAY)
    queue.add(decision(1), evidence(candidates=(("bobby", "Bobby", 0.5),)))

    assert queue.forget("bob") == 0 and queue.forget("lice") == 0
    assert len(queue.items()) == 1


def test__not_x_drops_the_embedding_with_the_crop_and_the_template_step_is_claimed_once():
    queue = ReviewQueue(":memory:", retention=DAY)
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
