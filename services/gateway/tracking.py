"""Face tracks at one door, and the multi-frame verdict of a track.

One frame is a poor witness. Faces are followed across a door's frames by box overlap (IoU), so
the gateway embeds a few good frames of each track instead of every face of every frame, and
decides once per track when enough frames agree (`frames_needed`, per door, at least 2) and none
disagrees (`fuse` states the rule). A decided track is not embedded again while it stays in view;
a track nobody saw for `timeout` seconds ends.

Frames in which a track's face was detected leave its five landmarks and face size on the track
(at most one every `LIVENESS_FRAME_SECONDS` of frame time, the last `FRAMES_KEPT`), for the
liveness check (`liveness.py`) of doors that require it: there a match the policy allows is
*held* (the track has a verdict but no decision yet) until the track shows a live face, its
budget is spent or it ends. Only frames whose own embedding shows the matched person count for
liveness (`Track.identified`): a held track goes on being embedded (each recorded frame), so a
face put in front of the camera after the match (a print swapped for the attacker's own moving
face) is neither counted as the person's live face nor left unchecked (another person's match
sends the track to review).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from services.contracts.v1 import common_pb2, matcher_pb2
from services.gateway.liveness import LANDMARKS, LivenessResult, LivenessSettings, assess

LIVENESS_FRAME_SECONDS = 0.1  # landmark frames are recorded about this often at most (a door camera sends 5 a second)
# frames 0.9 of that apart are taken (a 10 fps camera's timestamps jitter), so at most 11.1 a second
FRAMES_KEPT = 120  # landmark frames kept per track: the longest liveness_seconds (10 s) at that rate
LIVENESS = LivenessSettings()  # the check's limits, as bench/liveness_planarity.py chose them


@dataclass(frozen=True)
class Observation:
    """What the matcher said about one embedded frame of a track."""

    identity_id: str  # the nearest identity ("" if the gallery is empty)
    display_name: str
    distance: float
    accepted: bool  # within the threshold and not ambiguous
    ambiguous: bool
    threshold: float
    matched: frozenset[str] = frozenset()  # who this frame matched: the accepted person, or an ambiguous tie's
    # people within the threshold; nobody for a stranger
    candidates: tuple[tuple[str, str, float], ...] = ()  # the nearest people (id, name, distance), nearest first
    capture: tuple[str, ...] = ()  # the face's capture flags (grey, dark, ...): why its threshold may be stricter


def captured(seen: Observation) -> str:
    """" (dark, blurry capture)" after a threshold a frame's capture flags lowered, else ""."""
    return f" ({', '.join(seen.capture)} capture)" if seen.capture else ""


def observation(result: matcher_pb2.IdentifyResult, capture: tuple[str, ...] = ()) -> Observation:
    best = result.candidates[0] if result.candidates else None
    if not result.unknown and best is not None:
        matched = frozenset({best.identity_id})
    elif result.ambiguous:
        matched = frozenset(c.identity_id for c in result.candidates if c.distance <= result.threshold)
    else:
        matched = frozenset()
    return Observation(best.identity_id if best else "", best.display_name if best else "",
                       best.distance if best else 2.0, not result.unknown, result.ambiguous, result.threshold, matched,
                       tuple((c.identity_id, c.display_name, c.distance) for c in result.candidates[:5]), capture)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "match", "unknown" or "review"
    observation: Observation  # the deciding (best) observation
    frames: int  # embedded frames the verdict rests on
    reason: str


