"""Passive liveness from planarity (services/gateway/liveness.py): APCER per attack type and BPCER
(ISO/IEC 30107-3 terms), with the threshold chosen on one half of the data and reported on the other.

    python bench/liveness_planarity.py [--fps 10] [--window 10] [--lfw-people 50] [--seed 14]
                                       [--door-fps 5 [10]] [--budgets 2 3 5]
    (or `make bench-liveness`; 5 minutes on 2 cores, 8 while other jobs share them, about 2 of them
    for the windows; `--door-fps 5 10` renders the door's attacks at 10 fps: 3-5 minutes more)

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

The door's rule. A door requiring liveness does not judge 1-second windows
(services/gateway/server.py, `_held`, `_decide`, `liveness_spent`): once a track's face is
matched, it assesses the WHOLE track (every frame its face was detected in since the track's
first, the last FRAMES_KEPT kept) again on every new frame, grants on the first `live` verdict and
refuses (denied_liveness) once the track is `liveness_seconds` old (that frame included) or ends.
An attacker so gets many correlated tries and a longer track more chances at parallax, so the
window figures understate what a door lets through. The bench therefore also plays that rule
(`--door-fps`, default 5: the camera agent's rate; `--budgets` in seconds, default 2, 3 (a door's
default) and 5), with the module's shipped limits:
- real: each track above at each of the clip's 30/fps frame offsets (an offset is what one camera
  would see; the offsets of one track are not independent), from its first frame there until the
  budget or the track's end (a clip track that ends first is refused, as a door refuses a track
  that leaves);
- attacks: one per still and attack type (the same stills and halves), rendered for the longest
  budget at the highest `--door-fps` (a lower rate takes every n-th frame: the same motion) from
  a seeded stream of its own, so the window attacks are unchanged. `door_trajectory` continues
  `trajectory` in time: the same draws; a rotated or moved print goes back and forth with the
  window's extent and speed; the tremor is drawn per frame; a screen's random walk keeps its
  spread per second. Its first second at 10 fps is exactly a window's trajectory.
Assumed: the track is matched by the time it has enough usable frames to be assessed (a door
assesses from the match on; nothing reads live before `min_frames`). Door APCER: attacks granted
within the budget; door BPCER: real tracks not granted (never assessable, ended first or never
live), also given over the tracks that became assessable. The floor is NOT chosen again on these:
when the door's dev APCER exceeds `--target-apcer`, the floor that would meet it there is printed,
with its test-half APCER and BPCER, as a recommendation; liveness.py is not changed.
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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facegate.evaluation.presentation_attacks import (  # noqa: E402
    ATTACKS,
    MOVED,
    ROTATED,
    STILL,
    Pose,
    door_trajectory,
    picture_of,
    render,
    trajectory,
)
from services.core.images import decode_image  # noqa: E402
from services.detector.faces import DetectedFace  # noqa: E402
from services.detector.mtcnn_cascade import DetectorSettings, MtcnnDetector, iou  # noqa: E402
from services.gateway.doors import Door  # noqa: E402
from services.gateway.liveness import Liveness, LivenessSettings, assess, nose_steps  # noqa: E402
from services.gateway.tracking import FRAMES_KEPT, LIVENESS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO.parent / "shared" / "data" / "face_recognition-examples" / "examples"
CLIP = EXAMPLES / "short_hamilton_clip.mp4"
LFW = REPO.parent / "shared" / "data" / "lfw-deepfunneled"

CUT = 20.0  # mean absolute grey difference (0-255, 64x36 thumbnails) between frames that marks a shot cut
REAL = "bona fide (real clip)"
TURN_BINS = ((5, 10), (10, 17), (17, 25), (25, 40))  # rotated prints reported by sweep angle too, degrees
CLIP_FPS = 30.0  # the example clip's frame rate
DOOR_SECONDS = Door(door_id="", site="").liveness_seconds  # a door's budget unless its file says otherwise


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


@dataclass
class Rendered:
    frames: list[np.ndarray]  # what the camera took
    expected: list[tuple[float, ...]]  # where the picture's face is in each frame (x, y, width, height)
    sweep: float  # rotated prints: degrees turned over a leg of the motion


@dataclass
class DoorPresentation:
    """One track as a door requiring liveness sees it: the frames its face was detected in, at
    the door camera's rate, from the track's first frame on (a real track at one of the clip's
    30/fps frame offsets, its "phase"; an attack rendered for the longest budget)."""

    kind: str
    source: str
    split: str
    fps: float
    times: np.ndarray  # T: seconds since the track's first frame
    landmarks: np.ndarray  # T x 5 x 2
    sizes: np.ndarray  # T
    seen: float  # seconds from the track's first frame to its last (it ends there: the door decides)
    sweep: float = 0.0
    phase: int = 0
    # the door's assessment after each frame, of the track so far (its last FRAMES_KEPT frames):
    parallax: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN: not measured
    jitter: np.ndarray = field(default_factory=lambda: np.zeros(0))
    usable: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # usable frames it rests on

    @property
    def face_px(self) -> float:
        return float(np.median(self.sizes)) if len(self.sizes) else 0.0


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


def attack_frames(kind: str, picture: np.ndarray, fraction: float, backgrounds: list[np.ndarray],
                  poses: list[Pose], sweep: float, rng: np.random.Generator) -> Rendered:
    """The frames of one attack along `poses` (its face 60-130 px at the start, over a random
    background): the draws after the trajectory's, in the order the window attacks always made them."""
    face_px = rng.uniform(60, 130)
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    frames, expected = render(picture, fraction, kind, background, poses, face_px, rng)
    return Rendered(frames, expected, sweep)


