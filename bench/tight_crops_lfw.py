"""Tight face crops on LFW: does the detector find a face in a photo cut to the face's own box,
as it is and with the enrolment path's retry (services/detector/padding.py), and is it the same
person? (issue 14, "tight crops"; the README's figures come from this script.)

    python bench/tight_crops_lfw.py --data ../shared/data/lfw-deepfunneled [--people 200] [--seed 14]

For each of `--people` people (seeded, one photo each): the largest face of the full photo at the
detector service's defaults (min face 40 px, score 0.95); the photo cut to that face's box (no
margin), resized to 100/150/200/300 px wide, in colour and in grey; each detected as it is and,
if nothing is found, again inside the border. "same person" = the face found is within the model
card's FAR 1e-3 threshold of the full photo's face. Prints a table; ~5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facegate.evaluation.pipeline import FacePipeline, distance
from services.core.images import decode_image
from services.detector.mtcnn_cascade import DetectorSettings
from services.detector.padding import padded

SIZES = (100, 150, 200, 300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/lfw-deepfunneled"))
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no LFW images at {args.data} (../shared/data/lfw-deepfunneled): nothing to measure", file=sys.stderr)
        return 2
    pipe = FacePipeline(detector_settings=DetectorSettings(min_face_size=40, min_score=0.95))
    threshold = pipe.embedder.card.threshold_for(1e-3)
    people = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    chosen = random.Random(args.seed).sample(people, min(args.people, len(people)))
    # (size, grey) -> [found as is, found with the retry, same person, ms as is, ms with the retry]
    counts: dict[tuple[int, bool], list[float]] = {(s, g): [0, 0, 0, 0.0, 0.0] for s in SIZES for g in (False, True)}
    measured = 0
    for person in chosen:
        frame = decode_image(sorted((args.data / person).iterdir())[0].read_bytes())
        faces = pipe.detector.detect([frame])[0]
        if not faces:
            continue
        measured += 1
        face = max(faces, key=lambda f: f.size)
        reference = pipe.embed_faces(frame, [face])[0].embedding
        x, y, w, h = (round(v) for v in face.box)
        tight = frame[y:y + h, x:x + w]
        for grey in (False, True):
            crop = cv2.cvtColor(cv2.cvtColor(tight, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) if grey else tight
            for size in SIZES:
                photo = cv2.resize(crop, (size, max(1, round(size * h / w))), interpolation=cv2.INTER_AREA)
                row = counts[(size, grey)]
                started = time.perf_counter()
                found = pipe.detector.detect([photo])[0]
                row[3] += (time.perf_counter() - started) * 1000
                searched = photo
                if found:
                    row[0] += 1
                else:
                    searched = padded(photo)[0]
                    started = time.perf_counter()
                    found = pipe.detector.detect([searched])[0]
                    row[4] += (time.perf_counter() - started) * 1000
                if found:
                    row[1] += 1
                    best = max(found, key=lambda f: f.size)
                    if distance(pipe.embed_faces(searched, [best])[0].embedding, reference) <= threshold:
                        row[2] += 1
    print(f"{measured} LFW people (seed {args.seed}), faces cut to their box; same person = within {threshold:.4f}")
    print("| size | colour | found as it is | found with the retry | same person | ms as is (mean) | "
          "ms of the retry (mean, when needed) |")
    print("|---|---|---|---|---|---|---|")
    for (size, grey), (plain, retried, same, ms, ms_retry) in counts.items():
        retries = measured - plain  # the photos searched a second time
        print(f"| {size} | {'grey' if grey else 'colour'} | {plain / measured:.1%} | {retried / measured:.1%} | "
              f"{same / max(retried, 1):.1%} | {ms / measured:.0f} | {ms_retry / max(retries, 1):.0f} |")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
