"""A caller's search region: clipped to the frame, refused when it is not a box, and the faces
found in it moved back into the frame's coordinates (services/detector/regions.py)."""

from __future__ import annotations

import math

import pytest

from services.contracts.v1 import common_pb2
from services.core.errors import InvalidArgument
from services.detector.faces import DetectedFace
from services.detector.regions import region_bounds


def box(x: float, y: float, w: float, h: float) -> common_pb2.Box:
    return common_pb2.Box(x=x, y=y, width=w, height=h)


def test__a_zero_box_means_the_whole_frame() -> None:
    assert region_bounds(common_pb2.Box(), 640, 480, "regions[0]") is None
    assert region_bounds(box(10, 10, 0, 50), 640, 480, "regions[0]") is None


def test__a_region_is_widened_to_whole_pixels_and_clipped_to_the_frame() -> None:
    assert region_bounds(box(10.5, 20.2, 100.1, 50.0), 640, 480, "r") == (10, 20, 111, 71)
    assert region_bounds(box(-30, 400, 100, 200), 640, 480, "r") == (0, 400, 70, 480)
    assert region_bounds(box(700, 500, 50, 50), 640, 480, "r") == (640, 480, 640, 480)  # outside: empty


@pytest.mark.parametrize("bad", [box(math.nan, 0, 10, 10), box(0, 0, math.inf, 10), box(0, 0, -5, 10)])
def test__a_region_that_is_not_a_box_is_the_callers_error_naming_the_field(bad: common_pb2.Box) -> None:
    with pytest.raises(InvalidArgument, match=r"regions\[3\]"):
        region_bounds(bad, 640, 480, "regions[3]")


def test__a_face_found_in_a_region_is_reported_where_it_is_in_the_frame() -> None:
    face = DetectedFace(box=(5, 6, 50, 60), score=0.99, landmarks=((10, 20),) * 5)
    moved = face.moved(100, 200)
    assert moved.box == (105, 206, 50, 60) and moved.landmarks == ((110, 220),) * 5 and moved.score == 0.99
