"""Where the detector's time goes per camera frame; prints a Markdown table.

    python bench/detector_profile.py [--frames 100] [--min-face-size 60 40] [--runtime litert tensorflow]
    (or `make bench-detector-profile`)

Frames are 640x480 JPEG (quality 90), as door cameras send them: the clip in ../shared/data
letterboxed when present, else the face_recognition demo photos. Each frame goes through what
the detector service does with it, one frame per call (a door's frame as the gateway sends it
when doors are not busy), each stage timed: decode, PNet over the pyramid, RNet, ONet (each the
network calls alone, and the rest: resizing, crops, NMS), and the aligned crops; with the
networks on each runtime (services/detector/networks.py). Then, on the clip at a door camera's
rate, each frame after one with faces searched, and looked at again only where the previous
frame's faces were (the gateway's --follow-faces): the cost of each, and how many faces the
look finds of those the search found again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import statistics
import time
from collections import defaultdict
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from pipeline_bench import CLIP, bench_frames  # noqa: E402

from services.core import ndarray  # noqa: E402
from services.core.model_card import DEFAULT_MODEL, load_card  # noqa: E402
from services.detector.alignment import align_face  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector, iou  # noqa: E402
from services.detector.networks import RUNTIMES, Networks  # noqa: E402


class TimedNetworks:
    """The detector's networks, each call's wall time added to `spent[network]`."""

    def __init__(self, nets: Networks, spent: dict[str, float]) -> None:
        self._nets, self._spent = nets, spent

    def _timed(self, name: str, batch: np.ndarray) -> Any:
        started = time.perf_counter()
        out = getattr(self._nets, name)(batch)
        self._spent[name] += time.perf_counter() - started
        return out

    def pnet(self, images: np.ndarray) -> Any:
        return self._timed("pnet", images)

    def rnet(self, crops: np.ndarray) -> Any:
        return self._timed("rnet", crops)

    def onet(self, crops: np.ndarray) -> Any:
        return self._timed("onet", crops)


def profile(detector: MtcnnDetector, jpegs: list, settings: DetectorSettings, crop_size: int,
            template: Any) -> tuple[dict[str, list[float]], int]:
    spent: dict[str, float] = defaultdict(float)
    nets = detector._nets
    detector._nets = TimedNetworks(nets, spent)
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
        per_frame["RNet network"].append(spent["rnet"])
        per_frame["RNet rest: 24 px crops, NMS"].append(t3 - t2 - spent["rnet"])
        per_frame["ONet network"].append(spent["onet"])
        per_frame["ONet rest: 48 px crops, NMS, landmarks"].append(t4 - t3 - spent["onet"])
        per_frame["aligned crops"].append(t5 - t4)
        per_frame["total"].append(t5 - t0)
    detector._nets = nets
    return per_frame, faces_found


def follow_profile(detector: MtcnnDetector, jpegs: list, settings: DetectorSettings) -> dict[str, Any]:
    """Each frame after one with faces, two ways (`MtcnnDetector.detect`, decode included): a
    search, and a look again where the previous frame's search found faces (`expected`: what
    the gateway does for undecided tracked faces, --follow-faces). Counts the previous frame's
    faces the search found again, and how many of those the look found."""
    times: dict[str, list[float]] = {"search": [], "look again": []}
    kept = found = 0
    previous: list = []
    for message in jpegs:
        started = time.perf_counter()
        frame = ndarray.decode_frame(message)
        decoded = time.perf_counter()
        searched = detector.detect([frame], settings)[0]
        done = time.perf_counter()
        if previous:
            looked = detector.detect([frame], settings, [[face.box for face in previous]])[0]
            times["search"].append(done - started)
            times["look again"].append(time.perf_counter() - done + decoded - started)
            for face in previous:
                again = [s for s in searched if iou(s.box, face.box) > 0.3]
                kept += bool(again)
                found += bool(again) and any(iou(f.box, again[0].box) > 0.5 for f in looked)
        previous = searched
    return {"times": times, "kept": kept, "found": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--min-face-size", type=int, nargs="+", default=[60, 40])
    parser.add_argument("--runtime", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--follow-fps", type=float, default=5.0,
                        help="looking again vs searching: the clip's frames at this rate (a door camera's)")
    args = parser.parse_args()
    frames, source = bench_frames(args.frames)
    jpegs = [ndarray.encode(f, "jpeg", jpeg_quality=90) for f in frames]
    card = load_card(DEFAULT_MODEL)
    print(f"{dt.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; {len(frames)} frames: {source}")
    for runtime, min_face in itertools.product(args.runtime, args.min_face_size):
        detector = MtcnnDetector(runtime=runtime)
        detector.warm_up()
        settings = DetectorSettings(min_face_size=min_face)
        profile(detector, jpegs[:5], settings, card.input_size, card.landmark_template)  # warm every shape
        per_frame, faces = profile(detector, jpegs, settings, card.input_size, card.landmark_template)
        total = statistics.mean(per_frame["total"])
        print(f"\nnetworks on {runtime}, min face {min_face} px: {faces} faces found")
        print("| stage | ms / frame (mean) | p95 | share |")
        print("|---|---|---|---|")
        for stage, values in per_frame.items():
            ordered = sorted(values)
            mean = statistics.mean(values)
            print(f"| {stage} | {1000 * mean:.1f} | {1000 * ordered[int(0.95 * (len(ordered) - 1))]:.1f} | "
                  f"{100 * mean / total:.0f}% |")
    if not CLIP.is_file():  # consecutive frames of a moving scene: the demo photos are not
        print(f"\nlooking again vs searching: skipped, it needs the clip ({CLIP})")
        return
    capture = cv2.VideoCapture(str(CLIP))
    step = max(1, round(capture.get(cv2.CAP_PROP_FPS) / args.follow_fps))
    clip, source = bench_frames(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))  # all of it, at a door camera's rate
    door = [ndarray.encode(f, "jpeg", jpeg_quality=90) for f in clip[::step]]
    detector, settings = MtcnnDetector(), DetectorSettings(min_face_size=min(args.min_face_size))
    follow_profile(detector, door[:5], settings)  # warm every shape
    result = follow_profile(detector, door, settings)
    print(f"\nlooking again where the previous frame's faces were vs searching, {len(door)} frames of {source} "
          f"at {args.follow_fps:g} fps, min face {settings.min_face_size} px, networks on litert; of "
          f"{result['kept']} faces the search found again in the next frame, looking again found {result['found']}")
    print("| per frame after one with faces | ms (mean) | p95 |")
    print("|---|---|---|")
    for look, values in result["times"].items():
        ordered = sorted(values)
        print(f"| {look} (decode included) | {1000 * statistics.mean(values):.1f} | "
              f"{1000 * ordered[int(0.95 * (len(ordered) - 1))]:.1f} |")


if __name__ == "__main__":
    main()