@dataclass
class Track:
    track_id: str
    box: common_pb2.Box
    first_seen: float
    last_seen: float
    frames_seen: int = 1
    observations: list[Observation] = field(default_factory=list)
    best_quality: float = 0.0
    verdict: Verdict | None = None
    # the best embedded frame, kept for a reviewer: (crop, face, embedding); only where reviews are queued
    best_frame: tuple[common_pb2.NDArray, common_pb2.Face, common_pb2.Embedding] | None = None
    # each detected frame's landmarks (5 x (x, y)) and face size (the smaller side of its box), oldest first
    landmarks: deque[tuple[tuple[float, float], ...]] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))
    face_sizes: deque[float] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))
    # per recorded frame: who its own embedding was close to (within the same-face threshold), and
    # who it matched (within the decision threshold); both empty if it was not embedded
    shown: deque[tuple[frozenset[str], frozenset[str]]] = field(default_factory=lambda: deque(maxlen=FRAMES_KEPT))
    frames_recorded: int = 0  # landmark frames recorded in all (the deques keep the last FRAMES_KEPT)
    recorded_at: float = -math.inf  # frame time of the last recorded frame
    changes: int = 0  # frames recorded or identified so far (the last assessment is reused until it grows)
    held: bool = False  # a match the policy allows, waiting for the track to show a live face
    model_key: str = ""  # the model its verdict was reached with (for a held decision made later)
    liveness: LivenessResult | None = None  # the last assessment, made when `changes` was `assessed_frames`
    assessed_frames: int = 0

    @property
    def decided(self) -> bool:
        """A decision was made for the track (a held grant is not one yet)."""
        return self.verdict is not None and not self.held

    def saw(self, face: common_pb2.Face, now: float) -> bool:
        """Record one detected frame of the track's face for the liveness check, unless one was
        recorded less than LIVENESS_FRAME_SECONDS ago (frame time); a face without its five
        landmarks is recorded as unusable (NaN). Whether it was recorded."""
        if now - self.recorded_at < 0.9 * LIVENESS_FRAME_SECONDS:
            return False
        if len(face.landmarks) == LANDMARKS:
            self.landmarks.append(tuple((p.x, p.y) for p in face.landmarks))
        else:
            self.landmarks.append(((math.nan, math.nan),) * LANDMARKS)
        self.face_sizes.append(min(face.box.width, face.box.height))
        self.shown.append((frozenset(), frozenset()))
        self.frames_recorded += 1
        self.recorded_at = now
        self.changes += 1
        return True

    def identified(self, seen: Observation, same_face: float) -> None:
        """The embedding of the frame just recorded (`saw` returned True) was `seen`. For the
        liveness check a frame is the matched person's when that person is its nearest and within
        `same_face` of it (a looser distance than the decision's, e.g. the model's FAR 1e-2 point:
        the frames that show parallax are the turned ones, often beyond the decision threshold)
        and nobody else matched it."""
        if self.shown:
            nearest = seen.candidates[0] if seen.candidates else None
            near = frozenset({nearest[0]}) if nearest and nearest[2] <= max(same_face, seen.threshold) else frozenset()
            self.shown[-1] = (near, seen.matched)
            self.changes += 1

    def shows_someone_else(self, seen: Observation) -> bool:
        """Whether a frame of this track was accepted as another person than its verdict's (a
        held track is then fused again, and goes to review). An ambiguous or unknown frame does
        not undo a held match: it just does not count for liveness."""
        who = self.verdict.observation.identity_id if self.verdict is not None else ""
        return seen.accepted and seen.identity_id != who

    def assess_liveness(self, settings: LivenessSettings = LIVENESS) -> LivenessResult:
        """The liveness verdict of the recorded frames shown to be the person the track matched
        (`identified`; assessed again only when frames were recorded or identified since the
        last time). Before a match there is nobody to show: not enough motion."""
        if self.liveness is None or self.assessed_frames != self.changes:
            who = self.verdict.observation.identity_id if self.verdict is not None and self.verdict.kind == "match" \
                else None
            mine = np.asarray([who in near and matched <= {who} for near, matched in self.shown], dtype=bool)
            points = np.asarray(self.landmarks, dtype=np.float64).reshape(-1, LANDMARKS, 2)[mine]
            result = assess(points, np.asarray(self.face_sizes, dtype=np.float64)[mine], settings)
            if (others := len(mine) - int(mine.sum())) and who is not None:
                result = replace(result, reason=f"{result.reason}; {others} of {len(mine)} recorded frames not "
                                                f"counted (not embedded, or not shown to be {mention(who)})")
            self.liveness, self.assessed_frames = result, self.changes
        return self.liveness

    def wants_embedding(self, quality: float, max_embeddings: int, recorded: bool = False) -> bool:
        """Embed an undecided track's face while the budget lasts, skipping frames clearly worse
        than the best one already embedded (blur, a turned or shrinking face). A decided track is
        not embedded again; a held one is, on each frame recorded for liveness (`recorded`): only
        frames shown to be the matched person count there."""
        if self.held:
            return recorded
        if self.verdict is not None or len(self.observations) >= max_embeddings:
            return False
        return not self.observations or quality >= 0.8 * self.best_quality

    def nearest(self, count: int = 5) -> tuple[tuple[str, str, float], ...]:
        """The people this track's frames came nearest to: (id, name, smallest distance), nearest first."""
        best: dict[str, tuple[str, str, float]] = {}
        for seen in self.observations:
            for identity_id, name, distance in seen.candidates:
                if identity_id not in best or distance < best[identity_id][2]:
                    best[identity_id] = (identity_id, name, distance)
        return tuple(sorted(best.values(), key=lambda c: c[2])[:count])

    def observe(self, observation: Observation, quality: float, frames_needed: int,
                max_embeddings: int) -> Verdict | None:
        self.observations.append(observation)
        self.best_quality = max(self.best_quality, quality)
        self.verdict = fuse(self.observations, frames_needed, max_embeddings)
        return self.verdict


