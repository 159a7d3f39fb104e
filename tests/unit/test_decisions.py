"""How the gateway turns a face track's frames into one outcome, under the door's policy."""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pytest

from services.contracts.v1 import common_pb2, detector_pb2, gateway_pb2, matcher_pb2
from services.core import ndarray
from services.gateway.decisions import decide, error_decision
from services.gateway.doors import Door, TimeWindow
from services.gateway.liveness import Liveness, LivenessResult
from services.gateway.motion import MotionGate, thumbnail
from services.gateway.policy import may_pass
from services.gateway.tracking import (
    FRAMES_KEPT,
    LIVENESS_FRAME_SECONDS,
    DoorTracks,
    Observation,
    Track,
    fuse,
    leftover,
)

Outcome = gateway_pb2.Decision.Outcome
FRAME = gateway_pb2.CameraFrame(door_id="lobby", sequence=7)
LOBBY = Door("lobby", "hq", groups=frozenset({"staff"}), frames_needed=2)
MONDAY_NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def seen(identity: str = "alice", distance: float = 0.30, accepted: bool = True, ambiguous: bool = False,
         rival: str = "") -> Observation:
    """A frame's answer; an ambiguous one names the rival that was also within the threshold."""
    matched = {identity} if accepted else {identity, *([rival] if rival else [])} if ambiguous else set()
    return Observation(identity, identity.title(), distance, accepted, ambiguous, 0.37, frozenset(matched))


def track() -> Track:
    return Track("lobby#1", common_pb2.Box(x=10, y=10, width=100, height=100), 0.0, 0.0)


def test__a_person_is_matched_only_when_enough_frames_agree():
    assert fuse([seen()], frames_needed=2, max_embeddings=4) is None
    verdict = fuse([seen(distance=0.33), seen(distance=0.29)], 2, 4)

    assert verdict is not None and verdict.kind == "match" and verdict.frames == 2
    assert verdict.observation.distance == 0.29  # the best frame is reported


def test__strangers_need_as_many_frames_and_disagreement_goes_to_review():
    unknown = fuse([seen("bob", 0.6, accepted=False), seen("bob", 0.7, accepted=False)], 2, 4)
    mixed = fuse([seen("alice"), seen("bob", 0.5, accepted=False), seen("carol"), seen("bob", 0.6, False)], 2, 4)
    tie = fuse([seen(accepted=False, ambiguous=True, rival="bob")] * 2, 2, 4)

    assert unknown is not None and unknown.kind == "unknown" and "nearest 'bob'" in unknown.reason
    assert mixed is not None and mixed.kind == "review" and "disagree" in mixed.reason
    assert tie is not None and tie.kind == "review" and "ambiguous" in tie.reason


def test__frames_that_accepted_another_person_send_the_track_to_review_even_if_k_frames_agree():
    verdict = fuse([seen("alice"), seen("carol"), seen("alice")], frames_needed=2, max_embeddings=4)

    assert verdict is not None and verdict.kind == "review"
    assert verdict.reason == "frames disagree ('alice' 2, 'carol' 1; matched 'alice', 'carol'); needs review"


def test__an_ambiguous_frame_with_another_person_within_the_threshold_blocks_the_grant():
    middle = fuse([seen("alice"), seen("alice", ambiguous=True, accepted=False, rival="carol"), seen("alice")], 2, 4)
    first = fuse([seen("alice", ambiguous=True, accepted=False, rival="carol"), seen("alice")], 2, 4)

    assert middle is not None and middle.kind == "review" and "ambiguous 1" in middle.reason
    assert first is not None and first.kind == "review" and "matched 'alice', 'carol'" in first.reason


def test__an_ambiguous_frame_whose_rival_is_beyond_the_threshold_neither_counts_nor_blocks():
    # The matcher calls a frame ambiguous when the runner-up is within its gap of the best, even
    # beyond the threshold: that frame matched no one but the person the others agree on.
    verdict = fuse([seen("alice"), seen("alice", ambiguous=True, accepted=False), seen("alice")], 2, 4)

    assert verdict is not None and verdict.kind == "match" and "'alice' in 2 of 3 frames" in verdict.reason


def test__frames_with_no_one_within_the_threshold_do_not_block_a_person_the_others_agree_on():
    verdict = fuse([seen("alice"), seen("alice", 0.40, accepted=False), seen("alice", 0.32)], 2, 4)

    assert verdict is not None and verdict.kind == "match" and verdict.observation.distance == 0.30
    assert "'alice' in 2 of 3 frames and no other person in any" in verdict.reason


