"""Which draft searches stand (services/gateway/drafts.py): a draft's result is used only where
every distance a decision compares lies farther than the card's margin from its threshold; the
rest are embedded again in full."""

from __future__ import annotations

from services.contracts.v1 import matcher_pb2
from services.gateway.drafts import settled

MARGIN, SAME_FACE, GAP, TOP_K = 0.05, 0.42, 0.08, 3


def result(*distances: float, threshold: float = 0.37) -> matcher_pb2.IdentifyResult:
    return matcher_pb2.IdentifyResult(threshold=threshold, candidates=[
        matcher_pb2.Candidate(identity_id=f"person-{i}", distance=d) for i, d in enumerate(distances)])


def stands(found: matcher_pb2.IdentifyResult, flagged: bool = False) -> bool:
    return settled(found, MARGIN, SAME_FACE, GAP, TOP_K, flagged)


def test__a_clear_match_and_a_clear_stranger_stand():
    assert stands(result(0.25, 0.62))
    assert stands(result(0.58, 0.61, 0.66))


def test__a_nearest_distance_within_the_margin_of_the_threshold_is_embedded_again_either_side():
    assert not stands(result(0.33, 0.7))
    assert not stands(result(0.41, 0.7))


def test__a_distance_near_the_liveness_checks_same_face_distance_is_embedded_again():
    assert not stands(result(0.45, 0.7))


def test__a_runner_up_near_the_threshold_is_embedded_again():
    assert not stands(result(0.2, 0.35, 0.8))


def test__a_match_whose_runner_up_sits_near_the_ambiguity_gaps_edge_is_embedded_again():
    assert not stands(result(0.2, 0.29, 0.8, threshold=0.5))  # 0.09 apart: the gap is 0.08, each may move 0.05
    assert not stands(result(0.1, 0.25, 0.8, threshold=0.5))  # 0.15 apart: still within 2 x 0.05 of the edge
    assert stands(result(0.1, 0.35, 0.8, threshold=0.5))  # 0.25 apart: ambiguous neither way


def test__when_every_candidate_asked_for_came_back_the_last_must_be_clear_of_every_threshold():
    assert not stands(result(0.1, 0.3, 0.31))  # a fourth, not returned, could be near 0.37
    assert stands(result(0.1, 0.3))  # fewer than asked for: the gallery holds no one else


def test__an_empty_gallery_stands_and_a_probe_with_capture_flags_never_does():
    assert stands(result())
    assert not stands(result(0.58, 0.61), flagged=True)