MIN_FRAMES_TO_GRANT = 2  # one frame never opens a door


def mention(identity_id: str) -> str:
    """How a decision's reason names a person: quoted (ids cannot contain quotes), so that an
    erasure finds exactly the mentions of that person and nothing else ("2" in "2 of 2 frames")."""
    return f"'{identity_id}'"


def fuse(observations: list[Observation], frames_needed: int, max_embeddings: int) -> Verdict | None:
    """The verdict of a track's embedded frames, or None while more frames are needed.

    - **match**: `frames_needed` frames accepted the same person and no frame of the track
      matched anyone else within the threshold (accepted as someone else, or an ambiguous frame
      with another person within the threshold);
    - **review** as soon as frames matched two different people (the track can no longer be
      granted), when `frames_needed` frames were ambiguous and none accepted, or when the
      embedding budget is spent without a verdict;
    - **unknown**: `frames_needed` frames with no one within the threshold and none accepted or
      ambiguous.
    """
    if frames_needed < MIN_FRAMES_TO_GRANT:
        raise ValueError(f"frames_needed={frames_needed}: at least {MIN_FRAMES_TO_GRANT} "
                         "(one frame never opens a door)")
    accepted: dict[str, list[Observation]] = {}
    for o in observations:
        if o.accepted:
            accepted.setdefault(o.identity_id, []).append(o)
    ambiguous = [o for o in observations if o.ambiguous]
    unknown = [o for o in observations if not o.accepted and not o.ambiguous]
    matched = frozenset().union(*(o.matched for o in observations))
    if len(matched) > 1:
        best = min((o for o in observations if o.matched), key=lambda o: o.distance)
        return Verdict("review", best, len(observations),
                       f"frames disagree ({_tally(observations)}; matched {', '.join(map(mention, sorted(matched)))}); "
                       "needs review")
    if accepted:
        (identity_id, votes), = accepted.items()
        if len(votes) >= frames_needed:
            best = min(votes, key=lambda o: o.distance)
            return Verdict("match", best, len(observations),
                           f"{mention(identity_id)} in {len(votes)} of {len(observations)} frames and no other "
                           f"person in any, best distance {best.distance:.3f} <= {best.threshold:.3f}{captured(best)}")
    elif len(ambiguous) >= frames_needed:
        best = min(ambiguous, key=lambda o: o.distance)
        return Verdict("review", best, len(observations),
                       f"ambiguous in {len(ambiguous)} frames: {mention(best.identity_id)} and another person "
                       "fit about equally; needs review")
    elif len(unknown) >= frames_needed and not ambiguous:
        return _unknown(unknown, len(observations))
    if len(observations) >= max_embeddings:
        best = min(observations, key=lambda o: o.distance)
        return Verdict("review", best, len(observations),
                       f"no verdict in {len(observations)} frames ({_tally(observations)}); needs review")
    return None


def leftover(observations: list[Observation]) -> Verdict:
    """The verdict of a track that left before `fuse` reached one: never a match (too few
    frames agreed), so a recognised person goes to review; strangers seen only in frames with
    no one within the threshold are unknown."""
    accepted = {o.identity_id for o in observations if o.accepted}
    if not accepted and not any(o.ambiguous for o in observations):
        return _unknown(observations, len(observations))
    best = min(observations, key=lambda o: o.distance)
    return Verdict("review", best, len(observations),
                   f"left before enough frames agreed ({_tally(observations)}); needs review")


