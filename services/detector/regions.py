"""Searching part of a frame: a caller's region of interest, clipped to the frame (the faces
found inside it are put back with `DetectedFace.moved`)."""

from __future__ import annotations

import math

from services.contracts.v1 import common_pb2
from services.core.errors import InvalidArgument


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

