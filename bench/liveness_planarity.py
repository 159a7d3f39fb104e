"""Passive liveness from planarity (services/gateway/liveness.py): APCER per attack type and BPCER
(ISO/IEC 30107-3 terms), with the threshold chosen on one half of the data and reported on the other.

    python bench/liveness_planarity.py [--fps 10] [--window 10] [--lfw-people 50] [--seed 14]
    (or `make bench-liveness`; ~3 minutes on 2 cores)

Bona fide presentations: the faces of the real clip (../shared/data, 10 s of real people at an
event, 640x360 at 30 fps) found by FaceGate's own detector (MTCNN, min face 40 px, score 0.95),
linked into tracks by box overlap within a shot (cuts found from frame differences), sampled at
a door camera's rate (`--fps`) and cut into windows of `--window` frames; the 30 fps clip gives
30/fps disjoint frame sets, each cut into non-overlapping windows.

Attack presentations (no real print or replay footage was available, so they are rendered): a
still picture (an LFW photo, a face cut from the clip, the example photos) is a flat plane in
front of a pinhole camera (640x360, 60 degrees across), moving along a 3-D trajectory over the
same window; each frame is the picture warped by the plane's homography onto a background frame
of the clip with no face in it, blurred, noised and JPEG-compressed as a camera would, then run
through the same detector, so landmark noise is the detector's own (the rendering lives in
facegate/evaluation/presentation_attacks.py, shared with the door tests,
(the attack types, with their sizes and motions, are listed there). A replayed VIDEO of a real
person is not rendered: it carries real 3-D head motion and is not caught by planarity.

Split (so no number is tuned on what it is reported on): real tracks are sorted by length and
dealt alternately to test and dev (the longest to test); attack stills are split by a seeded hash
of their source (the LFW person, the example file) and the clip's faces follow their track's
half. On dev only: `live_parallax` is the smallest floor with dev APCER (all attack types) at
most `--target-apcer`; `plane_turn_degrees` is the 99th percentile of the turn read on dev prints
held still or moved (what landmark jitter alone reads). `min_snr` and the pose limits are fixed
in the module, not fitted. The table gives 95% Wilson intervals: the samples are small.
Everything is seeded; the faces are sized 60-130 px at the start of each attack, as at a door.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facegate.evaluation.presentation_attacks import (  # noqa: E402
    ATTACKS,
    MOVED,
    ROTATED,
    STILL,
    picture_of,
    render,
    trajectory,
)
from services.core.images import decode_image  # noqa: E402
from services.detector.faces import DetectedFace  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector  # noqa: E402
from services.gateway.liveness import Liveness, LivenessSettings, assess  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO.parent / "shared" / "data" / "face_recognition-examples" / "examples"
CLIP = EXAMPLES / "short_hamilton_clip.mp4"
LFW = REPO.parent / "shared" / "data" / "lfw-deepfunneled"

CUT = 20.0  # mean absolute grey difference (0-255, 64x36 thumbnails) between frames that marks a shot cut
REAL = "bona fide (real clip)"
TURN_BINS = ((5, 10), (10, 17), (17, 25), (25, 40))  # rotated prints reported by sweep angle too, degrees


@dataclass
class Presentation:
    """One window of one track: what a door would assess."""

    kind: str  # REAL or one of ATTACKS
    source: str  # the person or picture it comes from (the unit of the split)
    split: str  # "dev" or "test"
    landmarks: np.ndarray  # T x 5 x 2
    sizes: np.ndarray  # T
    sweep: float = 0.0  # rotated prints: degrees turned over the window
    face_px: float = 0.0  # median face size
    visit: tuple[int, int] = (0, 0)  # real windows: (phase, first frame) of the unbroken run they are cut from
    scores: dict[str, float] = field(default_factory=dict)


def read_clip(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def shot_ids(frames: list[np.ndarray]) -> list[int]:
    """The shot of each frame: a new shot starts where the picture changes at once (a cut)."""
    ids, shot, previous = [], 0, None
    for frame in frames:
        thumb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (64, 36), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32)
        if previous is not None and float(np.abs(thumb - previous).mean()) > CUT:
            shot += 1
        ids.append(shot)
        previous = thumb
    return ids


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def distinct(found: list[DetectedFace]) -> list[DetectedFace]:
    """One frame's faces without the detector's nested duplicates (a box at least 60% inside a more
    confident face's box is that face found twice; left in, it swaps tracks)."""
    kept: list[DetectedFace] = []
    for face in sorted(found, key=lambda f: f.score, reverse=True):
        x, y, w, h = face.box
        covered = [max(0.0, min(x + w, k.box[0] + k.box[2]) - max(x, k.box[0]))
                   * max(0.0, min(y + h, k.box[1] + k.box[3]) - max(y, k.box[1])) / (w * h) for k in kept]
        if all(c < 0.6 for c in covered):
            kept.append(face)
    return kept


Track = list[tuple[int, DetectedFace]]  # (clip frame index, face), in time order


def link_tracks(faces: list[list[DetectedFace]], shots: list[int], max_gap: int = 3) -> list[Track]:
    """Faces followed across frames by box overlap (IoU >= 0.3, greedy, best first), never across a
    cut, a track surviving up to `max_gap` frames without its face; nested duplicates dropped first."""
    tracks: list[Track] = []
    for index, everything in enumerate(faces):
        found = distinct(everything)
        live = [t for t in range(len(tracks)) if index - tracks[t][-1][0] <= max_gap
                and shots[tracks[t][-1][0]] == shots[index]]
        pairs = sorted(((iou(tracks[t][-1][1].box, f.box), t, k) for t in live for k, f in enumerate(found)),
                       reverse=True)
        taken: set[int] = set()
        assigned: dict[int, int] = {}
        for overlap, t, k in pairs:
            if overlap < 0.3:
                break
            if t not in taken and k not in assigned:
                taken.add(t)
                assigned[k] = t
        for k, face in enumerate(found):
            if k in assigned:
                tracks[assigned[k]].append((index, face))
            else:
                tracks.append([(index, face)])
    return tracks


def windows(track: Track, step: int, window: int) -> Iterable[tuple[tuple[int, int], list[DetectedFace]]]:
    """The track as a door camera at 1/step of the clip's rate sees it: for each of the `step`
    phases, its frames at that phase cut into consecutive non-overlapping windows of `window`
    frames (a window never spans a gap of more than 2 samples). Each window comes with its visit:
    (phase, first frame of the unbroken run it belongs to), for what a door's budget would see."""
    for phase in range(step):
        run: list[tuple[int, DetectedFace]] = []
        visit = (phase, -1)
        for index, face in track:
            if index % step != phase:
                continue
            if run and index - run[-1][0] > 2 * step:
                run, visit = [], (phase, -1)
            if visit[1] < 0:
                visit = (phase, index)
            run.append((index, face))
            if len(run) == window:
                yield visit, [f for _, f in run]
                run = []


def to_arrays(faces: list[DetectedFace]) -> tuple[np.ndarray, np.ndarray]:
    landmarks = np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2)
    return landmarks, np.array([f.size for f in faces], np.float64)


