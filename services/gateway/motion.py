"""Motion gating: which of a door's frames may skip the detector.

Most of a door camera's day is an empty corridor, and the detector costs ~30 ms of CPU per
640x480 frame whether or not anyone is there. Each frame is seen as a grey thumbnail, 1/8 a
side: the one the camera's agent sent with it (services/core/thumbnails.py), else the JPEG read
again at that scale (libjpeg decodes it from its DCT coefficients, ~0.5 ms). It is compared with
a model of the door's empty scene (OpenCV's MOG2 background model). A frame differs from the
scene when the pixels that differ add up to `face_fraction` of the smallest face the door looks
for. Then:

- nobody tracked, and the frame differs: searched (`motion`);
- nobody tracked, nothing differs: not searched (`still`), except every `full_every`-th such
  frame (`periodic`: whatever the model missed is looked for at least that often);
- a face tracked, and the frame differs: searched (`tracking`), in a region around the tracked
  faces (`around_tracks`: a square of a few fixed sizes, three times each face's side or more
  for a face unseen for a while), the whole frame every few frames; while a tracked face is
  undecided (at a door that does not require liveness), right after a detection that saw every
  one, the gateway looks only where they were (`--follow-faces`, no search) and searches
  around them when one is not there;
- a face tracked, and the frame is the empty scene again: the person looks gone; not searched,
  the tracks are updated with no face (`scene`), except that the gateway searches the whole
  frame before such an update would end a track (the gate never ends one by itself);
- a thumbnail that cannot be read, or a PNG frame (decoded whole, it would cost the gateway's
  event loop as much as the detector's decode): searched (`unreadable`).

What the model learns (`learn`): frames judged `still` at once, and frames searched whole in
which no face was found with nobody tracked, slowly if they differed (a person turned away, a
chair moved: scene after ~10 s, and the periodic search still looks at them); never a frame
with someone tracked. Each thumbnail is scaled to a fixed mean brightness first, so a global
change (auto-exposure, lights dimming) is not motion; a local change is.
"""

from __future__ import annotations

import enum

import cv2
import numpy as np

from services.contracts.v1 import common_pb2
from services.core import ndarray
from services.core.errors import InvalidArgument
from services.core.ndarray import ArrayLimits
from services.core.thumbnails import SCALE, grey_thumbnail, thumbnail_shape

MARGIN = 1.0  # a search region reaches this many face sides beyond each tracked face, every way
WHOLE_FRAME_SHARE = 0.6  # a region larger than this share of the frame: search the frame
REGION_SIDES = (96, 128, 160, 192, 256, 320, 384)  # px: the square regions searched
MEAN = 128.0  # the brightness every thumbnail is scaled to
HISTORY = 50  # frames the background model remembers (10 s at 5 fps)
SLOW_RATE = 1 / 500  # learning a frame that differed: ~50 frames (10 s at 5 fps) to become scene
FRAME_GAP = 0.2  # s between a door's frames (5 fps): a region's margin grows with the time unseen
MAX_MARGIN = 4.0  # face sides
ENCODINGS = {common_pb2.NDArray.ENCODING_RAW: "raw", common_pb2.NDArray.ENCODING_JPEG: "JPEG",
             common_pb2.NDArray.ENCODING_PNG: "PNG"}  # as a refused thumbnail's message names them
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
            return grey_thumbnail(ndarray.decode_frame(frame, "frame"))
        except InvalidArgument:
            return None
    if frame.encoding != common_pb2.NDArray.ENCODING_JPEG:
        return None  # PNG has no cheap reduced decode
    return cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)


def sent_thumbnail(sent: common_pb2.NDArray, width: int, height: int) -> np.ndarray:
    """The thumbnail a camera sent with its `width` x `height` frame (`CameraFrame.motion_thumbnail`),
    checked from its header before anything is read (a PNG or JPEG is never decoded: it could
    claim 80 MP), then taken as it is; else InvalidArgument saying what to send."""
    expected = thumbnail_shape(width, height)
    if (sent.encoding != common_pb2.NDArray.ENCODING_RAW or sent.dtype != "uint8"
            or tuple(sent.shape) != expected):
        kind = ENCODINGS.get(sent.encoding, f"encoding {sent.encoding}")
        raise InvalidArgument(f"motion_thumbnail: {kind} {sent.dtype or '?'} {list(sent.shape)} for a "
                              f"{width}x{height} frame; send raw uint8 {list(expected)} (the frame grey, 1/8 a "
                              "side, rounded up) or none")
    return ndarray.decode(sent, "motion_thumbnail", ArrayLimits(max_bytes=expected[0] * expected[1]))