def test__one_frame_never_grants():
    with pytest.raises(ValueError, match="one frame never opens a door"):
        fuse([seen()], frames_needed=1, max_embeddings=4)
    left_early = leftover([seen()])
    stranger = leftover([seen("bob", 0.6, accepted=False)])

    assert left_early.kind == "review" and "left before enough frames agreed" in left_early.reason
    assert stranger.kind == "unknown"


def test__a_match_is_granted_if_the_policy_allows_and_denied_for_policy_otherwise():
    verdict = fuse([seen(), seen()], 2, 4)
    assert verdict is not None

    granted = decide(FRAME, LOBBY, track(), verdict, "m@1", may_pass(LOBBY, ["staff"], MONDAY_NOON))
    refused = decide(FRAME, LOBBY, track(), verdict, "m@1", may_pass(LOBBY, ["visitors"], MONDAY_NOON))

    assert granted.outcome == Outcome.OUTCOME_GRANTED and granted.identity_id == "alice" and granted.frames == 2
    assert granted.track_id == "lobby#1" and granted.site == "hq" and granted.frame_sequence == 7
    assert refused.outcome == Outcome.OUTCOME_DENIED_POLICY and "not in a group allowed here" in refused.reason


def test__a_door_schedule_is_read_in_its_sites_time_zone():
    office_hours = Door("front", "paris", timezone="Europe/Paris",
                        schedule=(TimeWindow(frozenset(range(5)), dt.time(8), dt.time(18)),))

    assert may_pass(office_hours, [], dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC)).allowed  # 08:30
    late = may_pass(office_hours, [], dt.datetime(2026, 11, 23, 17, 30, tzinfo=dt.UTC))  # 18:30 Paris
    assert not late.allowed and "outside the door's schedule (Mon 18:30 Europe/Paris)" in late.reason
    assert not may_pass(office_hours, [], dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)).allowed  # Sunday


def test__faces_keep_their_track_while_they_overlap_and_a_track_ends_when_unseen():
    tracks = DoorTracks("lobby", timeout=1.0)
    left, right = common_pb2.Box(x=0, y=0, width=100, height=100), common_pb2.Box(x=300, y=0, width=100, height=100)
    moved = common_pb2.Box(x=10, y=5, width=100, height=100)

    first = tracks.update([left, right], now=0.0)
    second = tracks.update([right, moved], now=0.2)  # order changes, the left face moves a little
    tracks.update([moved], now=0.6)
    fourth = tracks.update([moved], now=1.3)  # the right face has been gone since 0.2

    assert [t.track_id for t in second] == [first[1].track_id, first[0].track_id]
    assert fourth[0].track_id == first[0].track_id and fourth[0].frames_seen == 4
    assert [t.track_id for t in tracks.ended] == [first[1].track_id]


def test__a_backend_failure_keeps_the_door_locked_and_says_why():
    failed = error_decision(FRAME, "hq", "embedder UNAVAILABLE: connection refused")
    assert failed.outcome == Outcome.OUTCOME_ERROR and "door stays locked" in failed.reason


def test__a_review_verdict_is_a_review_decision_naming_the_nearest_person_and_never_a_grant():
    verdict = fuse([seen("alice"), seen("carol")], 2, 4)
    assert verdict is not None

    decision = decide(FRAME, LOBBY, track(), verdict, "m@1", may_pass(LOBBY, ["staff"], MONDAY_NOON))

    assert decision.outcome == Outcome.OUTCOME_REVIEW and decision.identity_id == "alice"
    assert decision.reason == verdict.reason


def test__a_fast_walker_keeps_one_track_and_a_second_face_beside_them_gets_its_own():
    tracks = DoorTracks("lobby", timeout=1.0)
    face = common_pb2.Box(x=100, y=100, width=100, height=100)
    walked = common_pb2.Box(x=150, y=100, width=100, height=100)  # half a face width in one frame (0.2 s)
    nearer = common_pb2.Box(x=200, y=110, width=105, height=105)  # and again, growing as they approach
    beside = common_pb2.Box(x=330, y=110, width=100, height=100)

    first = tracks.update([face], now=0.0)[0]
    assert tracks.update([walked], now=0.2)[0] is first
    assert tracks.update([nearer], now=0.4)[0] is first
    both = tracks.update([beside, nearer], now=0.6)
    assert both[1] is first and both[0] is not first and len(tracks.tracks) == 2