def half(seed: int, source: str) -> str:
    return "dev" if zlib.crc32(f"{seed}:{source}".encode()) % 2 == 0 else "test"


# --- attacks (rendered by facegate/evaluation/presentation_attacks.py) --------------------------

def stills(detector: MtcnnDetector, clip: list[np.ndarray], tracks: list[Track],
           track_split: dict[int, str], lfw_people: int, seed: int) -> list[tuple[str, str, np.ndarray, float]]:
    """(source, split, picture, face fraction) for every still an attacker could print."""
    out = []
    for t, split in sorted(track_split.items()):  # a face of each real track, from its middle frame
        index, face = tracks[t][len(tracks[t]) // 2]
        picture, fraction = picture_of(clip[index], face.box)
        out.append((f"clip track {t}", split, picture, fraction))
    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if LFW.is_dir():
        people = sorted(p.name for p in LFW.iterdir() if p.is_dir())
        chosen = np.random.default_rng(seed).choice(len(people), size=min(lfw_people, len(people)), replace=False)
        photos += [sorted((LFW / people[i]).iterdir())[0] for i in sorted(chosen)]
    images = [decode_image(p.read_bytes()) for p in photos]
    for path, image, found in zip(photos, images, [detector.detect([i])[0] for i in images], strict=True):
        if not found:
            continue
        source = path.parent.name if path.parent.parent == LFW else path.name
        picture, fraction = picture_of(image, max(found, key=lambda f: f.size).box)
        out.append((source, half(seed, source), picture, fraction))
    return out


def attack(detector: MtcnnDetector, kind: str, source: str, split: str, picture: np.ndarray, fraction: float,
           backgrounds: list[np.ndarray], window: int, rng: np.random.Generator) -> Presentation:
    poses, sweep = trajectory(kind, rng, window)
    face_px = rng.uniform(60, 130)
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    frames, expected = render(picture, fraction, kind, background, poses, face_px, rng)
    found = []
    for faces, box in zip(detector.detect(frames), expected, strict=True):
        best = max(faces, key=lambda f: iou(f.box, box), default=None)
        if best is not None and iou(best.box, box) >= 0.3:
            found.append(best)
    landmarks, sizes = to_arrays(found)
    return Presentation(kind, source, split, landmarks, sizes, sweep, float(np.median(sizes)) if found else 0.0)


# --- decisions and the table ------------------------------------------------------------------

def score(presentations: list[Presentation], repeats: int = 20) -> None:
    """Each presentation's parallax, jitter and turn (the module's own measurements, which do not
    depend on the limits) and what one assessment costs (µs, the best of `repeats` batches)."""
    for p in presentations:
        result = assess(p.landmarks, p.sizes)
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            assess(p.landmarks, p.sizes)
            timings.append(time.perf_counter() - started)
        p.scores = {"parallax": result.parallax, "jitter": result.jitter, "turn": result.turn_degrees,
                    "frames": result.frames, "microseconds": statistics.median(timings) * 1e6}


def choose(dev: list[Presentation], target_apcer: float) -> LivenessSettings:
    """The limits, from the dev half only.

    live_parallax: the smallest floor at which at most `target_apcer` of the dev attack windows
    are live (an attack is live at floor T when its parallax >= T and >= min_snr x its jitter).
    plane_turn_degrees: the 99th percentile of the turn read on dev prints that were held still or
    only moved (no deliberate turn): what landmark jitter alone reads, so a larger turn is real.
    """
    base = LivenessSettings()
    attacks = [p for p in dev if p.kind != REAL]
    passing = sorted((p.scores["parallax"] for p in attacks
                      if p.scores["parallax"] >= base.min_snr * p.scores["jitter"]), reverse=True)
    allowed = int(math.floor(target_apcer * len(attacks)))  # dev attack windows that may pass
    floor = passing[allowed] if allowed < len(passing) else 0.0
    live_parallax = math.ceil((floor + 1e-9) * 1000) / 1000  # the next 0.001 strictly above it
    unturned = [p.scores["turn"] for p in attacks if p.kind in (STILL, MOVED) and not math.isnan(p.scores["turn"])]
    gate = math.ceil(float(np.percentile(unturned, 99))) if unturned else base.plane_turn_degrees
    return replace(base, live_parallax=max(live_parallax, 0.001), plane_turn_degrees=min(float(gate), 89.0))


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate (small samples: say how little they show)."""
    if total == 0:
        return 0.0, 1.0
    rate, spread = hits / total, z * z / total
    centre = (rate + spread / 2) / (1 + spread)
    half_width = z * math.sqrt(rate * (1 - rate) / total + spread / (4 * total)) / (1 + spread)
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def rate_with_interval(name: str, hits: int, total: int) -> str:
    low, high = wilson(hits, total)
    return f"{name} {hits / total:.1%} [{low:.1%}, {high:.1%}]"


def verdicts(presentations: list[Presentation], settings: LivenessSettings) -> list[Liveness]:
    return [assess(p.landmarks, p.sizes, settings).verdict for p in presentations]


def share(verdicts_: list[Liveness], wanted: Liveness) -> str:
    hits = sum(v == wanted for v in verdicts_)
    return f"{hits / len(verdicts_):.1%} ({hits})"


def table(presentations: list[Presentation], settings: LivenessSettings, split: str) -> list[str]:
    rows = ["| presentation | windows | sources | face px (median) | live | not live | not enough motion | "
            "error rate [95% interval] |", "|---|---|---|---|---|---|---|---|"]
    mine = [p for p in presentations if p.split == split]
    real = [p for p in mine if p.kind == REAL]
    groups: list[tuple[str, list[Presentation]]] = [
        (REAL, real),
        (f"... measurable (>= {settings.min_frames} frames facing the camera)",
         [p for p in real if p.scores["frames"] >= settings.min_frames])]
    for kind in ATTACKS:
        groups.append((kind, [p for p in mine if p.kind == kind]))
        if kind == ROTATED:
            groups += [(f"... swept {low}-{high} degrees",
                        [p for p in mine if p.kind == kind and low <= p.sweep < high]) for low, high in TURN_BINS]
    groups.append(("all attacks", [p for p in mine if p.kind != REAL]))
    for name, items in groups:
        if not items:
            continue
        found = verdicts(items, settings)
        live = sum(v == Liveness.LIVE for v in found)
        if items[0].kind == REAL:
            error = rate_with_interval("BPCER", len(items) - live, len(items))
        else:
            error = rate_with_interval("APCER", live, len(items))
        size = statistics.median(p.face_px for p in items)
        rows.append(f"| {name} | {len(items)} | {len({p.source for p in items})} | {size:.0f} | "
                    f"{share(found, Liveness.LIVE)} | {share(found, Liveness.NOT_LIVE)} | "
                    f"{share(found, Liveness.NOT_ENOUGH_MOTION)} | {error} |")
    return rows


def budget(presentations: list[Presentation], settings: LivenessSettings, budget_windows: int) -> str:
    """What a door that keeps collecting up to `budget_windows` windows of a visit would do (test
    half): a real visit passes if any of its first windows is live; an attack gets as many tries
    (estimated as independent windows: 1 - (1 - APCER)^n)."""
    test = [p for p in presentations if p.split == "test"]
    visits: dict[tuple[str, tuple[int, int]], list[Presentation]] = {}
    for p in test:
        if p.kind == REAL:
            visits.setdefault((p.source, p.visit), []).append(p)
    passed = sum(any(v == Liveness.LIVE for v in verdicts(windows_[:budget_windows], settings))
                 for windows_ in visits.values())
    attacks = verdicts([p for p in test if p.kind != REAL], settings)
    apcer = sum(v == Liveness.LIVE for v in attacks) / max(len(attacks), 1)
    return (f"\na door re-trying up to {budget_windows} windows of a visit (test half): real visits passed "
            f"{passed} of {len(visits)}; attacks accepted about {1 - (1 - apcer) ** budget_windows:.1%} "
            f"(windows taken as independent)")


def tradeoff(presentations: list[Presentation], settings: LivenessSettings, floors: list[float]) -> list[str]:
    """APCER and BPCER at other floors (the chosen one marked), to show what the choice trades."""
    rows = ["| live_parallax | dev APCER | dev BPCER | test APCER | test BPCER |", "|---|---|---|---|---|"]
    for floor in sorted({*floors, settings.live_parallax}):
        cells = []
        for split in ("dev", "test"):
            mine = [p for p in presentations if p.split == split]
            attacks = verdicts([p for p in mine if p.kind != REAL], replace(settings, live_parallax=floor))
            real = verdicts([p for p in mine if p.kind == REAL], replace(settings, live_parallax=floor))
            cells.append(f"{sum(v == Liveness.LIVE for v in attacks) / max(len(attacks), 1):.1%} | "
                         f"{sum(v != Liveness.LIVE for v in real) / max(len(real), 1):.1%}")
        mark = " (chosen)" if floor == settings.live_parallax else ""
        rows.append(f"| {floor:.3f}{mark} | {' | '.join(cells)} |")
    return rows


@dataclass
class Collected:
    presentations: list[Presentation]
    tracks: list[Track]
    track_split: dict[int, str]  # tracks with at least one full window
    seconds: float


def collect(fps: float, window: int, lfw_people: int, seed: int) -> Collected:
    """Every presentation of both halves, detected and scored."""
    started = time.perf_counter()
    detector = MtcnnDetector(DetectorSettings(min_face_size=40, min_score=0.95))
    clip = read_clip(CLIP)
    shots = shot_ids(clip)
    faces: list[list[DetectedFace]] = []
    for i in range(0, len(clip), 8):
        faces += detector.detect(clip[i : i + 8])
    tracks = link_tracks(faces, shots)
    step = max(1, round(30 / fps))
    real_windows = {t: list(windows(track, step, window)) for t, track in enumerate(tracks)}
    real_windows = {t: w for t, w in real_windows.items() if w}
    order = sorted(real_windows, key=lambda t: (-len(tracks[t]), t))
    track_split = {t: ("test" if i % 2 == 0 else "dev") for i, t in enumerate(order)}
    presentations = []
    for t in order:
        for visit, faces_in_window in real_windows[t]:
            landmarks, sizes = to_arrays(faces_in_window)
            presentations.append(Presentation(REAL, f"clip track {t}", track_split[t], landmarks, sizes,
                                              face_px=float(np.median(sizes)), visit=visit))
    backgrounds = [frame for frame, found in zip(clip, faces, strict=True) if not found]
    rng = np.random.default_rng(seed)
    for source, split, picture, fraction in stills(detector, clip, tracks, track_split, lfw_people, seed):
        for kind in ATTACKS:
            presentations.append(attack(detector, kind, source, split, picture, fraction, backgrounds, window, rng))
    score(presentations)
    return Collected(presentations, tracks, track_split, time.perf_counter() - started)


def report(data: Collected, fps: float, window: int, target_apcer: float, seed: int) -> None:
    presentations = data.presentations
    dev = [p for p in presentations if p.split == "dev"]
    settings = choose(dev, target_apcer)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; door camera {fps:g} fps, windows of {window} frames "
          f"({window / fps:g} s); seed {seed}; {data.seconds:.0f} s")
    spans = ", ".join(f"{data.tracks[t][0][0]}-{data.tracks[t][-1][0]} ({split})"
                      for t, split in data.track_split.items())
    print(f"real clip: {len(data.track_split)} face tracks long enough for a window (clip frames {spans})")
    for split in ("dev", "test"):
        real = [p for p in presentations if p.split == split and p.kind == REAL]
        frames = sum(len(p.sizes) for p in real)
        print(f"{split} real frames usable (face >= {settings.min_face_px:g} px, not turned beyond the limits): "
              f"{sum(p.scores['frames'] for p in real)} of {frames}")
    print(f"chosen on dev ({sum(p.kind == REAL for p in dev)} real windows, {sum(p.kind != REAL for p in dev)} "
          f"attack windows): live_parallax = {settings.live_parallax} (dev APCER <= {target_apcer:.0%}, "
          f"with min_snr = {settings.min_snr:g}); plane_turn_degrees = {settings.plane_turn_degrees:g} "
          f"(99th percentile of the turn read on dev prints held still or moved)")
    default = LivenessSettings()
    if (default.live_parallax, default.plane_turn_degrees) != (settings.live_parallax, settings.plane_turn_degrees):
        print(f"NOTE: the module's defaults differ: live_parallax = {default.live_parallax}, plane_turn_degrees = "
              f"{default.plane_turn_degrees:g}")
    for split in ("dev", "test"):
        print(f"\n{split} half")
        print("\n".join(table(presentations, settings, split)))
    print(budget(presentations, settings, budget_windows=3))
    print("\nother floors (same min_snr and turn gate):")
    print("\n".join(tradeoff(presentations, settings, [0.03, 0.05, 0.07, 0.09, 0.12, 0.15, 0.2])))
    costs = [p.scores["microseconds"] for p in presentations]
    per_frame = [p.scores["microseconds"] / max(len(p.sizes), 1) for p in presentations]
    print(f"\ncost of one assessment: {statistics.median(costs):.0f} µs per window of {window} frames (median; p95 "
          f"{np.percentile(costs, 95):.0f}), {statistics.median(per_frame):.0f} µs per frame")
    print("\nparallax / jitter (face units), 10th, 50th, 90th percentile, both halves:")
    for kind in (REAL, *ATTACKS):
        values = np.array([(p.scores["parallax"], p.scores["jitter"]) for p in presentations
                           if p.kind == kind and not math.isnan(p.scores["parallax"])])
        if len(values):
            q = np.percentile(values, [10, 50, 90], axis=0)
            print(f"- {kind}: parallax {q[0, 0]:.3f} / {q[1, 0]:.3f} / {q[2, 0]:.3f}, jitter {q[0, 1]:.3f} / "
                  f"{q[1, 1]:.3f} / {q[2, 1]:.3f} ({len(values)} windows measured)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=10.0, help="the door camera's frame rate")
    parser.add_argument("--window", type=int, default=10, help="frames per assessed window")
    parser.add_argument("--lfw-people", type=int, default=50)
    parser.add_argument("--target-apcer", type=float, default=0.01, help="dev APCER the threshold is chosen for")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    if not CLIP.is_file():
        print(f"no clip at {CLIP}: nothing to measure", file=sys.stderr)
        return 2
    data = collect(args.fps, args.window, args.lfw_people, args.seed)
    report(data, args.fps, args.window, args.target_apcer, args.seed)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
