"""Looking for faces again where they were instead of searching (`DetectRequest.expected_faces`,
`MtcnnDetector.detect(expected=...)`): the face a search finds is found from its box, moved a
little, by RNet and ONet alone; nothing is found where no face is; bad boxes are the caller's
error, for their frame only with `per_frame_errors`."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from services.contracts.v1 import common_pb2, detector_pb2
from services.core import ndarray
from services.detector.faces import DetectedFace
from services.detector.mtcnn_cascade import MtcnnDetector
from services.detector.regions import MAX_EXPECTED
from tests.system.test_detector_networks import frames
from tests.system.test_services import assert_status, stubs


def shifted(face: DetectedFace, dx: float, dy: float) -> tuple[float, float, float, float]:
    """The face's box moved by dx, dy of its width and height."""
    x, y, width, height = face.box
    return x + dx * width, y + dy * height, width, height


def test__given_a_face_a_search_found__when_its_box_moved_a_sixth_of_its_side_is_expected__then_that_face_is_found_without_a_search(  # noqa: E501
        demo_photos, monkeypatch):
    detector = MtcnnDetector()
    frame = frames(demo_photos)[1]  # a demo photo letterboxed into 640x480
    [[face]] = detector.detect([frame])
    proposals = []
    monkeypatch.setattr(detector, "_propose", lambda *args: proposals.append(args) or [])  # counts searches

    [again] = detector.detect([frame], expected=[[shifted(face, 1 / 6, -1 / 6)]])

    assert not proposals[0][0]  # no frame searched (no pyramid, no PNet)
    assert len(again) == 1 and again[0].score > 0.95
    side = face.size
    assert np.allclose(again[0].box, face.box, atol=0.1 * side)
    assert np.allclose(again[0].landmarks, face.landmarks, atol=0.05 * side)


def test__given_expected_faces_where_there_is_none__then_nothing_is_found(demo_photos):
    detector = MtcnnDetector()
    frame = frames(demo_photos)[1]
    [[face]] = detector.detect([frame])
    x, y, width, height = face.box
    away = (0.0, 0.0, width, height) if x > 2 * width else (640 - width, 480 - height, width, height)

    assert detector.detect([frame], expected=[[away]]) == [[]]
    # moved a whole side: not found here (a search finds it)
    assert detector.detect([frame], expected=[[shifted(face, 1.0, 0.0)]]) == [[]]


def test__given_a_batch_of_expected_and_searched_frames__then_each_gets_its_own_faces_and_crops(stack, demo_photos):
    detector = stubs(stack)[0]
    frame = frames(demo_photos)[1]
    message = ndarray.encode(frame, "jpeg")
    searched = detector.Detect(detector_pb2.DetectRequest(frames=[message], return_crops=True), timeout=30)
    face = searched.frames[0].faces[0].face
    expected = common_pb2.Box(x=face.box.x + face.box.width / 8, y=face.box.y, width=face.box.width,
                              height=face.box.height)
    nowhere = common_pb2.Box(x=0, y=0, width=40, height=40) if face.box.x > 100 else \
        common_pb2.Box(x=600, y=440, width=40, height=40)

    reply = detector.Detect(detector_pb2.DetectRequest(
        frames=[message, message, message], return_crops=True,
        expected_faces=[detector_pb2.FaceBoxes(boxes=[expected]), detector_pb2.FaceBoxes(),
                        detector_pb2.FaceBoxes(boxes=[nowhere])]), timeout=30)

    again, whole, none = reply.frames
    assert len(again.faces) == 1 and not none.faces
    assert whole == searched.frames[0]  # no boxes: searched as before
    box = again.faces[0].face.box
    assert np.allclose([box.x, box.y, box.width, box.height],
                       [face.box.x, face.box.y, face.box.width, face.box.height], atol=0.1 * face.box.width)
    assert again.faces[0].crop.shape == whole.faces[0].crop.shape and len(again.faces[0].face.landmarks) == 5


def boxes(*values: tuple[float, float, float, float]) -> detector_pb2.FaceBoxes:
    return detector_pb2.FaceBoxes(boxes=[common_pb2.Box(x=x, y=y, width=w, height=h) for x, y, w, h in values])


@pytest.mark.parametrize(("expected", "regions", "message"), [
    ([boxes((10, 10, 50, 50))] * 2, [], "expected_faces: 2 for 1 frames"),
    ([boxes(*[(10, 10, 50, 50)] * (MAX_EXPECTED + 1))], [], f"at most {MAX_EXPECTED} expected faces"),
    ([boxes((float("nan"), 10, 50, 50))], [], "expected_faces[0].boxes[0]"),
    ([boxes((10, 10, 0, 50))], [], "expected_faces[0].boxes[0]"),
    ([boxes((10, 10, 1e9, 1e9))], [], "no longer than the frame's shorter side"),
    ([boxes((10, 10, 500, 100))], [], "no longer than the frame's shorter side"),
    ([boxes((5000, 10, 50, 50))], [], "in the 640x480 frame"),
    ([boxes((10, 10, 50, 50))], [common_pb2.Box(x=0, y=0, width=100, height=100)], "not both"),
])
def test__given_expected_faces_that_are_not_boxes_in_the_frame__then_detect_says_which(
        stack, demo_photos, expected, regions, message):
    detector = stubs(stack)[0]
    frame = ndarray.encode(frames(demo_photos)[1], "jpeg")
    assert_status(lambda: detector.Detect(detector_pb2.DetectRequest(
        frames=[frame], expected_faces=expected, regions=regions), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, message)


def test__given_a_bad_expected_face_among_other_cameras_frames__then_only_its_frame_gets_the_error(stack, demo_photos):
    detector = stubs(stack)[0]
    message = ndarray.encode(frames(demo_photos)[1], "jpeg")
    reply = detector.Detect(detector_pb2.DetectRequest(
        frames=[message, message], expected_faces=[boxes((0, 0, -1, 10)), boxes()], per_frame_errors=True),
        timeout=30)
    bad, good = reply.frames
    assert bad.error.startswith("expected_faces.boxes[0]:") and not bad.faces
    assert not good.error and good.faces
