"""The motion gate's view of a frame: grey, 1/8 of its size a side.

The gateway's gate (services/gateway/motion.py) compares it with a door's empty scene. An edge
agent, which has the frame's pixels before it encodes them, sends it with each frame
(`CameraFrame.motion_thumbnail`, ~0.05 ms there), so the gateway need not decode the JPEG for it
(~0.5 ms of the gateway's CPU a frame, on the event loop every door shares).
"""

from __future__ import annotations

import cv2
import numpy as np

SCALE = 8  # 640x480 -> 80x60: a 60 px face is ~7x7 px


def thumbnail_shape(width: int, height: int) -> tuple[int, int]:
    """(rows, columns) of the thumbnail of a `width` x `height` frame: each side / 8 rounded up,
    as libjpeg's 1/8 decode of a JPEG frame gives it (so a stream mixing the two kinds keeps one
    shape)."""
    return -(-height // SCALE), -(-width // SCALE)


def grey_thumbnail(pixels: np.ndarray, bgr: bool = False) -> np.ndarray:
    """An H x W x 3 uint8 frame (RGB, or BGR as OpenCV reads it) as its uint8 grey thumbnail,
    area-averaged (each pixel the mean of an 8 x 8 block when the sides are multiples of 8)."""
    rows, columns = thumbnail_shape(pixels.shape[1], pixels.shape[0])
    small = cv2.resize(pixels, (columns, rows), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY if bgr else cv2.COLOR_RGB2GRAY)