def test__a_person_enrolled_at_another_site_is_not_let_in_whatever_matched():
    # e.g. templates a crashed move left under the person's former site
    answer = may_pass(LOBBY, ["staff"], MONDAY_NOON, identity_site="lab")

    assert not answer.allowed and answer.reason == "enrolled at site 'lab', not at this door's site 'hq'"
    assert may_pass(LOBBY, ["staff"], MONDAY_NOON, identity_site="hq").allowed
    assert may_pass(LOBBY, ["staff"], MONDAY_NOON, identity_site="").allowed  # no site: every site


def test__track_ids_do_not_repeat_across_gateway_restarts():
    before, after = DoorTracks("lobby", epoch="19c3a5b2e4f"), DoorTracks("lobby", epoch="19c3a5b9a01")
    box = common_pb2.Box(x=0, y=0, width=100, height=100)

    first, second = before.update([box], now=0.0)[0], after.update([box], now=0.0)[0]

    assert first.track_id.startswith("lobby#19c3a5b2e4f.") and second.track_id.startswith("lobby#19c3a5b9a01.")
    assert first.track_id != second.track_id


def face(x: float = 10, width: float = 100, height: float = 120, points: int = 5) -> common_pb2.Face:
    return common_pb2.Face(box=common_pb2.Box(x=x, y=10, width=width, height=height),
                           landmarks=[common_pb2.Point(x=x + 20 + i, y=40 + i) for i in range(points)])


def test__a_track_keeps_the_landmarks_and_face_size_of_its_last_frames_for_liveness():
    kept = track()
    for i in range(FRAMES_KEPT + 5):
        assert kept.saw(face(x=i), now=i * LIVENESS_FRAME_SECONDS)
    kept.saw(face(points=0), now=(FRAMES_KEPT + 5) * LIVENESS_FRAME_SECONDS)  # no landmarks: an unusable frame

    assert len(kept.landmarks) == len(kept.face_sizes) == FRAMES_KEPT and kept.frames_recorded == FRAMES_KEPT + 6
    assert kept.landmarks[0][0] == (26.0, 40.0) and kept.face_sizes[0] == 100.0  # the smaller side of the box
    assert all(v != v for point in kept.landmarks[-1] for v in point)  # NaN
    assert kept.assess_liveness().verdict == Liveness.NOT_ENOUGH_MOTION  # no motion at all: never live


def test__a_fast_camera_records_a_liveness_frame_at_most_every_tenth_of_a_second_so_the_budget_fits():
    fast = track()
    recorded = [fast.saw(face(x=i), now=i / 30) for i in range(300)]  # 10 s at 30 fps

    assert sum(recorded) == 100 and recorded[:4] == [True, False, False, True]
    assert FRAMES_KEPT * 0.9 * LIVENESS_FRAME_SECONDS >= 10  # the longest liveness_seconds a door may set


def test__a_grant_held_for_liveness_is_no_decision_yet_and_is_embedded_on_each_recorded_frame():
    held = track()
    held.observe(seen(), 0.9, 2, 4)
    held.observe(seen(), 0.9, 2, 4)
    held.held = True
    tracks = DoorTracks("lobby")
    tracks.tracks.append(held)

    assert held.verdict is not None and not held.decided and not tracks.all_decided  # the detector keeps running
    assert held.wants_embedding(0.1, 4, recorded=True)  # even a poor frame: it must show the same person
    assert not held.wants_embedding(1.0, 4, recorded=False)
    held.held = False
    assert held.decided and tracks.all_decided and not held.wants_embedding(1.0, 4, recorded=True)


SAME_FACE = 0.422  # the card's FAR 1e-2 point


def near(identity: str, distance: float, threshold: float = 0.37) -> Observation:
    """A frame whose nearest person is `identity` at `distance` (accepted within `threshold`)."""
    accepted = distance <= threshold
    return Observation(identity, identity.title(), distance, accepted, False, threshold,
                       frozenset({identity}) if accepted else frozenset(), ((identity, identity.title(), distance),))


def landmark_face(points: np.ndarray) -> common_pb2.Face:
    side = float(1.6 * np.linalg.norm(points[1] - points[0]))
    return common_pb2.Face(box=common_pb2.Box(x=float(points[0][0]), y=float(points[0][1]), width=side, height=side),
                           landmarks=[common_pb2.Point(x=float(x), y=float(y)) for x, y in points])


