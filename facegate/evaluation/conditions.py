"""Capture conditions: what door cameras do to a face, for bench/capture_conditions_lfw.py.

Pure (NumPy and OpenCV, no model):
- `DEGRADATIONS`: `(image, rng) -> image` functions applied to a decoded RGB uint8 photo *before*
  detection (so a face the detector no longer finds counts as a miss). Each draws its strength
  from `rng`; `rng_for(seed, condition, name)` gives every (condition, photo) its own generator,
  so a result does not depend on which other photos were processed or in what order.
- `choose_cutoff`, `flag_rows` and `row_flags`: how the bench re-derives the cut-offs of the
  capture flags (`services.core.capture.CAPTURE_RULES`, which the detector applies to every face)
  on its calibration half, and applies them to whole feature tables at once.
- `pair_thresholds`: the threshold the matcher applies to every (template, probe) pair at once,
  from the probe's capture flags and the template's (`ModelCard.threshold_for`).

The degradations assume LFW's framing (250 px photos centred on a face ~105 px wide); their
docstrings say where that matters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from services.core.capture import FlagRule
from services.core.model_card import ModelCard

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

FACE_SHARE = 0.42  # LFW deep-funneled: the face is ~105 px wide in the 250 px photo


def rng_for(seed: int, condition: str, name: str) -> np.random.Generator:
    """The generator for one photo under one condition: a function of (seed, condition, name) only."""
    digest = hashlib.sha256(f"{condition}\0{name}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def clean(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo as it is (the baseline)."""
    return image.copy()