def window_attack(kind: str, picture: np.ndarray, fraction: float, backgrounds: list[np.ndarray], window: int,
                  rng: np.random.Generator) -> Rendered:
    poses, sweep = trajectory(kind, rng, window)
    return attack_frames(kind, picture, fraction, backgrounds, poses, sweep, rng)


def detected(detector: MtcnnDetector, rendered: Rendered) -> tuple[list[int], list[DetectedFace]]:
    """The frames (indices) in which the detector found the picture's face, and that face (the
    detection overlapping where the picture's face was rendered, IoU >= 0.3)."""
    indices, found = [], []
    for index, (faces, box) in enumerate(zip(detector.detect(rendered.frames), rendered.expected, strict=True)):
        best = max(faces, key=lambda f: iou(f.box, box), default=None)
        if best is not None and iou(best.box, box) >= 0.3:
            indices.append(index)
            found.append(best)
    return indices, found


def pipelined(jobs: Iterable[Callable[[], Rendered]], lookahead: int = 2) -> Iterator[Rendered]:
    """Each job's result, in order, the next ones computed on a second thread meanwhile (one
    worker, so they run in order and draw from a shared generator as they would in turn; OpenCV
    and numpy release the GIL while rendering, so it overlaps the detector on a 2-core machine)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[Future[Rendered]] = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) > lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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


# --- the door's rule: the whole track re-assessed on every frame, up to a budget ----------------

def door_assess(p: DoorPresentation) -> None:
    """What a door requiring liveness reads after each frame of the track: `assess` on every frame
    so far (the last FRAMES_KEPT, as the gateway keeps them), with the module's shipped limits.
    Parallax and jitter do not depend on `live_parallax`, so any other floor is read from them."""
    count = len(p.sizes)
    p.parallax, p.jitter, p.usable = np.full(count, np.nan), np.full(count, np.nan), np.zeros(count, int)
    for k in range(1, count + 1):
        start = max(0, k - FRAMES_KEPT)
        result = assess(p.landmarks[start:k], p.sizes[start:k], LIVENESS)
        p.parallax[k - 1], p.jitter[k - 1], p.usable[k - 1] = result.parallax, result.jitter, result.frames
        if (result.verdict == Liveness.LIVE) != bool(live_at(p, LIVENESS.live_parallax)[k - 1]):
            raise RuntimeError("liveness.assess no longer reads live as parallax >= max(live_parallax, "
                               "min_snr x jitter): update door_assess")


def live_at(p: DoorPresentation, floor: float) -> np.ndarray:
    """Per frame: whether the track so far reads live at `live_parallax` = floor."""
    with np.errstate(invalid="ignore"):
        return p.parallax >= np.maximum(floor, LIVENESS.min_snr * p.jitter)


def within(p: DoorPresentation, budget: float) -> np.ndarray:
    """The frames a door with `liveness_seconds` = budget assesses: up to the one on which the
    track is that old (that frame included: liveness_spent in services/gateway/server.py)."""
    return p.times <= budget + 1e-6


def first_live(p: DoorPresentation, budget: float, floor: float = LIVENESS.live_parallax) -> float | None:
    """When the door grants (seconds into the track), or None: denied_liveness."""
    hits = p.times[within(p, budget) & live_at(p, floor)]
    return float(hits[0]) if len(hits) else None


def assessable(p: DoorPresentation, budget: float) -> bool:
    """Whether the track reached `min_frames` usable frames within the budget."""
    return bool((p.usable[within(p, budget)] >= LIVENESS.min_frames).any())


def critical(p: DoorPresentation, budget: float) -> float:
    """The highest floor at which the door grants within the budget (-inf: at none)."""
    keep = within(p, budget) & live_at(p, 0.0)
    return float(p.parallax[keep].max()) if keep.any() else -math.inf


def needed_floor(attacks: list[DoorPresentation], budget: float, target_apcer: float) -> float:
    """The smallest floor (to 0.001) at which at most `target_apcer` of these attacks are granted
    within the budget: the rule `choose` applies to windows, applied to the door's."""
    passing = sorted((c for c in (critical(p, budget) for p in attacks) if c > -math.inf), reverse=True)
    allowed = int(math.floor(target_apcer * len(attacks)))
    floor = passing[allowed] if allowed < len(passing) else 0.0
    return max(math.ceil((floor + 1e-9) * 1000) / 1000, 0.001)