def test__only_frames_whose_own_embedding_was_accepted_as_the_matched_person_count_for_liveness():
    """A print of alice matches; the attacker then shows their own turning head (real parallax)
    in the same track: those frames are not alice's, so they cannot make her grant live."""
    from tests.unit.test_liveness import FLAT_FACE, HEAD, sweep
    from tests.unit.test_liveness import track as landmarks_of

    print_of_alice = landmarks_of(FLAT_FACE, sweep(-20, 20), jitter_px=0.3)
    attacker = landmarks_of(HEAD, sweep(-15, 15), jitter_px=0.3, seed=15)
    swapped, honest = track(), track()
    for i, points in enumerate(print_of_alice):
        for t in (swapped, honest):
            t.saw(landmark_face(points), now=i * 0.2)
            t.identified(near("alice", 0.30), SAME_FACE)
            t.observe(near("alice", 0.30), 0.9, 2, 20)
    for i, points in enumerate(attacker, start=len(print_of_alice)):
        swapped.saw(landmark_face(points), now=i * 0.2)
        swapped.identified(near("alice", 0.47), SAME_FACE)  # a stranger: alice is the nearest, but far
        honest.saw(landmark_face(points), now=i * 0.2)  # the same frames, shown to be alice's
        honest.identified(near("alice", 0.40), SAME_FACE)  # her head turned: beyond the threshold, within FAR 1e-2

    assert swapped.verdict is not None and swapped.verdict.kind == "match"
    assert swapped.assess_liveness().verdict != Liveness.LIVE
    assert "10 of 20 recorded frames not counted (not embedded, or not shown to be 'alice')" in \
        swapped.assess_liveness().reason
    assert honest.assess_liveness().verdict == Liveness.LIVE  # the same head frames count when they are alice's


def test__a_frame_that_matched_someone_else_does_not_count_for_the_person_even_if_close():
    twins = track()
    for i in range(3):
        twins.saw(face(x=i), now=i * 0.2)
        twins.identified(near("alice", 0.30), SAME_FACE)
        twins.observe(near("alice", 0.30), 0.9, 2, 20)
    twins.saw(face(x=3), now=0.6)
    twins_frame = Observation("bob", "Bob", 0.25, True, False, 0.37, frozenset({"bob"}),
                              (("bob", "Bob", 0.25), ("alice", "Alice", 0.33)))
    twins.identified(twins_frame, SAME_FACE)

    assert [sorted(near) for near, _ in twins.shown] == [["alice"]] * 3 + [["bob"]]
    assert twins.shows_someone_else(twins_frame) and not twins.shows_someone_else(near("alice", 0.40))
    assert "1 of 4 recorded frames not counted" in twins.assess_liveness().reason  # bob's frame


def test__a_track_with_no_match_has_nobody_to_show_alive():
    from tests.unit.test_liveness import HEAD, sweep
    from tests.unit.test_liveness import track as landmarks_of

    stranger = track()
    for i, points in enumerate(landmarks_of(HEAD, sweep(-15, 15), jitter_px=0.3)):
        stranger.saw(landmark_face(points), now=i * 0.2)
        stranger.identified(near("alice", 0.30), SAME_FACE)

    assert stranger.verdict is None and stranger.assess_liveness().verdict == Liveness.NOT_ENOUGH_MOTION


LIVE = LivenessResult(Liveness.LIVE, 0.081, 0.006, 12.0, 9, "the nose moved 0.081 off the eye/mouth plane (>= 0.052)")
FLAT = LivenessResult(Liveness.NOT_ENOUGH_MOTION, 0.012, 0.004, 8.0, 14,
                      "parallax 0.012 < 0.052 (floor 0.052, jitter 0.004) and the face plane turned 8 degrees "
                      "(< 30.0): no evidence either way")


