"""Passive liveness from planarity (services/gateway/liveness.py), specified on synthetic landmarks:
a face model in 3-D seen by a pinhole camera, with and without the nose out of the plane."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.gateway.liveness import (
    Liveness,
    LivenessSettings,
    assess,
    nose_in_face_plane,
    plane_turns,
)

FOCAL, CENTRE = 554.0, np.array([320.0, 180.0])  # a 640 x 360 camera, 60 degrees across
# the five MTCNN points of an average face in metres (x right, y down, z away from the camera):
# eyes 6.4 cm apart, mouth corners 5 cm apart 6.5 cm below them, all on one plane (z = 0)...
FLAT_FACE = np.array([[-0.032, -0.030, 0.0], [0.032, -0.030, 0.0], [0.0, 0.005, 0.0],
                      [-0.025, 0.035, 0.0], [0.025, 0.035, 0.0]])
# ...and a head: the nose tip 2.5 cm in front of that plane (about 0.4 eye distances)
HEAD = FLAT_FACE + np.array([[0, 0, 0], [0, 0, 0], [0, 0, -0.025], [0, 0, 0], [0, 0, 0]])


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def seen(points: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
         at: tuple[float, float, float] = (0.0, 0.0, 0.6)) -> np.ndarray:
    """The 5 landmarks in the image of `points` turned by (yaw, pitch, roll) degrees, centred `at` metres."""
    camera = points @ rotation(yaw, pitch, roll).T + np.array(at)
    return FOCAL * camera[:, :2] / camera[:, 2:3] + CENTRE


def track(points: np.ndarray, poses: list[dict], jitter_px: float = 0.0, seed: int = 14) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.stack([seen(points, **pose) for pose in poses])
    return frames + rng.normal(0.0, jitter_px, frames.shape)


def face_sizes(landmarks: np.ndarray) -> np.ndarray:
    """A face box is about 1.6 eye distances wide."""
    return 1.6 * np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=1)


def sweep(yaw_from: float, yaw_to: float, frames: int = 10, **pose) -> list[dict]:
    return [dict(yaw=y, **pose) for y in np.linspace(yaw_from, yaw_to, frames)]


def test__given_a_flat_picture__when_it_is_moved_tilted_and_shaken__then_the_nose_stays_put_in_its_plane():
    poses = [dict(yaw=y, pitch=p, roll=r, at=(x, 0.01, z)) for y, p, r, x, z in
             zip(np.linspace(-25, 20, 8), np.linspace(10, -15, 8), np.linspace(-5, 8, 8),
                 np.linspace(-0.1, 0.1, 8), np.linspace(0.8, 0.4, 8), strict=True)]

    uv = nose_in_face_plane(track(FLAT_FACE, poses))

    assert np.ptp(uv, axis=0) == pytest.approx([0.0, 0.0], abs=1e-9)  # a projective invariant


def test__given_a_flat_picture_moved_by_homographies_with_landmark_jitter__then_it_is_not_live():
    for seed in range(20):
        landmarks = track(FLAT_FACE, sweep(-20, 20, pitch=5.0), jitter_px=0.5, seed=seed)

        result = assess(landmarks, face_sizes(landmarks))

        assert result.verdict != Liveness.LIVE, (seed, result.reason)
        assert result.parallax < LivenessSettings().live_parallax


def test__given_a_flat_picture_turned_far_to_one_side__then_it_is_not_live_with_the_reason():
    landmarks = track(FLAT_FACE, sweep(0, 60))

    result = assess(landmarks, face_sizes(landmarks))

    assert result.verdict == Liveness.NOT_LIVE
    assert result.turn_degrees >= LivenessSettings().plane_turn_degrees
    assert "flat picture" in result.reason


@pytest.mark.parametrize("degrees", [15.0, 20.0])
@pytest.mark.parametrize("axis", ["yaw", "pitch"])
def test__given_a_head_with_the_nose_out_of_the_plane__when_it_turns_15_to_20_degrees__then_it_is_live(degrees, axis):
    poses = [{axis: a} for a in np.linspace(-degrees / 2, degrees / 2, 10)]
    landmarks = track(HEAD, poses, jitter_px=0.3)

    result = assess(landmarks, face_sizes(landmarks))

    assert result.verdict == Liveness.LIVE, result.reason
    assert result.parallax > 0.07


def test__given_a_head_that_turns_12_degrees_to_one_side__then_it_is_live():
    landmarks = track(HEAD, sweep(0, 12), jitter_px=0.3)

    assert assess(landmarks, face_sizes(landmarks)).verdict == Liveness.LIVE


def test__given_a_head_that_turns_only_5_degrees__then_it_has_not_shown_enough_to_tell():
    landmarks = track(HEAD, sweep(-2.5, 2.5), jitter_px=0.3)

    assert assess(landmarks, face_sizes(landmarks)).verdict == Liveness.NOT_ENOUGH_MOTION


def test__given_the_same_turn__then_a_head_has_parallax_and_a_picture_has_none():
    head, picture = track(HEAD, sweep(-7, 7)), track(FLAT_FACE, sweep(-7, 7))

    assert assess(head, face_sizes(head)).parallax > 0.07
    assert assess(picture, face_sizes(picture)).parallax == pytest.approx(0.0, abs=1e-9)


def test__given_a_head_that_does_not_move__then_there_is_not_enough_motion_to_tell():
    landmarks = track(HEAD, [dict(yaw=3.0)] * 12, jitter_px=0.5)

    result = assess(landmarks, face_sizes(landmarks))

    assert result.verdict == Liveness.NOT_ENOUGH_MOTION
    assert "no evidence either way" in result.reason


def test__given_a_head_that_only_slides_and_approaches__then_there_is_not_enough_motion_to_tell():
    poses = [dict(at=(x, 0.0, z)) for x, z in zip(np.linspace(-0.02, 0.02, 10), np.linspace(0.7, 0.6, 10),
                                                  strict=True)]
    landmarks = track(HEAD, poses, jitter_px=0.3)

    assert assess(landmarks, face_sizes(landmarks)).verdict == Liveness.NOT_ENOUGH_MOTION


def test__given_one_wild_landmark_frame__then_a_still_head_is_not_called_live():
    landmarks = track(HEAD, [dict()] * 10, jitter_px=0.3)
    landmarks[4, 2] += (15.0, 10.0)  # the nose far off in one frame: the detector's odd mistake

    assert assess(landmarks, face_sizes(landmarks)).verdict != Liveness.LIVE


def test__given_jitter_large_against_the_motion__then_the_track_must_beat_its_own_jitter():
    landmarks = track(HEAD, sweep(-5, 5), jitter_px=3.0)

    result = assess(landmarks, face_sizes(landmarks), LivenessSettings(live_parallax=0.01))

    assert result.verdict != Liveness.LIVE
    assert result.parallax < LivenessSettings().min_snr * result.jitter


@pytest.mark.parametrize("frames", [0, 1, 4])
def test__given_fewer_frames_than_needed__then_not_enough_motion_says_how_many(frames):
    landmarks = track(HEAD, sweep(-10, 10, frames=frames)) if frames else np.zeros((0, 5, 2))

    result = assess(landmarks, face_sizes(landmarks) if frames else [])

    assert result.verdict == Liveness.NOT_ENOUGH_MOTION
    assert f"{frames} usable frames" in result.reason
    assert math.isnan(result.parallax)


def test__given_frames_with_nan_collinear_or_crossed_landmarks__then_they_are_left_out_not_crashed_on():
    landmarks = track(HEAD, sweep(-8, 8, frames=12), jitter_px=0.3)
    landmarks[1, 0] = np.nan  # a missing eye
    landmarks[3, :, 1] = 100.0  # all five points on one line
    landmarks[5, [3, 4]] = landmarks[5, [4, 3]]  # mouth corners swapped: a crossed quadrilateral
    landmarks[7] = landmarks[7, 0]  # every point in one place

    result = assess(landmarks, face_sizes(landmarks))

    assert result.frames == 8
    assert "4 of 12 frames left out (4 without a usable landmark layout" in result.reason
    assert result.verdict == Liveness.LIVE
    assert np.isnan(nose_in_face_plane(landmarks)[[1, 3, 5, 7]]).all()


def test__given_only_degenerate_frames__then_not_enough_motion():
    landmarks = np.zeros((10, 5, 2))

    result = assess(landmarks, np.full(10, 80.0))

    assert result.verdict == Liveness.NOT_ENOUGH_MOTION
    assert result.frames == 0


def test__given_small_or_strongly_turned_faces__then_those_frames_are_left_out():
    landmarks = track(HEAD, sweep(-8, 8, frames=10))
    sizes = face_sizes(landmarks)
    sizes[:3] = 30.0  # under min_face_px
    profile = track(HEAD, [dict(yaw=70.0)])  # the nose beyond the eye span

    assert assess(landmarks, sizes).frames == 7
    assert assess(np.repeat(profile, 10, axis=0), np.full(10, 80.0)).frames == 0


def test__given_input_of_the_wrong_shape__then_a_value_error_names_it():
    with pytest.raises(ValueError, match="T x 5 x 2"):
        assess(np.zeros((10, 4, 2)), np.full(10, 80.0))
    with pytest.raises(ValueError, match="10 frames of landmarks but 9 face sizes"):
        assess(np.zeros((10, 5, 2)), np.full(9, 80.0))


def test__given_settings_out_of_range__then_they_are_refused_at_construction():
    with pytest.raises(ValueError, match="live_parallax"):
        LivenessSettings(live_parallax=0.0)
    with pytest.raises(ValueError, match="min_frames"):
        LivenessSettings(min_frames=2)
    with pytest.raises(ValueError, match="plane_turn_degrees"):
        LivenessSettings(plane_turn_degrees=90.0)


def test__the_nose_in_the_face_plane_is_the_homography_prediction_opencv_gives():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(14)
    landmarks = track(HEAD, [dict(yaw=y, pitch=p) for y, p in rng.uniform(-20, 20, (6, 2))], jitter_px=1.0)
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)

    for frame, uv in zip(landmarks, nose_in_face_plane(landmarks), strict=True):
        to_square = cv2.getPerspectiveTransform(frame[[0, 1, 4, 3]].astype(np.float32), square)
        expected = cv2.perspectiveTransform(frame[None, 2:3].astype(np.float32), to_square)[0, 0]
        assert uv == pytest.approx(expected, abs=1e-4)


def test__plane_turns_reads_a_one_sided_turn_of_a_plane_from_its_foreshortening():
    far = (0.0, 0.0, 2.0)  # far away: foreshortening only, hardly any perspective
    landmarks = np.stack([seen(FLAT_FACE, yaw=0.0, at=far), seen(FLAT_FACE, yaw=40.0, at=far)])

    assert plane_turns(landmarks)[0] == pytest.approx(40.0, abs=1.0)


def test__the_same_track_gets_the_same_verdict():
    landmarks = track(HEAD, sweep(-8, 8, frames=20), jitter_px=0.5)

    assert assess(landmarks, face_sizes(landmarks)) == assess(landmarks, face_sizes(landmarks))


def test__given_two_prints_of_one_person_at_different_poses_swapped_in_front_of_the_camera__then_it_is_not_live():
    """The nose of a print sits still in its plane; swapping it for a print of the same person
    turned the other way moves it in one jump between two frames. A head gets there gradually."""
    facing_left = track(FLAT_FACE + (HEAD - FLAT_FACE) @ rotation(-20).T, [{}] * 6, jitter_px=0.3)
    facing_right = track(FLAT_FACE + (HEAD - FLAT_FACE) @ rotation(20).T, [{}] * 6, jitter_px=0.3, seed=15)
    swapped = np.concatenate([facing_left, facing_right])
    turning = track(HEAD, sweep(-20, 20, frames=12), jitter_px=0.3)

    result = assess(swapped, face_sizes(swapped))

    assert result.verdict != Liveness.LIVE
    assert "jumped" in result.reason
    assert assess(turning, face_sizes(turning)).verdict == Liveness.LIVE
