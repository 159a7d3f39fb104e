"""A face quality score for choosing which frames of a person to embed."""

from __future__ import annotations

import cv2
import numpy as np

from services.detector.faces import DetectedFace

GOOD_SIZE = 100.0  # px: faces this large carry all the detail the 150 px crop can hold
GOOD_SHARPNESS = 150.0  # variance of the Laplacian of a sharp 150 px grey crop


def face_quality(face: DetectedFace, crop: np.ndarray) -> float:
    """In [0, 1]: the product of a size term and a sharpness term (blur and tiny faces score low)."""
    size = min(1.0, face.size / GOOD_SIZE)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    sharpness = min(1.0, float(cv2.Laplacian(grey, cv2.CV_64F).var()) / GOOD_SHARPNESS)
    return round(size * sharpness * face.score, 4)