def test__at_a_door_requiring_liveness_an_allowed_match_is_granted_live_and_denied_liveness_otherwise():
    verdict = fuse([seen(), seen()], 2, 4)
    assert verdict is not None
    door = Door("lobby", "hq", groups=frozenset({"staff"}), require_liveness=True, liveness_seconds=3.0)
    allowed, refused = may_pass(door, ["staff"], MONDAY_NOON), may_pass(door, ["visitors"], MONDAY_NOON)
    seen_for = Track("lobby#1", common_pb2.Box(x=10, y=10, width=100, height=100), 100.0, 103.2)

    live = decide(FRAME, door, seen_for, verdict, "m@1", allowed, LIVE)
    flat = decide(FRAME, door, seen_for, verdict, "m@1", allowed, FLAT)
    not_allowed = decide(FRAME, door, seen_for, verdict, "m@1", refused, FLAT)

    assert live.outcome == Outcome.OUTCOME_GRANTED
    assert live.reason.startswith(verdict.reason) and "liveness live, parallax 0.081 in 9 usable frames" in live.reason
    assert flat.outcome == Outcome.OUTCOME_DENIED_LIVENESS and flat.identity_id == "alice"
    assert "no live face in 3.2 s of the track (the door waits up to 3 s): liveness not_enough_motion, " \
           "parallax 0.012 in 14 usable frames (parallax 0.012 < 0.052" in flat.reason
    assert not_allowed.outcome == Outcome.OUTCOME_DENIED_POLICY  # the policy speaks first



# -- a door requiring liveness, frame by frame: the gateway's stream on fake backends -------------

class FakeBackends:
    """One face per frame, with the landmarks given for that frame; every embedded frame is alice;
    alice's record is read (and counted) at each decision about her."""

    def __init__(self, landmarks: np.ndarray) -> None:
        self.landmarks, self.detected, self.lookups = landmarks, 0, 0
        self.detected_by_frame: list[int] = []  # frames run through the detector so far, after each frame

    async def submit(self, items: list) -> list:  # the detect and embed batchers
        if items and not isinstance(items[0], tuple):  # crops (below) go to the embedder; frames come with a region
            return [common_pb2.Embedding(vector=[1.0], model_id="m", model_version="1") for _ in items]
        points = self.landmarks[self.detected]
        self.detected += 1
        (x1, y1), (x2, y2) = points.min(axis=0) - 30, points.max(axis=0) + 30
        found = common_pb2.Face(box=common_pb2.Box(x=x1, y=y1, width=x2 - x1, height=y2 - y1), quality=0.9,
                                landmarks=[common_pb2.Point(x=x, y=y) for x, y in points])
        return [detector_pb2.FrameFaces(faces=[detector_pb2.DetectedFace(face=found, crop=common_pb2.NDArray(
            shape=[1]))])]

    async def identify(self, embeddings, site, target_far=0.0):
        return [matcher_pb2.IdentifyResult(threshold=0.37, candidates=[
            matcher_pb2.Candidate(identity_id="alice", display_name="Alice", distance=0.3)]) for _ in embeddings]

    async def identity(self, identity_id):
        self.lookups += 1
        return matcher_pb2.Identity(identity_id=identity_id, groups=["staff"])


def stream_through_gateway(door: Door, landmarks: np.ndarray, fps: float = 5.0, motion: MotionGate | None = None,
                           backends: FakeBackends | None = None) -> tuple[list, FakeBackends]:
    """Each frame's decisions (frame by frame, 1/fps apart) from a gateway on fake backends
    (with `motion`, that motion gate at the door; every frame is the same black image)."""
    from services.gateway import audit
    from services.gateway.server import DoorStream, GatewayServicer, GatewayServiceSettings, Running

    backends = backends or FakeBackends(landmarks)
    servicer = GatewayServicer(GatewayServiceSettings(insecure=True))
    servicer._running = Running(backends=backends, audit=audit.SqliteAuditLog(":memory:"), detect=backends,
                                embed=backends, reviews=None, model=common_pb2.ModelInfo(model_id="m",
                                                                                         model_version="1"))
    stream = DoorStream(door, (door.door_id, door.site), timeout=1.5, motion=motion)
    image = ndarray.encode(np.zeros((360, 640, 3), np.uint8), "jpeg")
    decided = []
    for i in range(len(landmarks)):
        frame = gateway_pb2.CameraFrame(door_id=door.door_id, sequence=i, frame=image)
        frame.captured_at.FromNanoseconds(int((1e9 + i / fps) * 1e9))
        decided.append(asyncio.run(servicer._process(stream, door, frame)))
        backends.detected_by_frame.append(backends.detected)
    return decided, backends


def head_frames(points: np.ndarray, still: int, turning: int) -> np.ndarray:
    """`still` frames facing the camera, then `turning` frames turning 20 degrees (a head or a print)."""
    from tests.unit.test_liveness import seen as image_of

    yaws = [0.0] * still + list(np.linspace(0, 20, turning))
    rng = np.random.default_rng(14)
    return np.stack([image_of(points, yaw=y, pitch=5.0) for y in yaws]) + rng.normal(0, 0.3, (len(yaws), 5, 2))