def door_cell(items: list[DoorPresentation], budget: float, floor: float) -> str:
    """The door's error rate within the budget, with its 95% interval and counts: APCER (attacks
    granted) or BPCER (real tracks never granted: never assessable, ended first, or not live)."""
    granted = sum(first_live(p, budget, floor) is not None for p in items)
    hits = len(items) - granted if items[0].kind == REAL else granted
    low, high = wilson(hits, len(items))
    return f"{hits / len(items):.1%} [{low:.1%}, {high:.1%}] ({hits}/{len(items)})"


def bpcer_assessable(real: list[DoorPresentation], budget: float, floor: float) -> str:
    mine = [p for p in real if assessable(p, budget)]
    return f"{door_cell(mine, budget, floor)} of the assessable" if mine else "none assessable"


def door_table(door: list[DoorPresentation], split: str, budgets: list[float], floor: float) -> list[str]:
    budget_heads = " | ".join(f"{b:g} s{' (door default)' if b == DOOR_SECONDS else ''}" for b in budgets)
    listed = " / ".join(f"{b:g}" for b in budgets)
    rows = [f"| presentation | tracks | sources | face px (median) | never assessable ({listed} s) | "
            f"first live (median s) | {budget_heads} |", "|---" * (6 + len(budgets)) + "|"]
    mine = [p for p in door if p.split == split]
    real = [p for p in mine if p.kind == REAL]
    groups: list[tuple[str, list[DoorPresentation]]] = [(f"{REAL}: track x camera phase, BPCER", real)]
    for kind in ATTACKS:
        groups.append((f"{kind}, APCER", [p for p in mine if p.kind == kind]))
        if kind == ROTATED:
            groups += [(f"... swept {low}-{high} degrees",
                        [p for p in mine if p.kind == kind and low <= p.sweep < high]) for low, high in TURN_BINS]
    groups.append(("all attacks, APCER", [p for p in mine if p.kind != REAL]))
    last = max(budgets)
    for name, items in groups:
        if not items:
            continue
        never = " / ".join(str(sum(not assessable(p, b) for p in items)) for b in budgets)
        times = [t for p in items if (t := first_live(p, last, floor)) is not None]
        when = f"{statistics.median(times):.1f}" if times else "-"
        cells = " | ".join(door_cell(items, b, floor) for b in budgets)
        rows.append(f"| {name} | {len(items)} | {len({p.source for p in items})} | "
                    f"{statistics.median(p.face_px for p in items):.0f} | {never} | {when} | {cells} |")
        if items is real:  # BPCER of the tracks that became assessable by each budget
            cells = " | ".join(door_cell(mine, b, floor) if (mine := [p for p in real if assessable(p, b)]) else "-"
                               for b in budgets)
            rows.append(f"| ... assessable (>= {LIVENESS.min_frames} usable frames by then) | - | - | - | - | - | "
                        f"{cells} |")
    return rows


