"""The cascade's networks on LiteRT (the default) and on TensorFlow: the same faces, whatever
the batch, and the converted networks cached once (services/detector/networks.py); and Detect
searching a region of a frame (services/detector/regions.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from services.contracts.v1 import common_pb2, detector_pb2
from services.core import ndarray
from services.core.images import decode_image
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
from services.detector.networks import CHUNK, LiteRTNetworks, TensorFlowNetworks, flatbuffers
from tests.system.test_services import assert_status, stubs


@pytest.fixture(scope="module")
def tensorflow_detector() -> MtcnnDetector:
    return MtcnnDetector(runtime="tensorflow")


def frames(demo_photos) -> list[np.ndarray]:
    """The demo photos, as they are and letterboxed into 640x480 camera frames."""
    out = []
    for name in sorted(demo_photos):
        if name.endswith(".jpg"):
            photo = decode_image(demo_photos[name].read_bytes())
            out.append(photo)
            scale = min(640 / photo.shape[1], 480 / photo.shape[0])
            small = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)))
            frame = np.zeros((480, 640, 3), np.uint8)
            frame[: small.shape[0], : small.shape[1]] = small
            out.append(frame)
    return out


@pytest.mark.parametrize("min_face_size", [20, 60])
def test__given_the_same_frames__when_detected_on_litert_and_on_tensorflow__then_the_faces_are_the_same(
        detector, tensorflow_detector, demo_photos, min_face_size):
    assert detector.runtime == "litert"  # the default
    settings = DetectorSettings(min_face_size=min_face_size)
    images = frames(demo_photos)
    one_by_one = [detector.detect([image], settings)[0] for image in images]
    batched = detector.detect(images, settings)
    reference = tensorflow_detector.detect(images, settings)

    assert sum(map(len, reference)) >= len(images) // 2  # there are faces to compare
    for lite, lite_batched, tf_faces in zip(one_by_one, batched, reference, strict=True):
        assert len(lite) == len(lite_batched) == len(tf_faces)
        for a, b, c in zip(lite, lite_batched, tf_faces, strict=True):
            assert np.allclose(a.box, c.box, atol=0.01) and np.allclose(b.box, c.box, atol=0.01)
            assert np.allclose(a.landmarks, c.landmarks, atol=0.01)
            assert abs(a.score - c.score) < 1e-4


@pytest.mark.parametrize("count", [1, 3, 64, 65, 150])
def test__given_any_number_of_crops__then_rnet_and_onet_give_tensorflows_outputs_for_each(count):
    rng = np.random.default_rng(count)
    lite, reference = LiteRTNetworks(), TensorFlowNetworks()
    for name, side in (("rnet", 24), ("onet", 48)):
        crops = rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)
        for a, b in zip(getattr(lite, name)(crops), getattr(reference, name)(crops), strict=True):
            assert a.shape == b.shape and a.shape[0] == count
            assert np.allclose(a, b, atol=1e-4)


def test__given_a_batch_of_crops__then_the_networks_run_it_in_power_of_two_runs_with_no_padding():
    networks, shapes = LiteRTNetworks(), []
    invoke = networks._invoke
    networks._invoke = lambda name, batch: (shapes.append(batch.shape[0]), invoke(name, batch))[1]  # type: ignore[method-assign]
    networks.onet(np.zeros((CHUNK + 13, 48, 48, 3), np.uint8))
    assert shapes == [CHUNK, 8, 4, 1]


def test__given_a_cache__when_the_networks_are_loaded_again__then_the_converted_files_are_read_not_rebuilt(
        tmp_path: Path):
    first = flatbuffers(tmp_path)
    files = sorted(tmp_path.rglob("*.tflite"))
    assert [f.name for f in files] == ["onet.tflite", "pnet.tflite", "rnet.tflite"]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert flatbuffers(tmp_path) == first
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test__given_a_cache_it_cannot_write__then_the_networks_still_load_and_the_log_says_to_prepare(
        tmp_path: Path, caplog):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would go: no one, not even root, can create it")
    with caplog.at_level(logging.WARNING):
        networks = LiteRTNetworks(cache=blocked)
    offsets, probs = networks.pnet(np.zeros((1, 48, 64, 3), np.uint8))

    assert offsets.shape[-1] == 4 and probs.shape[-1] == 2
    assert "could not cache" in caplog.text and "facegate prepare" in caplog.text


def test__given_a_region_around_a_face__when_detect_is_called__then_the_face_is_the_one_the_whole_frame_gives(
        stack, demo_photos):
    detector = stubs(stack)[0]
    frame = frames(demo_photos)[1]  # the first demo photo letterboxed into 640x480
    message = ndarray.encode(frame, "jpeg")
    whole = detector.Detect(detector_pb2.DetectRequest(frames=[message], return_crops=True), timeout=30)
    face = whole.frames[0].faces[0].face
    around = common_pb2.Box(x=face.box.x - face.box.width, y=face.box.y - face.box.height,
                            width=3 * face.box.width, height=3 * face.box.height)
    elsewhere = common_pb2.Box(x=0, y=0, width=face.box.x - 5, height=480) if face.box.x > 100 else \
        common_pb2.Box(x=face.box.x + face.box.width + 5, y=0, width=200, height=480)
    regional = detector.Detect(detector_pb2.DetectRequest(
        frames=[message, message, message], regions=[around, elsewhere, common_pb2.Box()], return_crops=True),
        timeout=30)

    found, nothing, whole_again = regional.frames
    assert len(found.faces) == len(whole.frames[0].faces) and not nothing.faces
    assert whole_again == whole.frames[0]
    box = found.faces[0].face.box
    assert np.allclose([box.x, box.y, box.width, box.height],
                       [face.box.x, face.box.y, face.box.width, face.box.height], atol=3)
    assert found.faces[0].crop.shape == whole.frames[0].faces[0].crop.shape  # cut from the whole frame


def test__given_regions_that_do_not_fit_the_frames__then_detect_says_which(stack, demo_photos):
    detector = stubs(stack)[0]
    message = ndarray.encode(frames(demo_photos)[1], "jpeg")
    assert_status(lambda: detector.Detect(detector_pb2.DetectRequest(
        frames=[message, message], regions=[common_pb2.Box()]), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, "regions: 1 for 2 frames")
    assert_status(lambda: detector.Detect(detector_pb2.DetectRequest(
        frames=[message], regions=[common_pb2.Box(x=0, y=0, width=-4, height=10)]), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT, "regions[0]")


def test__given_a_bad_region_among_other_cameras_frames__then_only_its_frame_gets_the_error(stack, demo_photos):
    detector = stubs(stack)[0]
    message = ndarray.encode(frames(demo_photos)[1], "jpeg")
    reply = detector.Detect(detector_pb2.DetectRequest(
        frames=[message, message], regions=[common_pb2.Box(x=0, y=0, width=float("nan"), height=10),
                                            common_pb2.Box()], per_frame_errors=True), timeout=30)
    bad, good = reply.frames
    assert bad.error.startswith("region:") and not bad.faces
    assert not good.error and good.faces
