"""Motion gating: which of a door's frames may skip the detector.

Most of a door camera's day is an empty corridor, and the detector costs ~40 ms of CPU per
640x480 frame whether or not anyone is there. Each frame is read again as a grey thumbnail
(1/8 a side: libjpeg decodes a JPEG at that scale from its DCT coefficients, ~0.5 ms) and
compared with a model of the door's empty scene (OpenCV's MOG2 background model, learning only
from frames that showed nobody, so it follows slow changes of the scene but never takes a
person for part of it). A frame differs from the scene when the pixels that differ add up to
`face_fraction` of the smallest face the door looks for. Then:

- nobody tracked, and the frame differs: searched (`motion`);
- nobody tracked, nothing differs: not searched (`still`), except every `full_every`-th such
  frame (`periodic`: whatever the model missed is looked for at least that often);
- a face tracked, and the frame differs: searched (`tracking`), in a region around the tracked
  faces (`around_tracks`: a square of a few fixed sizes, three times each face's side), the
  whole frame every few frames;
- a face tracked, and the frame is the empty scene again: the person has gone; not searched,
  the tracks are updated with no face (`scene`), as the detector would have (they end after
  the track timeout and are decided as always);
- a thumbnail that cannot be read: searched (`unreadable`: the detector says what is wrong).

Each thumbnail is scaled to a fixed mean brightness first, so a global change (auto-exposure,
lights dimming) is not motion; a local change is.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np

from services.contracts.v1 import common_pb2
from services.core import ndarray
from services.core.errors import InvalidArgument

MARGIN = 1.0  # a search region reaches this many face sides beyond each tracked face, every way
WHOLE_FRAME_SHARE = 0.6  # a region larger than this share of the frame: search the frame
REGION_SIDES = (96, 128, 160, 192, 256, 320, 384)  # px: the square regions searched
SCALE = 8  # thumbnail: 1/8 a side (640x480 -> 80x60; a 60 px face is ~7x7 px)
MEAN = 128.0  # the brightness every thumbnail is scaled to
HISTORY = 50  # frames the background model remembers (10 s at 5 fps)
VAR_THRESHOLD = 16.0  # MOG2's squared Mahalanobis distance for a pixel to be foreground (its default)


class Why(enum.Enum):
    """Why a frame was (or was not) given to the detector; the values are metric labels."""

    MOTION = "motion"
    TRACKING = "tracking"
    PERIODIC = "periodic"
    UNREADABLE = "unreadable"
    STILL = "still"  # not searched: nobody tracked, nothing moved
    SCENE = "scene"  # not searched: the tracked faces' door shows its empty scene again

    @property
    def searched(self) -> bool:
        return self not in (Why.STILL, Why.SCENE)


def thumbnail(frame: common_pb2.NDArray) -> np.ndarray | None:
    """The frame as a grey image 1/8 of its size a side (uint8), or None if it cannot be read.

    Only for a frame whose header `ndarray.check_frame` has accepted (so its size is bounded)."""
    if frame.encoding == common_pb2.NDArray.ENCODING_RAW:
        try:
            pixels = ndarray.decode_frame(frame, "frame")
        except InvalidArgument:
            return None
        return cv2.cvtColor(np.ascontiguousarray(pixels[::SCALE, ::SCALE]), cv2.COLOR_RGB2GRAY)
    # JPEG: decoded at 1/8 scale from the DCT (the cheap path); PNG: decoded whole, then shrunk.
    return cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)


class MotionGate:
    """One door's background model and the count of frames since the last full detection.

    `check` each frame; `learn` the frames that showed nobody (gated ones, and searched ones
    with no face found and no track alive). The background is the scene without the people who
    pass: learnt, the next person who stands where one stood (or a camera whose stream starts
    with someone in view) would not count as motion."""

    def __init__(self, face_fraction: float, min_face_size: int, full_every: int) -> None:
        if not 0 < face_fraction <= 1:
            raise ValueError(f"face_fraction: {face_fraction}; a fraction of the smallest face in (0, 1]")
        if min_face_size < 12:
            raise ValueError(f"min_face_size: {min_face_size}; at least 12 px")
        if full_every < 1:
            raise ValueError(f"full_every: {full_every}; at least 1")
        # a face of the smallest size is (min_face_size / SCALE)^2 thumbnail pixels
        self.min_pixels = max(4, round(face_fraction * (min_face_size / SCALE) ** 2))
        self.full_every = full_every
        self._model: cv2.BackgroundSubtractorMOG2 | None = None
        self._shape: tuple[int, ...] = ()
        self._learnt = 0  # frames learnt since the model was made
        self._since_detection = full_every  # the first frame is always searched

    def check(self, thumb: np.ndarray | None, tracking: bool) -> Why:
        """Why this frame goes to the detector, or why it need not (`not why.searched`)."""
        if thumb is None:
            why = Why.UNREADABLE
        elif self._differs(thumb):
            why = Why.TRACKING if tracking else Why.MOTION
        elif self._since_detection + 1 >= self.full_every:
            why = Why.PERIODIC
        else:
            why = Why.SCENE if tracking else Why.STILL
        self._since_detection = 0 if why.searched else self._since_detection + 1
        return why

    def learn(self, thumb: np.ndarray | None) -> None:
        """Take a frame that showed nobody into the background: fast at first (the first
        frames of a stream), then with a memory of `HISTORY` frames."""
        if thumb is None:
            return
        if self._model is None or thumb.shape != self._shape:  # a new stream or a new resolution
            self._model = cv2.createBackgroundSubtractorMOG2(HISTORY, VAR_THRESHOLD, detectShadows=False)
            self._shape, self._learnt = thumb.shape, 0
        self._learnt += 1
        self._model.apply(self._normalised(thumb), learningRate=1 / min(2 * self._learnt, HISTORY))

    def _differs(self, thumb: np.ndarray) -> bool:
        if self._model is None or thumb.shape != self._shape:
            return True  # no empty scene learnt yet
        foreground = self._model.apply(self._normalised(thumb), learningRate=0)
        return int(np.count_nonzero(foreground)) >= self.min_pixels

    @staticmethod
    def _normalised(thumb: np.ndarray) -> np.ndarray:
        gain = MEAN / max(float(thumb.mean()), 1.0)
        return cv2.convertScaleAbs(thumb, alpha=gain)


def around_tracks(boxes: list[common_pb2.Box], width: int, height: int) -> common_pb2.Box | None:
    """The region to search for the faces of these tracks in a `width` x `height` frame: their
    boxes grown by `MARGIN` face sides every way (a person walking moves well under a face
    side in 0.2 s) and joined, as a square of one of a few `REGION_SIDES` moved inside the
    frame (the detector keeps its networks planned per image shape: free-sized regions would
    plan new ones on every frame); None when that is most of the frame anyway."""
    if not boxes:
        return None
    x1 = min(b.x - MARGIN * max(b.width, b.height) for b in boxes)
    y1 = min(b.y - MARGIN * max(b.width, b.height) for b in boxes)
    x2 = max(b.x + b.width + MARGIN * max(b.width, b.height) for b in boxes)
    y2 = max(b.y + b.height + MARGIN * max(b.width, b.height) for b in boxes)
    needed = max(x2 - x1, y2 - y1)
    side = next((s for s in REGION_SIDES if s >= needed), None)
    if side is None or side > min(width, height) or side * side > WHOLE_FRAME_SHARE * width * height:
        return None
    left = min(max(0, round((x1 + x2 - side) / 2)), width - side)
    top = min(max(0, round((y1 + y2 - side) / 2)), height - side)
    return common_pb2.Box(x=left, y=top, width=side, height=side)