class MotionGate:
    """One door's background model and the count of frames since the last detection: `check`
    each frame, `learn` the frames that showed nobody (the module docstring says which)."""

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

    def learn(self, thumb: np.ndarray | None, slowly: bool = False) -> None:
        """Take a frame that showed nobody into the scene: fast at first (the first frames of a
        stream), then with a memory of `HISTORY` frames; `slowly` for one that differed."""
        if thumb is None:
            return
        if self._model is None or thumb.shape != self._shape:  # a new stream or a new resolution
            self._model = cv2.createBackgroundSubtractorMOG2(HISTORY, VAR_THRESHOLD, detectShadows=False)
            self._shape, self._learnt = thumb.shape, 0
            slowly = False  # the first frame is the scene there is
        self._learnt += 1
        rate = SLOW_RATE if slowly else 1 / min(2 * self._learnt, HISTORY)
        self._model.apply(self._normalised(thumb), learningRate=rate)

    def _differs(self, thumb: np.ndarray) -> bool:
        if self._model is None or thumb.shape != self._shape:
            return True  # no empty scene learnt yet
        foreground = self._model.apply(self._normalised(thumb), learningRate=0)
        return int(np.count_nonzero(foreground)) >= self.min_pixels

    @staticmethod
    def _normalised(thumb: np.ndarray) -> np.ndarray:
        gain = MEAN / max(float(thumb.mean()), 1.0)
        return cv2.convertScaleAbs(thumb, alpha=gain)


MAX_FOLLOWED = 16  # faces looked for again in one frame at most (DetectRequest.expected_faces takes 16)


def followable(boxes: list[common_pb2.Box], width: int, height: int) -> bool:
    """Whether the detector can be asked to look again at `boxes` in a `width` x `height` frame
    (`DetectRequest.expected_faces` refuses more than 16, a box longer than the frame's shorter
    side, or one not in the frame: a camera that changed resolution mid-stream leaves boxes of
    its old frames); else the frame is searched."""
    return 0 < len(boxes) <= MAX_FOLLOWED and all(
        b.width > 0 and b.height > 0 and max(b.width, b.height) <= min(width, height)
        and b.x < width and b.y < height and b.x + b.width > 0 and b.y + b.height > 0 for b in boxes)


def around_tracks(tracks: list[tuple[common_pb2.Box, float]], width: int, height: int) -> common_pb2.Box | None:
    """The region to search for tracked faces, given as (last box, seconds since it was seen), in
    a `width` x `height` frame: each box grown by `MARGIN` face sides every way (a person walking
    moves well under a face side between frames 0.2 s apart), more the longer it went unseen, the
    boxes joined, as a square of one of a few `REGION_SIDES` moved inside the frame (the detector
    keeps its networks planned per image shape: free-sized regions would plan new ones on every
    frame); None when that is most of the frame anyway."""
    if not tracks:
        return None
    grown = []
    for b, unseen in tracks:
        margin = min(MAX_MARGIN, MARGIN * max(1.0, unseen / FRAME_GAP)) * max(b.width, b.height)
        grown.append((b.x - margin, b.y - margin, b.x + b.width + margin, b.y + b.height + margin))
    x1, y1 = min(g[0] for g in grown), min(g[1] for g in grown)
    x2, y2 = max(g[2] for g in grown), max(g[3] for g in grown)
    needed = max(x2 - x1, y2 - y1)
    side = next((s for s in REGION_SIDES if s >= needed), None)
    if side is None or side > min(width, height) or side * side > WHOLE_FRAME_SHARE * width * height:
        return None
    left = min(max(0, round((x1 + x2 - side) / 2)), width - side)
    top = min(max(0, round((y1 + y2 - side) / 2)), height - side)
    return common_pb2.Box(x=left, y=top, width=side, height=side)
