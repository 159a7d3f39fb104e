"""Tight face crops searched again inside a border (services/detector/padding.py)."""

from __future__ import annotations

import numpy as np

from services.detector.faces import DetectedFace
from services.detector.padding import GREY, padded, unpadded


def test_a_photo_is_padded_by_half_its_size_on_each_side_with_plain_grey() -> None:
    photo = np.zeros((200, 150, 3), np.uint8)
    out, dx, dy = padded(photo)
    assert (dx, dy) == (75, 100) and out.shape == (400, 300, 3)
    assert (out[:dy] == GREY).all() and (out[:, :dx] == GREY).all()  # no mirrored copy of the face
    assert (out[dy:dy + 200, dx:dx + 150] == 0).all()


def test_a_face_found_in_the_padded_photo_is_reported_in_the_photos_own_coordinates_clipped_to_it() -> None:
    face = DetectedFace(box=(70.0, 95.0, 160.0, 210.0), score=0.99,
                        landmarks=((120.0, 160.0), (180.0, 160.0), (150.0, 200.0), (125.0, 240.0), (175.0, 240.0)))
    back = unpadded(face, dx=75, dy=100, width=150, height=200)
    assert back.box == (0.0, 0.0, 150.0, 200.0)  # the face filled the photo: clipped to it
    assert back.landmarks[0] == (45.0, 60.0) and back.landmarks[2] == (75.0, 100.0)
    assert back.score == face.score
