"""Is a photo a good enrolment shot? Judged from the detector's answer, with guidance a person can follow."""

from __future__ import annotations

import numpy as np
import pytest

from services.contracts.v1 import common_pb2, detector_pb2
from services.core import ndarray
from services.gateway.photo_checks import check_shot, head_pose

# A frontal face in a 640 x 480 photo: eyes level 40 px apart, the nose between them halfway
# down to the mouth. Order: eye on the image's left, eye on the image's right, nose, mouth corners.
FRONTAL = ((300, 200), (340, 200), (320, 225), (305, 250), (335, 250))


def crop(mean: float = 128, texture: float = 40, seed: int = 0) -> common_pb2.NDArray:
    """A raw 150 x 150 RGB crop: grey `mean` with noise of `texture` (0: flat)."""
    noise = np.random.default_rng(seed).normal(0, texture, (150, 150, 1)) if texture else 0
    pixels = np.clip(np.full((150, 150, 1), mean) + noise, 0, 255).astype(np.uint8)
    return ndarray.encode(np.repeat(pixels, 3, axis=2))


def face(width: float = 120, landmarks=FRONTAL, pixels: common_pb2.NDArray | None = None,
         x: float = 260) -> detector_pb2.DetectedFace:
    return detector_pb2.DetectedFace(
        face=common_pb2.Face(box=common_pb2.Box(x=x, y=150, width=width, height=width * 1.2), score=0.99,
                             landmarks=[common_pb2.Point(x=px, y=py) for px, py in landmarks], quality=0.9),
        crop=pixels if pixels is not None else crop())


def shot(*faces: detector_pb2.DetectedFace) -> detector_pb2.FrameFaces:
    return detector_pb2.FrameFaces(faces=list(faces))


def moved(landmarks, index: int, dx: float = 0, dy: float = 0):
    points = [list(p) for p in landmarks]
    points[index][0] += dx
    points[index][1] += dy
    return tuple(tuple(p) for p in points)


def test__one_large_sharp_well_lit_frontal_face_is_a_good_shot():
    check = check_shot(shot(face()))

    assert check.accepted and (check.reason, check.guidance) == ("", "good shot")
    assert check.faces == 1 and check.face.box.width == 120
    assert 100 < check.brightness < 160 and check.sharpness > 25 and check.yaw == 0


def test__a_photo_the_detector_could_not_read_is_rejected_with_its_reason():
    check = check_shot(detector_pb2.FrameFaces(error="frame.data: corrupt or truncated image"))

    assert not check.accepted
    assert (check.reason, check.guidance) == ("frame.data: corrupt or truncated image", "send a JPEG or PNG photo")


def test__a_photo_without_a_face_says_so_and_how_to_fix_it():
    check = check_shot(shot())

    assert not check.accepted and check.reason == "no face found" and check.faces == 0
    assert check.guidance == "face the camera, with the whole face in the picture"
    assert not check.HasField("face")


def test__two_faces_of_similar_size_make_it_unclear_whose_shot_it_is():
    check = check_shot(shot(face(width=100, x=40), face(width=120)))

    assert not check.accepted and check.reason == "2 faces in the shot"
    assert check.guidance == "only the person being enrolled may be in the picture"
    assert check.face.box.width == 120  # the largest face is the one judged


def test__a_small_face_in_the_background_does_not_spoil_the_shot():
    check = check_shot(shot(face(width=55, x=20), face(width=120)))

    assert check.accepted and check.faces == 2


def test__a_face_narrower_than_80_px_is_too_small():
    check = check_shot(shot(face(width=60)))

    assert not check.accepted
    assert (check.reason, check.guidance) == ("face too small (60 px wide; at least 80)", "move closer")


def test__a_dark_face_is_rejected_asking_for_light():
    check = check_shot(shot(face(pixels=crop(mean=25, texture=15))))

    assert not check.accepted and check.reason.startswith("too dark (face brightness ")
    assert check.guidance == "add light in front of the face"


def test__an_overexposed_face_is_rejected():
    check = check_shot(shot(face(pixels=crop(mean=235, texture=15))))

    assert not check.accepted and check.reason.startswith("overexposed (face brightness ")
    assert check.guidance == "less light, or step out of direct sun"


def test__a_face_without_any_detail_is_blurred():
    check = check_shot(shot(face(pixels=crop(texture=0))))

    assert not check.accepted and check.reason == "blurred (sharpness 0; at least 25)"
    assert check.guidance == "hold still, and keep the camera steady"


@pytest.mark.parametrize(("dx", "side"), [(-20, "left"), (20, "right")])
def test__a_turned_head_is_told_which_way_to_turn_in_its_own_left_and_right(dx, side):
    """A nose toward the image's left is toward the person's right (the photo is not mirrored,
    whatever the preview shows): they turn back to their left."""
    check = check_shot(shot(face(landmarks=moved(FRONTAL, 2, dx=dx))))

    assert not check.accepted and check.reason == "not frontal (head turned 0.50 eye distances)"
    assert check.guidance == f"turn slightly to your {side}, facing the camera"
    assert check.yaw == pytest.approx(dx / 40)  # negative toward the image's left


def test__a_head_turned_a_little_is_still_frontal():
    check = check_shot(shot(face(landmarks=moved(FRONTAL, 2, dx=-10))))

    assert check.accepted and check.yaw == pytest.approx(-0.25)


def test__a_tilted_eye_line_asks_for_a_level_head():
    tilted = moved(FRONTAL, 1, dy=20)  # the eye on the image's right 20 px lower: 27 degrees

    check = check_shot(shot(face(landmarks=tilted)))

    assert not check.accepted and check.reason == "head tilted (27 degrees)"
    assert check.guidance == "keep your head level"


@pytest.mark.parametrize(("dy", "looking", "tilt"), [(-20, "up", "down"), (20, "down", "up")])
def test__a_nose_near_the_eyes_or_the_mouth_means_looking_up_or_down(dy, looking, tilt):
    check = check_shot(shot(face(landmarks=moved(FRONTAL, 2, dy=dy))))

    assert not check.accepted and check.reason == f"not frontal (looking {looking})"
    assert check.guidance == f"tilt your head slightly {tilt}, eyes on the camera"


def test__the_pose_of_symmetric_landmarks_is_frontal_level_and_halfway_down():
    yaw, roll, pitch = head_pose([common_pb2.Point(x=x, y=y) for x, y in FRONTAL])

    assert (yaw, roll) == (0, 0) and pitch == pytest.approx(0.5)


def test__without_the_five_landmarks_the_pose_is_taken_as_frontal():
    assert head_pose([]) == (0.0, 0.0, 0.5)
    assert check_shot(shot(face(landmarks=()))).accepted
