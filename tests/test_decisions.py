"""How the gateway turns a matcher result into an outcome."""

from __future__ import annotations

from facegate.v1 import common_pb2, gateway_pb2, matcher_pb2
from services.gateway.decisions import decide, error_decision

Outcome = gateway_pb2.Decision.Outcome
FRAME = gateway_pb2.CameraFrame(door_id="lobby", sequence=7)
FACE = common_pb2.Face(score=0.99)


def result(unknown: bool, ambiguous: bool = False) -> matcher_pb2.IdentifyResult:
    return matcher_pb2.IdentifyResult(unknown=unknown, ambiguous=ambiguous, threshold=0.37, candidates=[
        matcher_pb2.Candidate(identity_id="alice", display_name="Alice", distance=0.30),
        matcher_pb2.Candidate(identity_id="bob", display_name="Bob", distance=0.33),
    ])


def test__a_match_within_threshold_is_granted_to_that_person():
    decision = decide(FRAME, "hq", FACE, result(unknown=False), "m@1")

    assert decision.outcome == Outcome.OUTCOME_GRANTED and decision.identity_id == "alice"
    assert decision.door_id == "lobby" and decision.site == "hq" and decision.frame_sequence == 7


def test__an_ambiguous_match_goes_to_review_naming_both_people():
    decision = decide(FRAME, "hq", FACE, result(unknown=True, ambiguous=True), "m@1")

    assert decision.outcome == Outcome.OUTCOME_REVIEW
    assert "alice" in decision.reason and "bob" in decision.reason


def test__no_match_is_denied_as_unknown_and_a_backend_failure_keeps_the_door_locked():
    assert decide(FRAME, "hq", FACE, result(unknown=True), "m@1").outcome == Outcome.OUTCOME_DENIED_UNKNOWN
    failed = error_decision(FRAME, "hq", "embedder UNAVAILABLE: connection refused")
    assert failed.outcome == Outcome.OUTCOME_ERROR and "door stays locked" in failed.reason
