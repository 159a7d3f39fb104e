"""The cascade's resizing shortcuts (services/detector/mtcnn_cascade.py): pyramid levels and
crops made from exact halvings give what resizing straight from the frame gives, at the same
shapes, to within a grey level or two (a blurrier pyramid, each level made from the one before,
was ~13 off at its smallest levels, where PNet finds the largest faces); a pyramid scale close
to a whole fraction 1/k is taken as 1/k, and that level is the mean of the frame's k x k blocks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.detector.mtcnn_cascade import _pyramid, _pyramid_levels, _shrunk


def scene(height: int, width: int) -> np.ndarray:
    """Smooth shapes and sensor noise, like a camera frame (a face is smooth at the scale of a
    network's 24 or 48 px input; pure noise would be the worst case of any resize)."""
    rng = np.random.default_rng(height * width)
    coarse = cv2.resize(rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8),
                        (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(coarse, rng.integers(0, 12, (height, width, 3), dtype=np.uint8))


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


@pytest.mark.parametrize(("height", "width", "min_face"), [(480, 640, 60), (480, 640, 40), (720, 1280, 60),
                                                           (384, 384, 60), (251, 333, 20)])
def test__each_pyramid_level_has_its_scales_shape_and_the_pixels_of_a_direct_resize(height, width, min_face):
    frame = scene(height, width)
    scales = _pyramid(height, width, min_face, 0.709)

    levels = _pyramid_levels(frame, scales)

    assert len(levels) == len(scales)
    for scale, level in zip(scales, levels, strict=True):
        k = round(1 / scale)
        if abs(k * scale - 1) < 1e-9:  # a whole fraction: the k x k block means, short of one block at the edges
            rows, cols = height // k, width // k
            direct = cv2.resize(frame[: rows * k, : cols * k], (cols, rows), interpolation=cv2.INTER_AREA)
        else:
            direct = cv2.resize(frame, (int(np.ceil(width * scale)), int(np.ceil(height * scale))),
                                interpolation=cv2.INTER_AREA)
        assert level.shape == direct.shape
        assert mean_difference(level, direct) < 2.0


@pytest.mark.parametrize(("height", "width", "min_face"), [(480, 640, 60), (480, 640, 40), (720, 1280, 60),
                                                           (384, 384, 60), (96, 96, 60), (251, 333, 20)])
def test__pyramid_scales_stay_within_two_percent_of_the_geometric_series_and_every_level_fits_pnets_window(
        height, width, min_face):
    scales = _pyramid(height, width, min_face, 0.709)

    geometric = [12 / min_face * 0.709**n for n in range(len(scales))]
    assert scales == pytest.approx(geometric, rel=0.02)
    assert min(height, width) * (12 / min_face * 0.709 ** len(scales)) < 12  # no level missing at the end
    assert all(min(height, width) * scale >= 12 - 1e-9 for scale in scales)
    assert all(level.shape[0] >= 12 and level.shape[1] >= 12 for level in _pyramid_levels(scene(height, width), scales))


def test__at_the_doors_minimum_face_every_level_of_a_camera_frame_is_a_whole_fraction_of_it():
    """60 px faces in 640x480 or 1280x720 frames (and in the detector's search regions): the
    levels are 1/5, 1/7, 1/10, ... of the frame, the cheap resize."""
    for height, width in ((480, 640), (720, 1280), (384, 384), (192, 192), (96, 96)):
        inverses = [1 / scale for scale in _pyramid(height, width, 60, 0.709)]
        assert inverses == pytest.approx([round(k) for k in inverses], abs=1e-9)
        assert [round(k) for k in inverses][:4] == [5, 7, 10, 14][: len(inverses)]


def test__no_scales_give_no_levels():
    assert _pyramid_levels(scene(480, 640), []) == []


@pytest.mark.parametrize(("side", "size"), [(200, 24), (201, 24), (193, 24), (400, 48), (385, 48)])
def test__a_crop_much_larger_than_its_network_input_is_shrunk_like_a_direct_area_resize(side, size):
    patch = scene(side, side)

    shrunk = _shrunk(patch, size)

    assert shrunk.shape == (size, size, 3)
    assert mean_difference(shrunk, cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)) < 2.0


@pytest.mark.parametrize(("side", "size"), [(30, 24), (60, 24), (191, 24), (20, 24), (48, 48), (383, 48)])
def test__a_crop_under_eight_times_its_input_is_resized_directly_exactly_as_before(side, size):
    patch = scene(side, side)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR

    assert np.array_equal(_shrunk(patch, size), cv2.resize(patch, (size, size), interpolation=interpolation))
