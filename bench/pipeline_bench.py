"""Detector and embedder latency on this machine; prints a Markdown table.

    python bench/pipeline_bench.py [--frames 60] [--min-face-size 60]

Frames are 640x480: from the 640x360 clip in ../shared/data (letterboxed) when present,
otherwise from the demo photos the `face_recognition` sdist ships (scaled and letterboxed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO.parent / "shared" / "data" / "face_recognition-examples" / "examples" / "short_hamilton_clip.mp4"


def letterbox(image: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def bench_frames(count: int) -> tuple[list[np.ndarray], str]:
    if CLIP.is_file():
        capture = cv2.VideoCapture(str(CLIP))
        frames = []
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(letterbox(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        if frames:
            return frames, f"{CLIP.name} (640x360 letterboxed to 640x480)"
    from services.core import assets
    from services.core.images import decode_image

    photos = [decode_image(p.read_bytes()) for n, p in sorted(assets.demo_photos().items()) if n.endswith(".jpg")]
    return [letterbox(photos[i % len(photos)]) for i in range(count)], "face_recognition sdist photos at 640x480"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def row(name: str, samples: list[float], per: int = 1) -> str:
    values = sorted(s / per for s in samples)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"| {name} | {statistics.median(values):.1f} | {p95:.1f} | {len(samples)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--min-face-size", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import tensorflow as tf

    from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
    from services.embedder.models import load_embedder

    started = time.perf_counter()
    detector = MtcnnDetector(DetectorSettings(min_face_size=args.min_face_size))
    detector.warm_up()
    detector_load = time.perf_counter() - started
    embedder = load_embedder()

    frames, source = bench_frames(args.frames)
    detector.detect(frames[:2])
    found = [len(detector.detect([f])[0]) for f in frames]
    detect_ms = [timed(lambda f=f: detector.detect([f]), 1)[0] for f in frames]
    detect_batch = timed(lambda: detector.detect(frames[:8]), max(3, args.repeats // 5))

    crops = np.random.default_rng(0).integers(0, 256, (16, 150, 150, 3), dtype=np.uint8)
    embedder.embed(crops[:1])
    embedder.embed(crops)
    module = embedder._module  # the bare model, without flip averaging
    raw = {n: tf.constant(crops[:n]) for n in (1, 16)}
    module.embed(raw[1])
    module.embed(raw[16])

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TensorFlow {tf.__version__}, {platform.python_version()}")
    print(f"frames: {source}; detector min_face_size={args.min_face_size}; "
          f"faces found per frame: median {statistics.median(found):.0f}")
    print()
    print("| step | median ms | p95 ms | samples |")
    print("|---|---|---|---|")
    print(row("detect, 1 frame 640x480", detect_ms))
    print(row("detect, batch of 8 frames (per frame)", detect_batch, per=8))
    print(row("embed, batch 1 (per face, flip-averaged = 2 passes)",
              timed(lambda: embedder.embed(crops[:1]), args.repeats)))
    print(row("embed, batch 16 (per face, flip-averaged)", timed(lambda: embedder.embed(crops), args.repeats), per=16))
    print(row("model only, batch 1 (per face)", timed(lambda: module.embed(raw[1]), args.repeats)))
    print(row("model only, batch 16 (per face)", timed(lambda: module.embed(raw[16]), args.repeats), per=16))
    print()
    print(f"load: embedder SavedModel {embedder.load_seconds * 1000:.0f} ms; "
          f"detector build + first trace {detector_load * 1000:.0f} ms")


if __name__ == "__main__":
    main()
