"""Where the detector's time goes per camera frame; prints a Markdown table.

    python bench/detector_profile.py [--frames 100] [--min-face-size 60 40]
    (or `make bench-detector-profile`)

Frames are 640x480 JPEG (quality 90), as door cameras send them: the clip in ../shared/data
letterboxed when present, else the face_recognition demo photos. Each frame goes through what
the detector service does with it, one frame per call (a door's frame as the gateway sends it
when doors are not busy), each stage timed: decode, PNet over the pyramid (the network calls
alone, and the rest: resizing, NMS), RNet, ONet, and the aligned crops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from collections import defaultdict
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline_bench import bench_frames  # noqa: E402

from services.core import ndarray  # noqa: E402
from services.core.model_card import DEFAULT_MODEL, load_card  # noqa: E402
from services.detector.alignment import align_face  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector  # noqa: E402


class Timed:
    """A network call that adds its wall time to `spent[name]`."""

    def __init__(self, call: Any, name: str, spent: dict[str, float]) -> None:
        self._call, self._name, self._spent = call, name, spent

    def __call__(self, *args: Any) -> Any:
        started = time.perf_counter()
        out = self._call(*args)
        out = tuple(t.numpy() for t in out)  # the result is ready when this returns
        self._spent[self._name] += time.perf_counter() - started
        return out


class Ready:
    """Wraps NumPy results back so the cascade's `.numpy()` calls work unchanged."""

    def __init__(self, array: Any) -> None:
        self._array = array

    def numpy(self) -> Any:
        return self._array


def profile(detector: MtcnnDetector, jpegs: list, settings: DetectorSettings, crop_size: int,
            template: Any) -> tuple[dict[str, list[float]], int]:
    spent: dict[str, float] = defaultdict(float)
    for name in ("_pnet", "_rnet", "_onet"):
        call = getattr(detector, name)
        timed = Timed(call, name[1:], spent)
        setattr(detector, name, lambda x, t=timed: tuple(Ready(a) for a in t(x)))
    per_frame: dict[str, list[float]] = defaultdict(list)
    faces_found = 0
    for message in jpegs:
        spent.clear()
        t0 = time.perf_counter()
        frame = ndarray.decode_frame(message)
        t1 = time.perf_counter()
        candidates = detector._propose([frame], [settings.min_face_size], settings)
        t2 = time.perf_counter()
        candidates = detector._refine([frame], candidates, settings)
        t3 = time.perf_counter()
        faces = detector._output([frame], candidates, settings)[0]
        t4 = time.perf_counter()
        for face in faces:
            align_face(frame, face.landmarks, template, crop_size)
        t5 = time.perf_counter()
        faces_found += len(faces)
        per_frame["decode (JPEG -> RGB)"].append(t1 - t0)
        per_frame["PNet network, all pyramid levels"].append(spent["pnet"])
        per_frame["PNet rest: pyramid resizes, NMS, boxes"].append(t2 - t1 - spent["pnet"])
        per_frame["RNet (crops + network + NMS)"].append(t3 - t2)
        per_frame["ONet (crops + network + NMS)"].append(t4 - t3)
        per_frame["aligned crops"].append(t5 - t4)
        per_frame["total"].append(t5 - t0)
    return per_frame, faces_found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--min-face-size", type=int, nargs="+", default=[60, 40])
    args = parser.parse_args()
    frames, source = bench_frames(args.frames)
    jpegs = [ndarray.encode(f, "jpeg", jpeg_quality=90) for f in frames]
    card = load_card(DEFAULT_MODEL)
    detector = MtcnnDetector()
    detector.warm_up()
    print(f"{dt.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; {len(frames)} frames: {source}")
    for min_face in args.min_face_size:
        settings = DetectorSettings(min_face_size=min_face)
        profile(detector, jpegs[:5], settings, card.input_size, card.landmark_template)  # warm every shape
        per_frame, faces = profile(detector, jpegs, settings, card.input_size, card.landmark_template)
        total = statistics.mean(per_frame["total"])
        print(f"\nmin face {min_face} px: {faces} faces found")
        print("| stage | ms / frame (mean) | p95 | share |")
        print("|---|---|---|---|")
        for stage, values in per_frame.items():
            ordered = sorted(values)
            mean = statistics.mean(values)
            print(f"| {stage} | {1000 * mean:.1f} | {1000 * ordered[int(0.95 * (len(ordered) - 1))]:.1f} | "
                  f"{100 * mean / total:.0f}% |")


if __name__ == "__main__":
    main()