def door_tracks(door: list[DoorPresentation], budgets: list[float]) -> list[str]:
    """Each real track: at how many of its camera phases the door grants within each budget."""
    lines = []
    for source in sorted({p.source for p in door if p.kind == REAL}, key=lambda s: int(s.split()[-1])):
        items = [p for p in door if p.source == source and p.kind == REAL]  # (a clip face is an attack's still too)
        granted = ", ".join(f"by {b:g} s at {sum(first_live(p, b) is not None for p in items)}" for b in budgets)
        never = sum(not assessable(p, DOOR_SECONDS) for p in items)
        times = sorted(t for p in items if (t := first_live(p, max(budgets))) is not None)
        when = f"; first live {times[0]:.1f}-{times[-1]:.1f} s in" if times else ""
        lines.append(f"- {source} ({items[0].split}; seen {max(p.seen for p in items):.1f} s, face "
                     f"{statistics.median(p.face_px for p in items):.0f} px): of {len(items)} camera phases, granted "
                     f"{granted}{when}; never assessable by {DOOR_SECONDS:g} s at {never}")
    return lines


def door_tradeoff(door: list[DoorPresentation], budget: float, floors: list[float]) -> list[str]:
    rows = ["| live_parallax | dev APCER | dev BPCER | test APCER | test BPCER |", "|---|---|---|---|---|"]
    for floor in sorted(set(floors)):
        cells = []
        for split in ("dev", "test"):
            mine = [p for p in door if p.split == split]
            for items in ([p for p in mine if p.kind != REAL], [p for p in mine if p.kind == REAL]):
                cells.append(door_cell(items, budget, floor) if items else "-")
        mark = " (shipped)" if floor == LIVENESS.live_parallax else ""
        rows.append(f"| {floor:.3f}{mark} | {' | '.join(cells)} |")
    return rows


@dataclass
class Collected:
    presentations: list[Presentation]
    tracks: list[Track]
    track_split: dict[int, str]  # tracks with at least one full window
    seconds: float  # the windows' part
    door: list[DoorPresentation] = field(default_factory=list)
    door_seconds: float = 0.0
    late: int = 0  # attacks whose face was first detected after the render's first frame


def door_attack(kind: str, picture: np.ndarray, fraction: float, backgrounds: list[np.ndarray], seconds: float,
                fps: float, leg_frames: float, shake_step: float, rng: np.random.Generator) -> Rendered:
    poses, sweep = door_trajectory(kind, rng, seconds, fps, leg_frames, shake_step)
    return attack_frames(kind, picture, fraction, backgrounds, poses, sweep, rng)


