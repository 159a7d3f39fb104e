"""MTCNN face detection (Zhang et al. 2016) on TensorFlow, with the weights the `mtcnn` package ships.

We use the package's P/R/O-Net definitions and weights but drive the cascade ourselves: its
own driver calls the Keras models eagerly (~10x slower than a compiled graph) and sizes the
image pyramid from the image rather than from the minimum face size, which wastes time on
scales that can only find faces smaller than asked for. Here the networks run in LiteRT with
XNNPACK (or compiled TensorFlow graphs: `networks.py`), the pyramid starts at the scale where
`min_face_size` maps to PNet's 12 px window, all frames of a batch go through R/ONet together,
and crops/NMS use OpenCV. A caller that follows faces from frame to frame can name where they
were (`detect`'s `expected`): such a frame is not searched, RNet and ONet look at those places
only (a third of a search's cost on the clip's 640x480 frames, decode included).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.detector.faces import DetectedFace
from services.detector.networks import load_networks

_PNET_WINDOW = 12
_PNET_STRIDE = 2
_SNAP = 0.02  # a pyramid scale this close to a whole fraction 1/k is taken as 1/k (`_pyramid`)
# An expected face (`MtcnnDetector.detect`'s `expected`) is looked for at its box and at these
# shifts (in box sides) and sizes of it. Measured on the whole clip at 5 fps (bench/detector_profile.py's
# last table), of the faces a whole-frame search found again 0.2 s later, these found 94% (0.6 s
# later: 92%; the rest had moved 0.4-0.6 of their side); shifts of 0.15 or 0.3 found fewer.
_EXPECTED_SHIFT = 0.2
_EXPECTED_GROWTH = 1.25
_EXPECTED_AROUND = ((0.0, 0.0, 1.0), (-_EXPECTED_SHIFT, 0.0, 1.0), (_EXPECTED_SHIFT, 0.0, 1.0),
                    (0.0, -_EXPECTED_SHIFT, 1.0), (0.0, _EXPECTED_SHIFT, 1.0),
                    (0.0, 0.0, 1 / _EXPECTED_GROWTH), (0.0, 0.0, _EXPECTED_GROWTH))


@dataclass(frozen=True)
class DetectorSettings:
    """Detector knobs. `min_score` is the final (ONet) confidence a face must reach."""

    min_face_size: int = 20
    min_score: float = 0.95
    # Larger frames are downscaled for detection (faces are mapped back to full resolution):
    # a 7000 px photo would otherwise cost seconds in PNet. Sizes stay in full-resolution
    # pixels, but a downscaled frame cannot show faces under 12 px at its working scale.
    max_side: int = 1600
    scale_factor: float = 0.709
    pnet_threshold: float = 0.6
    rnet_threshold: float = 0.7
    pnet_nms: tuple[float, float] = (0.5, 0.7)  # within one scale, then across scales
    rnet_nms: float = 0.7
    onet_nms: float = 0.7

    def __post_init__(self) -> None:
        if self.min_face_size < _PNET_WINDOW:
            raise ValueError(f"min_face_size must be >= {_PNET_WINDOW} px (PNet's window); got {self.min_face_size}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1]; got {self.min_score}")
        if self.max_side < 4 * _PNET_WINDOW:
            raise ValueError(f"max_side must be >= {4 * _PNET_WINDOW} px; got {self.max_side}")
        if not 0.3 <= self.scale_factor < 0.95:
            raise ValueError(f"scale_factor must be in [0.3, 0.95); got {self.scale_factor}")


def _pyramid(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales at which PNet's 12 px window covers faces from `min_face_size` up to the frame.

    A scale within `_SNAP` of a whole fraction 1/k is taken as 1/k (of the two nearest k, the
    one with more factors of two): such a level is a mean of whole k x k blocks, which
    `_pyramid_levels` makes at a fraction of the cost (OpenCV's INTER_AREA is fast only for
    whole ratios). At the doors' 60 px minimum face every level snaps (1/5, 1/7, 1/10, 1/14,
    1/20, 1/28, 1/40, each within 1% of 0.2 x 0.709^n), far inside the 41% step between levels
    that PNet's window already spans. On the clip's 100 frames (bench-vs-face-recognition) it
    found 38 faces where the fractional levels found 31: 7 more of the large side-on faces whose
    ONet score sits near the threshold, 1 fewer, no false ones."""
    scale = _PNET_WINDOW / max(min_face_size, _PNET_WINDOW)
    scales = []
    while min(height, width) * scale >= _PNET_WINDOW:
        ideal = 1 / scale
        whole = [k for k in (int(np.floor(ideal)), int(np.ceil(ideal)))
                 if k >= 2 and abs(k / ideal - 1) <= _SNAP and min(height, width) // k >= _PNET_WINDOW]
        scales.append(1 / max(whole, key=lambda k: (_twos(k), -abs(k - ideal))) if whole else scale)
        scale *= scale_factor
    return scales


def _twos(k: int) -> int:
    """How many times 2 divides `k` (> 0)."""
    return (k & -k).bit_length() - 1


def _pyramid_levels(frame: np.ndarray, scales: list[float]) -> list[np.ndarray]:
    """`frame` at each of `scales` (descending), area-averaged.

    A level at a whole fraction 1/k is the mean of k x k blocks: the frame's exact halvings
    (2x2 means) as far as 2 divides k, then a whole-ratio area resize of that halving, cropped
    to a multiple of the rest of k (under one block of the right and bottom edges is left out,
    less than a twelfth of the faces that level finds). Any other level comes from the frame's
    smallest exact halving still at least 4x its size, resized at its fractional ratio.

    OpenCV's INTER_AREA is fast only for whole-number ratios: resizing a 640x480 frame straight
    to each of 8 levels took 12-16 ms, 40% of the detector's time at the doors. The halvings
    brought that to ~2.6 ms for a 640x480 frame at the doors' 60 px minimum face, which still
    cost more than PNet; whole fractions bring it to ~1.1 ms. An exact halving (a whole ratio:
    fast) is the mean of aligned 2x2 blocks, so a fractional level made from one is nearly what
    the direct resize gives (the boundary weights of its last step are spread over a 2x2 block,
    and the halving is rounded). Measured on the clip (bench-vs-face-recognition's frames): the
    same faces but for a few large side-on ones whose ONet score is within ~0.01 of the
    threshold, which any perturbation flips both ways (JPEG-encoding the frames flips more);
    made from halvings only 2x the level's size the bias was one way: 5 of 34 faces lost.
    Making each level from the one before was cheaper still, but blurred the smallest levels
    and cost more CPU at the doors overall (more candidates)."""
    height, width = frame.shape[:2]
    halvings = [frame]  # halvings[j]: the frame halved j times, exactly (while both sides are even)

    def halving(j: int) -> np.ndarray | None:
        while len(halvings) <= j:
            last = halvings[-1]
            if last.shape[0] % 2 or last.shape[1] % 2:
                return None
            halvings.append(cv2.resize(last, (last.shape[1] // 2, last.shape[0] // 2), interpolation=cv2.INTER_AREA))
        return halvings[j]

    levels: list[np.ndarray] = []
    for scale in scales:
        k = round(1 / scale)
        if k >= 2 and abs(k * scale - 1) < 1e-9:  # a whole fraction (`_pyramid` snapped it)
            j = _twos(k)
            while halving(j) is None:
                j -= 1
            source, rest = halvings[j], k >> j
            rows, cols = source.shape[0] // rest, source.shape[1] // rest
            levels.append(source if rest == 1 else cv2.resize(
                source[: rows * rest, : cols * rest], (cols, rows), interpolation=cv2.INTER_AREA))
            continue
        shape = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
        j = 0
        while (larger := halving(j + 1)) is not None and min(
                larger.shape[0] - 4 * shape[0], larger.shape[1] - 4 * shape[1]) >= 0:
            j += 1
        levels.append(cv2.resize(halvings[j], (shape[1], shape[0]), interpolation=cv2.INTER_AREA))
    return levels


def _nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by non-maximum suppression; boxes are rows of x1, y1, x2, y2, score."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, 4].tolist(), 0.0, threshold)
    return np.asarray(keep, dtype=int).reshape(-1)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w / 2 - side / 2
    out[:, 1] = boxes[:, 1] + h / 2 - side / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    out[:, 0:4] = boxes[:, 0:4] + offsets * np.stack([w, h, w, h], 1)
    return out


def _crops(frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops of `frame` at `boxes`, zero-padded outside the frame, resized to size x size."""
    height, width = frame.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(int)):
        if x2 <= x1 or y2 <= y1:
            continue
        if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:  # most boxes: a view, no copy
            patch = frame[y1:y2, x1:x2]
        else:
            patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            if sx2 > sx1 and sy2 > sy1:
                patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
        out[i] = _shrunk(patch, size)
    return out


def _shrunk(patch: np.ndarray, size: int) -> np.ndarray:
    """`patch` resized to size x size: area-averaged when it is larger, first by exact halvings
    while it stays at least 4x as large (INTER_AREA is fast only for whole ratios: a 200 px box
    straight to 24 px took 230 us, halved first ~60; the 4x margin as for the pyramid). An odd
    side loses its last row or column to a halving: under half a pixel of a box over 8 x `size`."""
    while min(patch.shape[:2]) >= 8 * size:
        height, width = patch.shape[0] // 2, patch.shape[1] // 2
        patch = cv2.resize(patch[: 2 * height, : 2 * width], (width, height), interpolation=cv2.INTER_AREA)
    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def _around(boxes: list[tuple[float, float, float, float]], factor: float) -> np.ndarray:
    """RNet's candidates for faces expected at `boxes` (x, y, width, height, in a frame scaled by
    `factor` for detection): each box made square about its centre, at each of `_EXPECTED_AROUND`."""
    out = []
    for x, y, width, height in boxes:
        side = max(width, height) * factor
        cx, cy = (x + width / 2) * factor, (y + height / 2) * factor
        for dx, dy, size in _EXPECTED_AROUND:
            half = side * size / 2
            out.append((cx + dx * side - half, cy + dy * side - half, cx + dx * side + half, cy + dy * side + half))
    return np.array(out, np.float64).reshape(-1, 4)


def _confirmed(faces: list[DetectedFace], boxes: list[tuple[float, float, float, float]],
               factor: float) -> list[DetectedFace]:
    """Of the faces found around expected `boxes` (in a frame scaled by `factor`), the one that
    overlaps each box most (IoU over 0.3; each face for one box), most confident first: looking
    again confirms the faces expected, it does not add others (a neighbour's face, half in the
    shifted crops, is the whole-frame search's to find, as any new face is)."""
    kept: list[DetectedFace] = []
    for x, y, width, height in boxes:
        box = (x * factor, y * factor, width * factor, height * factor)
        overlaps = [(iou(face.box, box), face) for face in faces if face not in kept]
        best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
        if best[1] is not None and best[0] > 0.3:
            kept.append(best[1])
    return sorted(kept, key=lambda face: face.score, reverse=True)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    across = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    down = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = across * down
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _rescaled(face: DetectedFace, factor: float) -> DetectedFace:
    if factor == 1.0:
        return face
    return DetectedFace(
        box=tuple(v * factor for v in face.box),  # type: ignore[arg-type]
        score=face.score,
        landmarks=tuple((x * factor, y * factor) for x, y in face.landmarks),
    )


class MtcnnDetector:
    """Batch of RGB uint8 frames in, faces with 5 landmarks out."""

    name = "mtcnn"

    def __init__(self, settings: DetectorSettings | None = None, runtime: str = "litert") -> None:
        """`runtime`: what runs the three networks, "litert" or "tensorflow" (networks.py)."""
        self.settings = settings or DetectorSettings()
        self.runtime = runtime
        self._nets = load_networks(runtime)

    def warm_up(self) -> None:
        """Trace the graphs once so the first real frame is not slow."""
        self.detect([np.zeros((120, 160, 3), np.uint8)])

    def detect(self, frames: list[np.ndarray], settings: DetectorSettings | None = None,
               expected: list[list[tuple[float, float, float, float]] | None] | None = None
               ) -> list[list[DetectedFace]]:
        """Detect faces in each frame (H x W x 3, uint8, RGB); `settings` overrides the detector's.

        `expected`: per frame, None (search it) or boxes (x, y, width, height) of faces to look
        for again where they were: no search (no pyramid, no PNet); each box and a few shifts and
        sizes of it (`_EXPECTED_AROUND`) go to RNet and ONet with the searched frames' candidates,
        so such a frame finds only faces that moved less than about a fifth of their side."""
        s = settings or self.settings
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 H x W x 3 (RGB); got {frame.dtype} {frame.shape}")
        if expected is not None and len(expected) != len(frames):
            raise ValueError(f"expected: {len(expected)} entries for {len(frames)} frames")
        looks = expected or [None] * len(frames)
        factors = [min(1.0, s.max_side / max(f.shape[:2])) for f in frames]
        work = [
            f if k == 1.0
            else cv2.resize(f, (round(f.shape[1] * k), round(f.shape[0] * k)), interpolation=cv2.INTER_AREA)
            for f, k in zip(frames, factors, strict=True)
        ]
        searched = [i for i, boxes in enumerate(looks) if boxes is None]
        proposed = dict(zip(searched, self._propose([work[i] for i in searched],
                                                    [s.min_face_size * factors[i] for i in searched], s), strict=True))
        candidates = [proposed[i] if boxes is None else _around(boxes, factors[i])
                      for i, boxes in enumerate(looks)]
        candidates = self._refine(work, candidates, s)
        # The pyramid only bounds what PNet looks for; box regression can still shrink a box
        # below it, so the minimum is enforced on what we report.
        return [
            [_rescaled(face, 1.0 / k) for face in (faces if boxes is None else _confirmed(faces, boxes, k))
             if face.size >= s.min_face_size * k]
            for faces, k, boxes in zip(self._output(work, candidates, s), factors, looks, strict=True)
        ]

    def _propose(self, frames: list[np.ndarray], min_face_sizes: list[float], s: DetectorSettings) -> list[np.ndarray]:
        """PNet over each frame's pyramid; frames whose scaled shapes match share one call."""
        groups: dict[tuple[int, int], list[tuple[int, float, np.ndarray]]] = {}
        for index, (frame, min_face_size) in enumerate(zip(frames, min_face_sizes, strict=True)):
            scales = _pyramid(frame.shape[0], frame.shape[1], min_face_size, s.scale_factor)
            for scale, scaled in zip(scales, _pyramid_levels(frame, scales), strict=True):
                groups.setdefault(scaled.shape[:2], []).append((index, scale, scaled))

        per_frame: list[list[np.ndarray]] = [[] for _ in frames]
        for members in groups.values():
            offsets, probs = self._nets.pnet(np.stack([m[2] for m in members]))
            probs = probs[..., 1]
            for (index, scale, _), offset, prob in zip(members, offsets, probs, strict=True):
                ys, xs = np.nonzero(prob > s.pnet_threshold)
                if len(ys) == 0:
                    continue
                x1 = (_PNET_STRIDE * xs + 1) / scale
                y1 = (_PNET_STRIDE * ys + 1) / scale
                boxes = np.stack([x1, y1, x1 + _PNET_WINDOW / scale, y1 + _PNET_WINDOW / scale, prob[ys, xs]], 1)
                boxes = np.concatenate([boxes, offset[ys, xs]], 1)
                per_frame[index].append(boxes[_nms(boxes, s.pnet_nms[0])])

        out = []
        for boxes_list in per_frame:
            boxes = np.concatenate(boxes_list) if boxes_list else np.zeros((0, 9))
            boxes = boxes[_nms(boxes, s.pnet_nms[1])]
            out.append(_square(_regress(boxes[:, :5], boxes[:, 5:9])))
        return out

    def _refine(self, frames: list[np.ndarray], candidates: list[np.ndarray], s: DetectorSettings) -> list[np.ndarray]:
        """RNet rejects most PNet proposals and tightens the rest."""
        counts = [len(c) for c in candidates]
        if sum(counts) == 0:
            return candidates
        crops = np.concatenate([_crops(f, c, 24) for f, c in zip(frames, candidates, strict=True)])
        offsets, probs = self._nets.rnet(crops)
        out, start = [], 0
        for boxes, count in zip(candidates, counts, strict=True):
            offset, prob = offsets[start : start + count], probs[start : start + count, 1]
            start += count
            keep = prob > s.rnet_threshold
            boxes = np.concatenate([boxes[keep, :4], prob[keep, None]], 1)
            offset = offset[keep]
            kept = _nms(boxes, s.rnet_nms)
            out.append(_square(_regress(boxes[kept], offset[kept])))
        return out

    def _output(
        self, frames: list[np.ndarray], candidates: list[np.ndarray], s: DetectorSettings
    ) -> list[list[DetectedFace]]:
        """ONet scores, regresses and places the 5 landmarks."""
        counts = [len(c) for c in candidates]
        if sum(counts) == 0:
            return [[] for _ in frames]
        crops = np.concatenate([_crops(f, c, 48) for f, c in zip(frames, candidates, strict=True)])
        offsets, points, probs = self._nets.onet(crops)
        results: list[list[DetectedFace]] = []
        start = 0
        for frame, boxes, count in zip(frames, candidates, counts, strict=True):
            offset = offsets[start : start + count]
            point, prob = points[start : start + count], probs[start : start + count, 1]
            start += count
            keep = prob > s.min_score
            boxes, offset, point, prob = boxes[keep], offset[keep], point[keep], prob[keep]
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            xs = boxes[:, 0:1] + point[:, 0:5] * w[:, None]
            ys = boxes[:, 1:2] + point[:, 5:10] * h[:, None]
            boxes = _regress(np.concatenate([boxes[:, :4], prob[:, None]], 1), offset)
            kept = _nms(boxes, s.onet_nms)
            height, width = frame.shape[:2]
            faces = []
            for i in kept:
                x1, y1 = max(boxes[i, 0], 0.0), max(boxes[i, 1], 0.0)
                x2, y2 = min(boxes[i, 2], width), min(boxes[i, 3], height)
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                faces.append(
                    DetectedFace(
                        box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                        score=float(prob[i]),
                        landmarks=tuple((float(x), float(y)) for x, y in zip(xs[i], ys[i], strict=True)),
                    )
                )
            faces.sort(key=lambda f: f.score, reverse=True)
            results.append(faces)
        return results