def outcomes(decided: list) -> list[tuple[int, str]]:
    return [(i, Outcome.Name(d.outcome)) for i, frame in enumerate(decided) for d in frame]


def test__a_held_grant_is_made_on_the_frame_the_head_shows_itself_live_reading_the_persons_record_again():
    from tests.unit.test_liveness import HEAD

    door = Door("lab", "hq", require_liveness=True, liveness_seconds=3.0)
    decided, backends = stream_through_gateway(door, head_frames(HEAD, still=6, turning=6))

    [(at, outcome)] = outcomes(decided)
    assert outcome == "OUTCOME_GRANTED" and 6 < at < 12  # matched on frame 1, held while the head kept still
    assert "liveness live, parallax" in decided[at][0].reason
    assert backends.lookups == 2  # when the match was held, and when it was granted
    assert backends.detected_by_frame[at] == at + 1  # no frame skipped while the grant was held


def test__a_flat_face_is_held_until_the_budget_is_spent_and_a_door_without_liveness_grants_at_once():
    from tests.unit.test_liveness import FLAT_FACE

    flat = head_frames(FLAT_FACE, still=6, turning=12)
    held, _ = stream_through_gateway(Door("lab", "hq", require_liveness=True, liveness_seconds=3.0), flat)
    plain, backends = stream_through_gateway(Door("lab", "hq"), flat)

    assert outcomes(held) == [(15, "OUTCOME_DENIED_LIVENESS")]  # 3.0 s after the first frame, at 5 fps
    assert outcomes(plain) == [(1, "OUTCOME_GRANTED")] and "liveness" not in plain[1][0].reason
    assert backends.lookups == 1 and backends.detected < len(flat)  # decided: the detector skips frames again


def test__a_gate_that_takes_a_present_face_for_the_empty_scene_never_ends_its_track_unsearched():
    from tests.unit.test_liveness import HEAD

    # the scene the gate learnt looks exactly like every frame, yet the detector finds a face in
    # each: the gate's `scene` frames skip it, but the whole frame is searched once the track went
    # unseen for half its 1.5 s timeout, so the person is granted, not sent to review as gone
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=10)
    scene = thumbnail(ndarray.encode(np.zeros((360, 640, 3), np.uint8), "jpeg"))
    for _ in range(10):
        gate.learn(scene)
    decided, backends = stream_through_gateway(Door("lab", "hq"), head_frames(HEAD, still=12, turning=0),
                                               motion=gate)

    assert outcomes(decided) == [(4, "OUTCOME_GRANTED")]  # frame 4: 0.8 s after the first
    assert backends.detected_by_frame[:5] == [1, 1, 1, 1, 2]


def test__a_verdicts_reason_says_which_capture_flags_lowered_its_threshold():
    from services.gateway.tracking import Observation, fuse

    dark = [Observation("", "", 0.6, False, False, 0.27, capture=("dark", "blurry")) for _ in range(2)]
    clean = [Observation("", "", 0.6, False, False, 0.32) for _ in range(2)]

    assert "no identity within threshold 0.270 (dark, blurry capture) in 2 frames" in fuse(dark, 2, 4).reason
    assert "no identity within threshold 0.320 in 2 frames" in fuse(clean, 2, 4).reason


def test__once_a_whole_frame_search_finds_the_tracked_face_gone__the_scene_frames_after_it_are_not_searched():
    from tests.unit.test_liveness import HEAD

    class GoneAfterFirst(FakeBackends):
        async def submit(self, items: list) -> list:
            found = await super().submit(items)
            if items and isinstance(items[0], tuple) and self.detected > 1:  # the person has left
                return [detector_pb2.FrameFaces()]
            return found

    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=100)
    scene = thumbnail(ndarray.encode(np.zeros((360, 640, 3), np.uint8), "jpeg"))
    for _ in range(10):
        gate.learn(scene)
    backends = GoneAfterFirst(head_frames(HEAD, still=12, turning=0))
    decided, _ = stream_through_gateway(Door("lab", "hq"), head_frames(HEAD, still=12, turning=0), motion=gate,
                                        backends=backends)
    # frame 0 searched (a face), frames 1-3 scene, frame 4 (0.8 s unseen) searched whole: no face;
    # frames 5-7 not searched; frame 8 (1.6 s) ends the track, decided as gone before 2 frames agreed
    assert backends.detected_by_frame[:8] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [o for _, o in outcomes(decided)] == ["OUTCOME_REVIEW"]