def door_presentations(detector: MtcnnDetector, tracks: list[Track], track_split: dict[int, str],
                       pictures: list[tuple[str, str, np.ndarray, float]], backgrounds: list[np.ndarray],
                       fps: float, window: int, door_fps: list[float], budgets: list[float],
                       seed: int) -> tuple[list[DoorPresentation], int]:
    """The real tracks at each door camera rate (every frame offset of the clip a separate
    track), and one attack per still and attack type rendered for the longest budget at the
    highest rate (lower rates take every n-th frame of it: the same motion), detected, then
    assessed frame by frame as the door does."""
    longest = max(budgets)
    door: list[DoorPresentation] = []
    for rate in door_fps:
        step = max(1, round(CLIP_FPS / rate))
        for t, split in track_split.items():
            for phase in range(step):
                frames = [(i, face) for i, face in tracks[t] if i % step == phase]
                if not frames:
                    continue
                first = frames[0][0]
                kept = [(i, face) for i, face in frames if (i - first) / CLIP_FPS <= longest + 1e-6]
                landmarks, sizes = to_arrays([face for _, face in kept])
                door.append(DoorPresentation(REAL, f"clip track {t}", split, rate,
                                             np.array([(i - first) / CLIP_FPS for i, _ in kept]), landmarks, sizes,
                                             seen=(frames[-1][0] - first) / CLIP_FPS, phase=phase))
    render_fps = max(door_fps)
    strides = {rate: round(render_fps / rate) for rate in door_fps}
    rng = np.random.default_rng([seed, 1])  # its own stream: the windows' attacks stay as they were
    jobs = [partial(door_attack, kind, picture, fraction, backgrounds, longest, render_fps,
                    (window - 1) * render_fps / fps, math.sqrt(fps / render_fps), rng)
            for _, _, picture, fraction in pictures for kind in ATTACKS]
    labels = [(kind, source, split) for source, split, _, _ in pictures for kind in ATTACKS]
    late = 0
    for (kind, source, split), rendered in zip(labels, pipelined(jobs), strict=True):
        indices, found = detected(detector, rendered)
        late += bool(indices) and indices[0] > 0
        end = (len(rendered.frames) - 1) / render_fps
        for rate, stride in strides.items():
            picked = [(i, face) for i, face in zip(indices, found, strict=True) if i % stride == 0]
            start = picked[0][0] / render_fps if picked else 0.0
            landmarks, sizes = to_arrays([face for _, face in picked])
            door.append(DoorPresentation(kind, source, split, rate,
                                         np.array([i / render_fps - start for i, _ in picked]), landmarks, sizes,
                                         seen=end - start, sweep=rendered.sweep))
    for presentation in door:
        door_assess(presentation)
    return door, late


def collect(fps: float, window: int, lfw_people: int, seed: int, door_fps: list[float],
            budgets: list[float]) -> Collected:
    """Every presentation of both halves, detected and scored: windows, then the door's tracks."""
    started = time.perf_counter()
    detector = MtcnnDetector(DetectorSettings(min_face_size=40, min_score=0.95))
    clip = read_clip(CLIP)
    shots = shot_ids(clip)
    faces: list[list[DetectedFace]] = []
    for i in range(0, len(clip), 8):
        faces += detector.detect(clip[i : i + 8])
    tracks = link_tracks(faces, shots)
    step = max(1, round(CLIP_FPS / fps))
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
    pictures = stills(detector, clip, tracks, track_split, lfw_people, seed)
    jobs = [partial(window_attack, kind, picture, fraction, backgrounds, window, rng)
            for _, _, picture, fraction in pictures for kind in ATTACKS]
    labels = [(kind, source, split) for source, split, _, _ in pictures for kind in ATTACKS]
    for (kind, source, split), rendered in zip(labels, pipelined(jobs), strict=True):
        _, found = detected(detector, rendered)
        landmarks, sizes = to_arrays(found)
        presentations.append(Presentation(kind, source, split, landmarks, sizes, rendered.sweep,
                                          float(np.median(sizes)) if found else 0.0))
    score(presentations)
    seconds = time.perf_counter() - started
    door, late = door_presentations(detector, tracks, track_split, pictures, backgrounds, fps, window, door_fps,
                                    budgets, seed)
    return Collected(presentations, tracks, track_split, seconds, door, time.perf_counter() - started - seconds,
                     late)


