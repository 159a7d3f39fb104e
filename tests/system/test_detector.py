"""MTCNN detection: recall on annotated photos, landmarks, batching, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.images import decode_image
from services.detector.mtcnn_cascade import DetectorSettings
from tests.conftest import shared_path


def test__given_the_compreface_group_photos__when_detected__then_recall_is_at_least_90_percent(detector):
    root = shared_path("compreface-sample-images")
    noses = json.loads((root / "annotations.json").read_text())["nose_points_xy"]
    found = total = false_positives = 0
    for name, points in sorted(noses.items()):
        faces = detector.detect([decode_image((root / name).read_bytes())])[0]
        found += sum(any(face.contains(x, y) for face in faces) for x, y in points)
        false_positives += sum(not any(face.contains(x, y) for x, y in points) for face in faces)
        total += len(points)
    recall = found / total
    print(f"compreface: recall {recall:.3f} ({found}/{total}), false positives {false_positives}")

    assert recall >= 0.9
    assert false_positives <= 3


def test__given_a_portrait__when_detected__then_one_face_with_landmarks_in_anatomical_order(detector, demo_photos):
    faces = detector.detect([decode_image(demo_photos["obama.jpg"].read_bytes())])[0]

    assert len(faces) == 1
    face = faces[0]
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert face.score > 0.95
    assert lx < nx < rx and mlx < mrx  # left/right as seen in the image
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
    assert all(face.contains(x, y) for x, y in face.landmarks)


def test__given_several_frames__when_detected_as_one_batch__then_results_equal_one_by_one(detector, demo_photos):
    frames = [decode_image(demo_photos[n].read_bytes()) for n in ("obama.jpg", "biden.jpg", "obama2.jpg")]
    frames.append(np.zeros((240, 320, 3), np.uint8))

    batched = detector.detect(frames)
    single = [detector.detect([f])[0] for f in frames]

    assert [len(f) for f in batched] == [len(f) for f in single] == [1, 1, 1, 0]
    for a, b in zip(batched, single, strict=True):
        for fa, fb in zip(a, b, strict=True):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)


def test__given_a_face_smaller_than_min_face_size__then_it_is_not_reported(demo_photos):
    from services.detector.mtcnn_cascade import MtcnnDetector

    image = decode_image(demo_photos["obama.jpg"].read_bytes())
    face = MtcnnDetector().detect([image])[0][0]
    too_big = int(face.size * 2)

    assert MtcnnDetector(DetectorSettings(min_face_size=too_big)).detect([image])[0] == []


@pytest.mark.parametrize(
    "kwargs, message",
    [({"min_face_size": 5}, "min_face_size"), ({"min_score": 1.5}, "min_score"),
     ({"scale_factor": 0.99}, "scale_factor")],
)
def test__given_bad_settings__then_construction_fails_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectorSettings(**kwargs)


def test__given_a_non_rgb_frame__then_detect_refuses_it_clearly(detector):
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        detector.detect([np.zeros((100, 100), np.uint8)])


def test__given_door_camera_frames_with_110px_faces__at_min_face_size_60__then_recall_is_at_least_98_percent():
    """Guards the fast setting the benchmark uses (a 60 px minimum once found nothing in the
    upstream driver): LFW faces (~110 px) pasted into 640x480 frames."""
    import random

    from services.detector.mtcnn_cascade import MtcnnDetector

    root = shared_path("lfw-deepfunneled")
    files = sorted(root.glob("*/*.jpg"))
    random.Random(5).shuffle(files)
    detector = MtcnnDetector(DetectorSettings(min_face_size=60))
    hits = 0
    for path in files[:200]:
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[100:350, 200:450] = decode_image(path.read_bytes())
        hits += any(face.contains(325, 225) for face in detector.detect([frame])[0])

    assert hits / 200 >= 0.98
