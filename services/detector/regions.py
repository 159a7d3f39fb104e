"""Searching part of a frame, or not at all: a caller's region of interest, clipped to the frame
(the faces found inside it are put back with `DetectedFace.moved`), and the boxes of faces a
caller expects to see again (`DetectRequest.expected_faces`: looked at instead of a search)."""

from __future__ import annotations

import math

from services.contracts.v1 import common_pb2, detector_pb2
from services.core.errors import InvalidArgument

MAX_EXPECTED = 16  # expected faces per frame: a door shows a few; each costs seven RNet crops


def region_bounds(box: common_pb2.Box, width: int, height: int, field: str) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of `box` in whole pixels, clipped to a `width` x `height` frame; None for
    "the whole frame" (a box of zero width or height). A box that is not finite or has a negative
    side is the caller's error."""
    values = (box.x, box.y, box.width, box.height)
    if not all(math.isfinite(v) for v in values) or box.width < 0 or box.height < 0:
        raise InvalidArgument(f"{field}: {[round(v, 2) for v in values]}; a region is x, y and a width and "
                              "height >= 0 (0: the whole frame)")
    if box.width == 0 or box.height == 0:
        return None
    x1, y1 = min(width, max(0, math.floor(box.x))), min(height, max(0, math.floor(box.y)))
    x2, y2 = min(width, math.ceil(box.x + box.width)), min(height, math.ceil(box.y + box.height))
    return x1, y1, max(x1, x2), max(y1, y2)


def expected_boxes(boxes: detector_pb2.FaceBoxes, width: int, height: int,
                   field: str) -> list[tuple[float, float, float, float]]:
    """The (x, y, width, height) of each face expected in a `width` x `height` frame. The
    caller's error: more than `MAX_EXPECTED`, a box that is not finite, has a side <= 0 or
    longer than the frame's shorter side, or lies wholly outside the frame (each box's crops
    are cut at up to 1.25 times its longer side before they are shrunk: bounded by the frame,
    they cost what a search of it would)."""
    if len(boxes.boxes) > MAX_EXPECTED:
        raise InvalidArgument(f"{field}: {len(boxes.boxes)} boxes; at most {MAX_EXPECTED} expected faces a frame")
    out = []
    for i, box in enumerate(boxes.boxes):
        values = (box.x, box.y, box.width, box.height)
        if (not all(math.isfinite(v) for v in values) or box.width <= 0 or box.height <= 0
                or max(box.width, box.height) > min(width, height)
                or box.x >= width or box.y >= height or box.x + box.width <= 0 or box.y + box.height <= 0):
            raise InvalidArgument(f"{field}.boxes[{i}]: {[round(v, 2) for v in values]}; an expected face is x, y "
                                  f"and a width and height > 0, no longer than the frame's shorter side, in the "
                                  f"{width}x{height} frame")
        out.append(values)
    return out