def step_report(data: Collected, settings: LivenessSettings) -> None:
    """`max_step` against data. It is not fitted (the dev half's real tracks have no usable
    frames): it is what a head turning at 90 degrees a second moves the nose between two frames
    at 5 fps. The real door tracks' steps (both halves, each phase) say how often a real track
    would be cut; then swapped prints: each still print window followed by the next picture's
    (another pose, as a second print of the person would be), live with the cut and without it."""
    for split in ("dev", "test"):
        tracks = [nose_steps(p.landmarks, p.sizes, settings) for p in data.door if p.kind == REAL and p.split == split]
        steps = np.concatenate(tracks) if tracks else np.zeros(0)
        cut = sum(bool(len(t)) and float(t.max()) > settings.max_step for t in tracks)
        if len(steps):
            print(f"\nmax_step {settings.max_step}: real door tracks, {split}: {len(steps)} steps between usable "
                  f"frames, 50th / 99th percentile / largest {np.percentile(steps, 50):.3f} / "
                  f"{np.percentile(steps, 99):.3f} / {steps.max():.3f}; {cut} of {len(tracks)} tracks cut")
        else:
            print(f"\nmax_step {settings.max_step}: real door tracks, {split}: no usable frames")
    for split in ("dev", "test"):
        still = [p for p in data.presentations if p.kind == STILL and p.split == split]
        pairs = list(zip(still, still[1:] + still[:1], strict=True))
        jumps, live_uncut, live_cut = [], 0, 0
        for a, b in pairs:
            landmarks, sizes = np.concatenate([a.landmarks, b.landmarks]), np.concatenate([a.sizes, b.sizes])
            live_uncut += assess(landmarks, sizes, replace(settings, max_step=math.inf)).verdict == Liveness.LIVE
            live_cut += assess(landmarks, sizes, settings).verdict == Liveness.LIVE
            found = nose_steps(landmarks, sizes, settings)
            jumps.append(float(found.max()) if len(found) else math.nan)
        print(f"swapped still prints, {split}: {len(pairs)} pairs of windows (median largest step "
              f"{np.nanmedian(jumps):.3f}): {rate_with_interval('APCER', live_uncut, len(pairs))} without the cut, "
              f"{rate_with_interval('APCER', live_cut, len(pairs))} with max_step {settings.max_step}")


def report(data: Collected, fps: float, window: int, target_apcer: float, seed: int) -> LivenessSettings:
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
    return settings


