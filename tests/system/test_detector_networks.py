"""The cascade's networks on LiteRT (the default) and on TensorFlow: the same faces, whatever
the batch, and the converted networks cached once (services/detector/networks.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.core.images import decode_image
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
from services.detector.networks import CHUNK, LiteRTNetworks, TensorFlowNetworks, _bucket, flatbuffers


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


def test__batches_run_at_power_of_two_buckets_up_to_the_chunk():
    assert [_bucket(n) for n in (1, 2, 3, 5, 16, 17, 64)] == [1, 2, 4, 8, 16, 32, 64]
    assert _bucket(1000) == CHUNK


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
