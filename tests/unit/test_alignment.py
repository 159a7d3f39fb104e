"""Alignment puts the landmarks where the model's template says, whatever the face size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.detector.alignment import align_face, similarity_transform

TEMPLATE = np.array([[47.2, 45.1], [101.4, 45.2], [73.9, 77.4], [50.3, 105.0], [98.0, 105.1]])


def _dot_after_alignment(landmarks: np.ndarray, index: int, side: int) -> np.ndarray:
    """Where a white dot drawn at one landmark ends up in the aligned crop (intensity centroid)."""
    frame = np.zeros((side, side, 3), np.uint8)
    x, y = landmarks[index]
    cv2.circle(frame, (round(x), round(y)), max(2, side // 150), (255, 255, 255), -1)
    crop = align_face(frame, landmarks, TEMPLATE, 150).astype(float)[..., 0]
    ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
    return np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()


@pytest.mark.parametrize("scale, angle", [(1.0, 0.0), (0.6, 12.0), (5.0, -20.0), (12.0, 5.0)])
def test__given_landmarks_of_any_size_and_roll__when_aligned__then_they_land_on_the_template(scale, angle):
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    landmarks = (TEMPLATE - 75) @ rotation.T * scale + 75 * scale + 40
    side = int(150 * scale + 80)
    crop = align_face(np.zeros((side, side, 3), np.uint8), landmarks, TEMPLATE, 150)
    dots = np.array([_dot_after_alignment(landmarks, i, side) for i in range(5)])

    assert crop.shape == (150, 150, 3) and crop.dtype == np.uint8
    assert np.abs(dots - TEMPLATE).max() < 1.5


def test__given_coincident_landmarks__then_alignment_refuses_clearly():
    with pytest.raises(ValueError):
        align_face(np.zeros((50, 50, 3), np.uint8), [(10.0, 10.0)] * 5, TEMPLATE, 150)


def test__similarity_transform_recovers_a_known_transform():
    matrix = np.array([[1.5, -0.4, 10.0], [0.4, 1.5, -3.0]])
    target = TEMPLATE @ matrix[:, :2].T + matrix[:, 2]

    # OpenCV refines iteratively: exact to well under a thousandth of a pixel
    np.testing.assert_allclose(similarity_transform(TEMPLATE, target), matrix, atol=1e-4)