def _unknown(unknown: list[Observation], frames: int) -> Verdict:
    nearest = min(unknown, key=lambda o: o.distance)
    who = (f"nearest {mention(nearest.identity_id)} at {nearest.distance:.3f}" if nearest.identity_id
           else "gallery empty")
    return Verdict("unknown", nearest, frames,
                   f"no identity within threshold {nearest.threshold:.3f}{captured(nearest)} in {len(unknown)} frames "
                   f"({who})")


def _tally(observations: list[Observation]) -> str:
    """"'alice' 2, 'carol' 1, ambiguous 1, unknown 1" for a reason text."""
    counts: dict[str, int] = {}
    for o in observations:
        key = mention(o.identity_id) if o.accepted else "ambiguous" if o.ambiguous else "unknown"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def affinity(a: common_pb2.Box, b: common_pb2.Box) -> float:
    """How likely two boxes are the same face one frame apart: their overlap (IoU), or, for a
    face that moved more than it overlaps (fast walkers at 5 fps), a lower score for a box of
    similar size whose centre is within 0.6 face widths."""
    overlap = iou(a, b)
    size_a, size_b = max(a.width, a.height), max(b.width, b.height)
    if overlap >= 0.3 or min(size_a, size_b) <= 0 or not 0.7 <= size_a / size_b <= 1.4:
        return overlap
    dx = (a.x + a.width / 2) - (b.x + b.width / 2)
    dy = (a.y + a.height / 2) - (b.y + b.height / 2)
    shift = (dx * dx + dy * dy) ** 0.5 / max(size_a, size_b)
    return max(overlap, 0.3 * (1 - shift / 0.6)) if shift < 0.6 else overlap


def iou(a: common_pb2.Box, b: common_pb2.Box) -> float:
    x1, y1 = max(a.x, b.x), max(a.y, b.y)
    x2, y2 = min(a.x + a.width, b.x + b.width), min(a.y + a.height, b.y + b.height)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


# Track ids carry the process's start (ms, hex) before their count, so ids in the audit log stay
# unique across gateway restarts ("lobby#19c3a5b2e4f.7").
PROCESS_EPOCH = format(time.time_ns() // 1_000_000, "x")


class DoorTracks:
    """The live tracks of one door camera."""

    _ids = itertools.count(1)

    def __init__(self, door_id: str, min_affinity: float = 0.1, timeout: float = 1.5,
                 epoch: str = PROCESS_EPOCH) -> None:
        self.door_id = door_id
        self._epoch = epoch
        self._min_affinity = min_affinity
        self._timeout = timeout
        self.tracks: list[Track] = []
        self.ended: list[Track] = []  # tracks the last update ended

    def update(self, boxes: list[common_pb2.Box], now: float) -> list[Track]:
        """Assign this frame's faces to tracks (greedy by affinity; new tracks for the rest) and
        end tracks not seen for `timeout` seconds. Returns the track of each face, in order."""
        self.ended = [t for t in self.tracks if now - t.last_seen > self._timeout]
        self.tracks = [t for t in self.tracks if now - t.last_seen <= self._timeout]
        pairs = sorted(((affinity(t.box, b), ti, bi) for ti, t in enumerate(self.tracks)
                        for bi, b in enumerate(boxes)), reverse=True)
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self._min_affinity:
                break
            if ti in used or bi in assigned:
                continue
            used.add(ti)
            assigned[bi] = self.tracks[ti]
        result = []
        for bi, box in enumerate(boxes):
            track = assigned.get(bi)
            if track is None:
                track = Track(f"{self.door_id}#{self._epoch}.{next(self._ids)}", box, now, now, frames_seen=0)
                self.tracks.append(track)
            track.box, track.last_seen = box, now
            track.frames_seen += 1
            result.append(track)
        return result

    @property
    def all_decided(self) -> bool:
        """Every track in view has its decision (a held one needs the detector on every frame)."""
        return all(t.decided for t in self.tracks)
