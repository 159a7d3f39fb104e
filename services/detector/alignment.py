"""Face alignment: 5 landmarks -> similarity transform -> the crop an embedding model expects.

The target positions of the 5 landmarks come from the model's card (`landmark_template`), so
each model gets the crop geometry it was trained on. This is the only place crops are made.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation+uniform-scale+translation matrix mapping `source` points onto `target`
    in the least-squares sense (OpenCV's estimator, refined with Levenberg-Marquardt over all points)."""
    if np.ptp(source, axis=0).max() < 1e-3 or np.ptp(target, axis=0).max() < 1e-3:
        raise ValueError("landmarks are degenerate (coincident points); cannot align this face")
    matrix, _ = cv2.estimateAffinePartial2D(
        source.astype(np.float64),
        target.astype(np.float64),
        method=cv2.RANSAC,
        ransacReprojThreshold=1e6,  # every point is an inlier: a plain least-squares fit
        refineIters=20,
    )
    if matrix is None:
        raise ValueError("landmarks are degenerate (coincident points); cannot align this face")
    return matrix


def align_face(
    frame: np.ndarray,
    landmarks: Sequence[tuple[float, float]],
    template: Sequence[tuple[float, float]],
    size: int,
) -> np.ndarray:
    """Warp `frame` (H x W x 3 uint8) so the landmarks land on the template; returns size x size x 3."""
    source = np.asarray(landmarks, dtype=np.float64)
    target = np.asarray(template, dtype=np.float64)
    if source.shape != target.shape or source.shape[1:] != (2,):
        raise ValueError(f"need as many landmarks as template points; got {source.shape} vs {target.shape}")
    matrix = similarity_transform(source, target)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # A face much larger than the crop: shrink the area it comes from with an area filter
        # first, or bilinear sampling would alias. Only the region the crop covers is resized.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
        x1, y1 = np.floor(corners.min(0)).astype(int) - 2
        x2, y2 = np.ceil(corners.max(0)).astype(int) + 2
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 > x1 and y2 > y1:
            region = frame[y1:y2, x1:x2]
            factor = 2.0 * scale
            shrunk = cv2.resize(
                region,
                (max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor))),
                interpolation=cv2.INTER_AREA,
            )
            fx, fy = shrunk.shape[1] / region.shape[1], shrunk.shape[0] / region.shape[0]
            source = (source - [x1, y1]) * [fx, fy]
            frame = shrunk
            matrix = similarity_transform(source, target)
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
