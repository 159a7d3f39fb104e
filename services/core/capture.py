"""How a face was captured, from its pixels: grey (IR), dark, blurry, blocky (JPEG) or unevenly lit.

Two photos of different people taken in the dark, in grey scale or out of focus look more
alike to the embedding network than two clean ones, so the same distance threshold lets more
strangers in (bench/capture_conditions_lfw.py measured up to 12x the target FAR with both photos
dark and noisy). The detector measures a few cheap numbers on each face's box
(`capture_features`, ~0.2 ms a face) and flags the face by the rules below; the matcher then
lowers a flagged probe's threshold by the model card's `capture_tightening` for its flags.

The cut-offs were chosen by bench/capture_conditions_lfw.py on one half of LFW's people, each
photo clean and under seven synthetic degradations (grey/IR, low light with noise, side light,
low resolution, heavy JPEG, motion blur, off-angle), as the cut-off that best tells the
condition it targets from clean photos (Youden's J); they are properties of images, not of a
model. Real IR, sensor noise and compression differ from synthetic ones: a site should check
what its cameras raise (the flags are in every decision's audit record via the probe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

FEATURES = ("width", "luma_mean", "luma_std", "saturation", "sharpness", "detail", "balance", "blockiness")
_SHARPNESS_SIDE = 64  # the box is resampled to this side before measuring sharpness


def _box_pixels(image: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, int, int]:
    """The box's pixels (clipped to the frame) and its top-left corner."""
    x, y, w, h = box
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(image.shape[1], int(round(x + w))), min(image.shape[0], int(round(y + h)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ValueError(f"face box {box} leaves fewer than 4x4 pixels inside the "
                         f"{image.shape[1]}x{image.shape[0]} frame")
    return image[y0:y1, x0:x1], x0, y0


def capture_features(image: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, float]:
    """Cheap measurements of one face in its RGB uint8 frame (box = x, y, width, height):
    - width: the box's width in px;
    - luma_mean, luma_std: luminance (0-255) inside the box;
    - saturation: mean HSV saturation (0-1) inside the box, 0 for a grey image;
    - sharpness: variance of the Laplacian of the box's luminance resampled to 64 px (so not a
      function of the face's size);
    - detail: sharpness divided by the mean squared gradient of the same 64 px box: the box's
      typical spatial frequency, which blur and low resolution lower whatever the contrast,
      brightness or lighting gradient (noise raises it);
    - balance: log ratio of the mean luminance of the box's left and right halves (0 = even light);
    - blockiness: how much larger luminance steps are across the frame's 8 px JPEG grid than
      beside it, inside the box (~1 for a clean photo)."""
    pixels, x0, y0 = _box_pixels(image, box)
    luma = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    saturation = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)[..., 1]
    small = cv2.resize(luma, (_SHARPNESS_SIDE, _SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(small, cv2.CV_32F).var())
    gradient = float(np.mean(cv2.Sobel(small, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(small, cv2.CV_32F, 0, 1) ** 2))
    half = luma.shape[1] // 2
    balance = float(np.log((luma[:, :half].mean() + 1.0) / (luma[:, half:].mean() + 1.0)))
    steps = np.abs(np.diff(luma, axis=1))  # step between column j and j+1 of the box
    on_grid = (np.arange(steps.shape[1]) + x0) % 8 == 7  # frame columns 8k-1 | 8k: a JPEG block edge
    blockiness = float((steps[:, on_grid].mean() + 0.5) / (steps[:, ~on_grid].mean() + 0.5)) if on_grid.any() else 1.0
    return {
        "width": float(box[2]),
        "luma_mean": float(luma.mean()),
        "luma_std": float(luma.std()),
        "saturation": float(saturation.mean()) / 255.0,
        "sharpness": sharpness,
        "detail": sharpness / (gradient + 1.0),
        "balance": balance,
        "blockiness": blockiness,
    }


@dataclass(frozen=True)
class FlagRule:
    """A probe carries `flag` when `feature` is below (`below`=True) or above `cutoff`;
    `absolute` compares the feature's magnitude (for signed features such as `balance`)."""

    flag: str
    feature: str
    cutoff: float
    below: bool = True
    absolute: bool = False

    def applies(self, features: Mapping[str, float]) -> bool:
        value = features[self.feature]
        value = abs(value) if self.absolute else value
        return value < self.cutoff if self.below else value > self.cutoff


# Chosen by bench/capture_conditions_lfw.py --seed 0 on its calibration half (see the module docstring).
CAPTURE_RULES = (
    FlagRule("grey", "saturation", 0.02442, below=True),
    FlagRule("dark", "luma_mean", 50.9, below=True),
    FlagRule("blurry", "detail", 0.02357, below=True),
    FlagRule("blocky", "blockiness", 1.482, below=False),
    FlagRule("uneven", "balance", 0.3031, below=False, absolute=True),
)
CAPTURE_FLAGS = tuple(rule.flag for rule in CAPTURE_RULES)


def capture_flags(image: np.ndarray, box: tuple[float, float, float, float],
                  rules: tuple[FlagRule, ...] = CAPTURE_RULES) -> tuple[str, ...]:
    """The flags one face raises (in CAPTURE_FLAGS order); none for a box too small to measure."""
    try:
        features = capture_features(image, box)
    except ValueError:  # fewer than 4x4 pixels of the box in the frame: nothing to measure
        return ()
    return tuple(rule.flag for rule in rules if rule.applies(features))
