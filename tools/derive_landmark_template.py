"""Derive where MTCNN's 5 landmarks sit in dlib's 150x150 face chip (padding 0.25).

dlib's ResNet was trained on chips cut by dlib's own aligner (5-point shape predictor ->
`get_face_chip(img, shape, 150, 0.25)`). To feed it the same geometry from MTCNN landmarks we
need the mean MTCNN landmark positions in that chip frame. We cut a wider chip with dlib
(size 300, padding 1.25: same alignment, more context so MTCNN sees a whole head), run our
MTCNN on it, and map the points into the 150/0.25 frame, which is a fixed linear map because
dlib's padding scales the mean-face box about the chip centre. Dev-time only: needs dlib-bin.

    python tools/derive_landmark_template.py --lfw ../shared/data/lfw-deepfunneled --count 1500
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def chip_box(size: int, padding: float) -> tuple[float, float]:
    """Where dlib's [0, 1] mean-face box lands in a chip: (offset, span) in chip pixels."""
    return size * padding / (1 + 2 * padding), size / (1 + 2 * padding)


def main() -> None:
    import dlib

    from services.core import assets
    from services.core.images import decode_image
    from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    files = assets.sdist_files("face_recognition_models", "0.3.0", ["*/shape_predictor_5_face_landmarks.dat"])
    predictor = dlib.shape_predictor(str(files["shape_predictor_5_face_landmarks.dat"]))
    hog = dlib.get_frontal_face_detector()
    detector = MtcnnDetector(DetectorSettings(min_face_size=40))
    images = sorted(args.lfw.glob("*/*.jpg"))
    random.Random(args.seed).shuffle(images)

    wide, narrow = chip_box(300, 1.25), chip_box(150, 0.25)
    points = []
    for path in images[: args.count]:
        image = decode_image(path.read_bytes())
        found = hog(image, 1)
        if len(found) != 1:
            continue
        chip = dlib.get_face_chip(image, predictor(image, found[0]), 300, 1.25)
        faces = detector.detect([np.ascontiguousarray(chip)])[0]
        if len(faces) != 1:
            continue
        wide_points = np.asarray(faces[0].landmarks)
        points.append((wide_points - wide[0]) / wide[1] * narrow[1] + narrow[0])
    stacked = np.stack(points)
    mean, std = stacked.mean(0), stacked.std(0)
    print(json.dumps({"faces": len(points), "landmark_template": np.round(mean, 3).tolist(),
                      "std_px": np.round(std, 2).tolist()}, indent=1))


if __name__ == "__main__":
    main()