def grey(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An IR-like single channel: the red channel, contrast-stretched (1st-99th percentile to
    0-255), replicated to 3 channels. Red rather than luminance because skin under 850 nm
    illumination looks like its red response (light scattered under the skin: flat, pale, few
    blemishes, pale lips) rather than like a monochrome visible-light photo, and IR cameras
    stretch their range with automatic gain."""
    red = image[..., 0].astype(np.float32)
    low, high = np.percentile(red, (1, 99))
    stretched = _to_uint8((red - low) * 255.0 / max(float(high - low), 1.0))
    return np.repeat(stretched[..., None], 3, axis=2)


def low_light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-exposed: gamma 2.0-2.5 and a gain of 0.25-0.35, then Gaussian sensor noise with a
    sigma of 6-10 (0-255 units), independent per pixel and channel."""
    gamma, gain, sigma = rng.uniform(2.0, 2.5), rng.uniform(0.25, 0.35), rng.uniform(6.0, 10.0)
    dark = 255.0 * gain * (image.astype(np.float32) / 255.0) ** gamma
    return _to_uint8(dark + rng.normal(0.0, sigma, image.shape))


def side_light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hard light from one side (left or right at random): a multiplicative gain rising linearly
    from 0.2 to 1.4 across the central half of the width (where an LFW face is), constant
    beyond it; values clipped to 255."""
    width = image.shape[1]
    x = np.arange(width, dtype=np.float32) / max(width - 1, 1)
    gain = np.interp(x, (0.25, 0.75), (0.2, 1.4)).astype(np.float32)
    if rng.random() < 0.5:
        gain = gain[::-1]
    return _to_uint8(image.astype(np.float32) * gain[None, :, None])


def low_res(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A far or cheap camera: downscaled so the face is 40-60 px wide (face = `FACE_SHARE` of
    the width), then upsampled back to the original size (bilinear), as a stream scaled up for
    display would be."""
    height, width = image.shape[:2]
    scale = rng.uniform(40.0, 60.0) / (FACE_SHARE * width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encoded as JPEG at quality 10-20 (a starved video link)."""
    quality = int(rng.integers(10, 21))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("OpenCV could not decode the JPEG it encoded")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def motion_kernel(length: int, angle_degrees: float) -> np.ndarray:
    """A normalised line kernel of `length` px through the centre at `angle_degrees`."""
    size = length if length % 2 else length + 1
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, (size - length) // 2 : (size - length) // 2 + length] = 1.0
    rotation = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle_degrees, 1.0)
    rotated = np.asarray(cv2.warpAffine(kernel, rotation, (size, size), flags=cv2.INTER_LINEAR), np.float32)
    return rotated / rotated.sum()


def motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A person walking past a slow shutter: a linear blur 9-15 px long at a random angle."""
    kernel = motion_kernel(int(rng.integers(9, 16)), float(rng.uniform(0.0, 180.0)))
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def off_angle_homography(width: int, height: int, yaw_degrees: float, distance: float = 1.5) -> np.ndarray:
    """The homography of a plane through the image centre turned by `yaw_degrees` about the
    vertical axis, seen by a pinhole camera `distance` image-widths away (positive yaw: the
    image's right side turns away from the camera and shrinks)."""
    yaw = np.radians(yaw_degrees)
    focal = distance * width
    cx, cy = width / 2.0, height / 2.0
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    x, y = corners[:, 0] - cx, corners[:, 1] - cy
    depth = focal + x * np.sin(yaw)
    seen = np.stack([cx + focal * x * np.cos(yaw) / depth, cy + focal * y / depth], axis=1).astype(np.float32)
    return cv2.getPerspectiveTransform(corners, seen)


def off_angle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera mounted beside the door: the photo seen 25-35 degrees off axis, to the left or
    right at random (a perspective warp: the far side foreshortened and smaller). A planar
    warp has no self-occlusion (the nose does not hide the far cheek), so it is milder than
    a real head turned as far."""
    height, width = image.shape[:2]
    yaw = rng.uniform(25.0, 35.0) * (1 if rng.random() < 0.5 else -1)
    matrix = off_angle_homography(width, height, yaw)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)


DEGRADATIONS: dict[str, Degradation] = {
    "clean": clean,
    "grey": grey,
    "low_light": low_light,
    "side_light": side_light,
    "low_res": low_res,
    "jpeg": jpeg,
    "motion_blur": motion_blur,
    "off_angle": off_angle,
}


def choose_cutoff(negative: np.ndarray, positive: np.ndarray, below: bool) -> float:
    """The cut-off that best tells `positive` values (to be flagged) from `negative` ones (not):
    the largest flagged share of positives minus flagged share of negatives (Youden's J), in
    the middle of the range of cut-offs that reach it. NaNs (faces not found) are ignored."""
    negative = np.sort(np.asarray(negative, np.float64)[~np.isnan(negative)])
    positive = np.sort(np.asarray(positive, np.float64)[~np.isnan(positive)])
    if len(negative) == 0 or len(positive) == 0:
        raise ValueError("choosing a cut-off needs values of both kinds")
    values = np.unique(np.concatenate([negative, positive]))
    if len(values) < 2:
        return float(values[0])
    cuts = (values[:-1] + values[1:]) / 2
    hit = np.searchsorted(positive, cuts) / len(positive)  # share below each cut
    false = np.searchsorted(negative, cuts) / len(negative)
    gain = hit - false if below else false - hit
    best = np.flatnonzero(gain >= gain.max() - 1e-12)
    return float((cuts[best[0]] + cuts[best[-1]]) / 2)


def flag_rows(rules: Iterable[FlagRule], table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per flag, which rows of a feature table (feature -> column) carry it: `FlagRule.applies`
    on whole columns (a row with a NaN feature, e.g. a detector miss, raises no flag)."""
    out: dict[str, np.ndarray] = {}
    for rule in rules:
        values = np.asarray(table[rule.feature], np.float64)
        values = np.abs(values) if rule.absolute else values
        hit = values < rule.cutoff if rule.below else values > rule.cutoff
        out[rule.flag] = out.get(rule.flag, np.zeros(len(values), bool)) | hit
    return out


def row_flags(rules: Iterable[FlagRule], table: Mapping[str, np.ndarray]) -> list[tuple[str, ...]]:
    """Each row's capture flags, in the rules' order, as `capture_flags` returns them for one face
    (none for a row with a NaN feature)."""
    rows = flag_rows(rules, table)
    count = len(next(iter(table.values())))
    return [tuple(flag for flag, hit in rows.items() if hit[i]) for i in range(count)]


def pair_thresholds(card: ModelCard, far: float | None, identities: int | None,
                    template_flags: Sequence[tuple[str, ...] | None],
                    probe_flags: Sequence[tuple[str, ...]]) -> np.ndarray:
    """(templates x probes) matrix of `card.threshold_for(far, identities, probe_flags[j],
    template_flags[i])`: the threshold the matcher applies to probe j when its nearest template
    is i (a template's flags None: not known, as for a person enrolled before capture flags were
    kept). Computed once per distinct pair of flag sets."""
    templates: dict[tuple[str, ...] | None, int] = {}
    probes: dict[tuple[str, ...], int] = {}
    template_kind = np.array([templates.setdefault(f, len(templates)) for f in template_flags], np.intp)
    probe_kind = np.array([probes.setdefault(f, len(probes)) for f in probe_flags], np.intp)
    table = np.array([[card.threshold_for(far, identities, p, t) for p in probes] for t in templates],
                     np.float64).reshape(len(templates), len(probes))
    return table[template_kind[:, None], probe_kind[None, :]]
