"""Tight face crops (an ID-badge photo: the face filling the image). The cascade looks for faces
smaller than the frame, so such a photo often yields none: of 200 LFW faces cut to their own box
at 100-300 px, 13-26% in grey and 1.5-3% in colour were not found; searched again inside a plain
grey border of half the photo's size on each side, 98-100% were, every one the same person as in
the full photo (`make bench-tight-crops`, README). A mirrored border is not used: it makes
mirrored faces."""

from __future__ import annotations

import cv2
import numpy as np

from services.detector.faces import DetectedFace

BORDER = 0.5  # of the photo's height and width, on each side
# Only photos this small (long side, px) are searched again: a tight crop is a small photo, and a
# large one without a face would cost four times its pixels for nothing.
MAX_SIDE = 1024
GREY = 127


def padded(frame: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The frame inside a plain grey border; (the padded frame, its left and top offsets)."""
    height, width = frame.shape[:2]
    dy, dx = round(height * BORDER), round(width * BORDER)
    out = cv2.copyMakeBorder(frame, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(GREY, GREY, GREY))
    return out, dx, dy


def unpadded(face: DetectedFace, dx: int, dy: int, width: int, height: int) -> DetectedFace:
    """A face found in the padded frame, in the original frame's coordinates (its box clipped to
    the frame, as every box the detector reports is)."""
    moved = face.moved(-dx, -dy)
    x, y, w, h = moved.box
    left, top = max(0.0, x), max(0.0, y)
    right, bottom = min(float(width), x + w), min(float(height), y + h)
    return DetectedFace(box=(left, top, max(0.0, right - left), max(0.0, bottom - top)), score=face.score,
                        landmarks=moved.landmarks)