def door_report(data: Collected, settings: LivenessSettings, door_fps: list[float], budgets: list[float],
                target_apcer: float) -> None:
    """The door's error rates, then how they compare with the windows' and, if the dev half's
    door APCER exceeds the target the floor was chosen for, the floor that would meet it there."""
    floor = LIVENESS.live_parallax
    print(f"\nTHE DOOR'S RULE (simulated; {data.door_seconds:.0f} s more): a door requiring liveness assesses the "
          f"whole track (every frame its face was detected in since its first, the last {FRAMES_KEPT} kept) on each "
          f"new frame, grants on the first live verdict and refuses (denied_liveness) once the track is "
          f"liveness_seconds old (that frame included) or ends. Shipped limits (live_parallax {floor}). Attacks: "
          f"one track per still and attack type, {max(budgets):g} s rendered, the motion going back and forth at the "
          f"windows' speed; real: each track at each of the clip's 30/fps frame offsets (those are not independent). "
          f"Each budget cell: error rate [95% interval] (errors/tracks); never assessable: tracks with fewer than "
          f"{LIVENESS.min_frames} usable frames by then; first live: median over tracks granted within "
          f"{max(budgets):g} s.")
    if data.late:
        print(f"({data.late} attack(s) first detected after the first rendered frame: the track starts then, so it "
              f"is rendered for less than the longest budget)")
    for rate in door_fps:
        mine = [p for p in data.door if p.fps == rate]
        for split in ("dev", "test"):
            print(f"\ndoor camera {rate:g} fps, {split} half")
            print("\n".join(door_table(mine, split, budgets, floor)))
        print(f"\nreal tracks at the door, {rate:g} fps:")
        print("\n".join(door_tracks(mine, budgets)))
    rate, budget = door_fps[0], (DOOR_SECONDS if DOOR_SECONDS in budgets else budgets[0])
    mine = [p for p in data.door if p.fps == rate]
    attacks = {split: [p for p in mine if p.split == split and p.kind != REAL] for split in ("dev", "test")}
    real = {split: [p for p in mine if p.split == split and p.kind == REAL] for split in ("dev", "test")}
    window_apcer = {}
    for split in ("dev", "test"):
        found = verdicts([p for p in data.presentations if p.split == split and p.kind != REAL], settings)
        window_apcer[split] = sum(v == Liveness.LIVE for v in found) / max(len(found), 1)
    door_apcer = {split: sum(first_live(p, budget) is not None for p in attacks[split]) / max(len(attacks[split]), 1)
                  for split in attacks}
    tries = round(budget)
    print(f"\nall attacks, {rate:g} fps, {budget:g} s: dev APCER {window_apcer['dev']:.1%} per 1 s window, "
          f"{door_apcer['dev']:.1%} at the door; test {window_apcer['test']:.1%} per window, "
          f"{door_apcer['test']:.1%} at the door (windows taken as {tries} independent tries would say "
          f"{1 - (1 - window_apcer['test']) ** tries:.1%})")
    needed = {b: needed_floor(attacks["dev"], b, target_apcer) for b in budgets}
    print("floor needed for dev door APCER <= {:.0%}: {}".format(
        target_apcer, ", ".join(f"{needed[b]:.3f} at {b:g} s" for b in budgets)))
    chosen = needed[budget]
    if door_apcer["dev"] > target_apcer:
        print(f"RECOMMENDATION (not applied; services/gateway/liveness.py keeps live_parallax = {floor}): the door's "
              f"dev APCER {door_apcer['dev']:.1%} is above the {target_apcer:.0%} the floor was chosen for on windows; "
              f"live_parallax = {chosen:.3f} would meet it at {rate:g} fps and {budget:g} s. On the test half it "
              f"gives APCER {door_cell(attacks['test'], budget, chosen)} and BPCER "
              f"{door_cell(real['test'], budget, chosen)}, {bpcer_assessable(real['test'], budget, chosen)} "
              f"(shipped floor: APCER {door_cell(attacks['test'], budget, floor)}, BPCER "
              f"{door_cell(real['test'], budget, floor)}, {bpcer_assessable(real['test'], budget, floor)})")
    else:
        print(f"the door's dev APCER is within the {target_apcer:.0%} the floor was chosen for: no change suggested")
    print(f"\nother floors at the door ({rate:g} fps, {budget:g} s; BPCER over real track x phase):")
    print("\n".join(door_tradeoff(mine, budget, [0.03, 0.05, floor, 0.07, 0.09, 0.12, 0.15, 0.2, chosen])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=10.0, help="the windows' camera frame rate")
    parser.add_argument("--window", type=int, default=10, help="frames per assessed window")
    parser.add_argument("--lfw-people", type=int, default=50)
    parser.add_argument("--target-apcer", type=float, default=0.01, help="dev APCER the threshold is chosen for")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--door-fps", type=float, nargs="+", default=[5.0],
                        help="door camera rates to simulate the door's rule at (the camera agent sends 5 fps; "
                             "each must divide the highest and 30; 10 doubles the attack rendering)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.0, DOOR_SECONDS, 5.0],
                        help="liveness_seconds to simulate (the attacks are rendered for the longest)")
    args = parser.parse_args()
    door_fps, budgets = sorted(set(args.door_fps)), sorted(set(args.budgets))
    for rate in door_fps:
        if any(abs(whole / rate - round(whole / rate)) > 1e-9 for whole in (CLIP_FPS, door_fps[-1])):
            parser.error(f"--door-fps {rate:g} must divide {CLIP_FPS:g} and {door_fps[-1]:g}")
    if not CLIP.is_file():
        print(f"no clip at {CLIP}: nothing to measure", file=sys.stderr)
        return 2
    data = collect(args.fps, args.window, args.lfw_people, args.seed, door_fps, budgets)
    settings = report(data, args.fps, args.window, args.target_apcer, args.seed)
    door_report(data, settings, door_fps, budgets, args.target_apcer)
    step_report(data, LIVENESS)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
