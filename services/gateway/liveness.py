"""Passive liveness from geometry: is the face of a track a 3-D head or a flat print / screen?

A flat picture moving in front of a camera (a print held up, a phone showing a photo) maps all
of its points from one frame to the next by one homography. A real head is not flat: the nose
tip stands well in front of the plane of the eyes and mouth corners, so when the head turns,
the nose moves against that plane (parallax). The check needs nothing but the five MTCNN
landmarks the detector already gives (eye on the image's left, eye on its right, nose tip,
mouth corner on the image's left, the one on its right) and the face box sizes:

1. **The nose in the face's own plane.** Per frame, the exact homography that sends the four
   eye/mouth points to the corners of a unit square (a 4-point DLT, in closed form for all
   frames at once) also sends the nose somewhere: (u, v), how far across (eye to eye) and down
   (eyes to mouth) the quadrilateral the nose sits. For a flat picture (u, v) is a projective
   invariant: the same in every frame however the picture is moved, tilted or shaken. Comparing
   (u, v) between two frames is the same as fitting the homography between them on the four
   points and measuring how far the nose falls from where it predicts, in units of the face
   itself (so no other size normalisation is needed), at the cost of one homography per frame
   instead of one per pair. A head turning by 10 degrees moves (u, v) by about 0.07 (the nose
   tip stands about 0.4 eye distances in front of the eyes and mouth corners); talking and
   smiling move the mouth corners and so (u, v) too, which is fine: a flat picture can do neither.
2. **Usable frames.** Frames with a small face (`min_face_px`), a missing or non-finite point, an
   eye/mouth quadrilateral that is not a convex face-shaped one (collinear, crossed or
   coincident points) or a head turned so far that the detector's landmarks are unreliable (the
   nose beyond `max_yaw` of the eye distance from the middle, or outside `pitch_range` between
   eyes and mouth; the limits of enrolment photos, `photo_checks.ShotRules`, widened for pitch)
   are left out.
3. **One motion at a time.** A print swapped for another picture of the same person (turned the
   other way) moves (u, v) in one jump between two frames; a head gets there over several. Where
   the smoothed (u, v) moves more than `max_step` between two usable frames the track is cut in
   two and parallax is measured within each part only (0.15: more than a head turning at 90
   degrees a second moves it between two frames at 5 fps).
4. **Jitter discounted.** Landmarks jitter from frame to frame by a few hundredths of the face
   even on a still face, and the odd frame is off by more. (u, v) is smoothed by a running
   median of three frames (a single-frame error cannot survive it; a head turn lasting two
   frames does), and the track's **parallax** is a high percentile (not the maximum: one bad
   pair must not decide) of the distances between its frames' smoothed (u, v) over all pairs.
   The track's own **jitter** is estimated from second differences of the raw (u, v) (zero for
   any steady motion, so a real turn does not inflate it). Parallax must reach both an absolute
   floor, `live_parallax` (above what the detector's own view-dependent landmark bias produces
   on flat pictures; chosen on data by `bench/liveness_planarity.py`), and `min_snr` times the
   jitter (4: for pure independent jitter on 10 frames, the parallax exceeds 4.1 jitters in 1%
   of tracks; a fixed property of the statistic, not fitted to data).
5. **Motion gate.** Parallax can only appear when the face turns out of the image plane; a face
   that only slides, approaches or rolls gives no evidence either way. How far the face plane
   turned is read from its foreshortening: the affine map between two frames' eye line and
   eyes-to-mouth-middle vector (the mouth's middle, not its corners, so a smile does not count)
   stretches one direction more than the other by cos(turn_i)/cos(turn_j). That reading is weak:
   it cannot see a turn through facing the camera (-15 to +15 degrees foreshortens both ends
   alike), and landmark jitter alone reads 10-25 degrees on a print held still (arccos is flat
   near 1), so `plane_turn_degrees` sits above what jitter gives and only a gross turn to one side
   counts. Most flat pictures therefore end ``not_enough_motion`` and are refused when the door's
   budget runs out; ``not_live`` is the early, explained refusal of the obvious case.

Verdicts, in this order:
- ``live``: parallax above both limits: 3-D (or non-rigid) evidence;
- ``not_live``: no such parallax although the face plane clearly turned: a flat picture;
- ``not_enough_motion``: neither, or fewer than `min_frames` usable frames: the track has not
  shown whether it is flat. This is not a pass. A door that requires liveness keeps collecting
  frames of the track, re-assessing the whole track as it grows (the verdict needs no state
  between calls), up to a budget (e.g. 3 s); it may show the person "turn your head a little"
  (the challenge that makes a real head show parallax); when the budget runs out without a
  ``live`` verdict it refuses the track (`denied_liveness`). ``not_live`` is no more final: a
  real head moving fast reads as jittery and its turn is misread now and then, so the door
  keeps collecting on it too and keeps the reason for the audit. A door that does not require
  liveness ignores the check.

What this does not catch: anything carrying real 3-D or non-rigid motion of a face. A replayed
video of the person (on a screen), a 3-D mask, a print bent or curved while it is shown, or a
print with the mouth cut out pass, and so may pictures of the person at slightly different poses
swapped one after another in small steps (each below `max_step`). It is a check against flat
photos and screens showing a still. The limits are chosen by `bench/liveness_planarity.py`,
which prints the data that chose them; no real print or replay footage was available, attacks
there are rendered.

The module is pure (numpy only) and cheap: about 20 microseconds a frame (under 0.2 ms for a
track of 10 frames; the detector takes about 50 ms a frame).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LANDMARKS = 5  # left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right)
_LEFT_EYE, _RIGHT_EYE, _NOSE, _LEFT_MOUTH, _RIGHT_MOUTH = range(LANDMARKS)
# 2-D jitter sigma from second differences: x[t-1] - 2 x[t] + x[t+1] of independent noise of sigma
# per axis has sigma sqrt(6) per axis, and the median length of such a 2-D vector is 1.1774 of that
_SECOND_DIFFERENCE_MEDIAN = math.sqrt(6) * math.sqrt(2 * math.log(2))


class Liveness(enum.StrEnum):
    LIVE = "live"
    NOT_LIVE = "not_live"
    NOT_ENOUGH_MOTION = "not_enough_motion"


@dataclass(frozen=True)
class LivenessSettings:
    """The check's limits (the module docstring says what each one measures and why)."""

    # parallax floor, face units: above what flat pictures give through the detector's own bias.
    # Chosen by bench/liveness_planarity.py on its dev half: the smallest floor at which at most 1%
    # of 120 dev attack windows (30 stills: LFW people, the example photos, faces of the clip,
    # each as a print held still, turned, moved and as a shaken screen) were live.
    live_parallax: float = 0.052
    min_snr: float = 4.0  # parallax must also reach this many times the track's own jitter
    # largest move of the (smoothed) nose between two usable frames that is still one motion; a
    # larger jump (a picture swapped for another of the same person) splits the track, and
    # parallax is measured within each part. Not fitted (the benchmark's dev half has no usable
    # real frames): a head turning 90 degrees a second moves the nose about 0.12 between frames
    # at 5 fps; bench/liveness_planarity.py reports the real tracks' steps against it.
    max_step: float = 0.15
    # a face plane turned at least this much (from foreshortening) without parallax is flat: the
    # 99th percentile of the turn read on the dev prints held still or moved (jitter alone)
    plane_turn_degrees: float = 30.0
    percentile: float = 90.0  # of pairwise distances, taken as the track's parallax and turn
    min_frames: int = 5  # usable frames needed before any verdict
    min_face_px: float = 40.0  # landmark noise grows on smaller faces
    max_yaw: float = 0.35  # nose's offset from the eyes' middle, in eye distances (as enrolment photos)
    pitch_range: tuple[float, float] = (0.1, 0.9)  # nose's height between the eye line (0) and mouth (1)

    def __post_init__(self) -> None:
        if not self.live_parallax > 0:
            raise ValueError(f"live_parallax must be > 0; got {self.live_parallax}")
        if not self.min_snr >= 0:
            raise ValueError(f"min_snr must be >= 0; got {self.min_snr}")
        if not self.max_step > 0:
            raise ValueError(f"max_step must be > 0; got {self.max_step}")
        if not 0 < self.plane_turn_degrees < 90:
            raise ValueError(f"plane_turn_degrees must be in (0, 90); got {self.plane_turn_degrees}")
        if not 50 <= self.percentile <= 100:
            raise ValueError(f"percentile must be in [50, 100]; got {self.percentile}")
        if self.min_frames < 3:
            raise ValueError(f"min_frames must be >= 3 (jitter needs three frames); got {self.min_frames}")
        if not self.min_face_px >= 0:
            raise ValueError(f"min_face_px must be >= 0; got {self.min_face_px}")
        if not 0 < self.max_yaw <= 0.5:
            raise ValueError(f"max_yaw must be in (0, 0.5]; got {self.max_yaw}")
        if not 0 <= self.pitch_range[0] < self.pitch_range[1] <= 1:
            raise ValueError(f"pitch_range must be increasing within [0, 1]; got {self.pitch_range}")


@dataclass(frozen=True)
class LivenessResult:
    verdict: Liveness
    parallax: float  # the track's nose parallax, face units (NaN when not measured)
    jitter: float  # the track's own landmark jitter in (u, v), face units (NaN when not measured)
    turn_degrees: float  # how far the face plane turned, from foreshortening (NaN when not measured)
    frames: int  # usable frames the verdict rests on
    reason: str


def nose_in_face_plane(landmarks: np.ndarray) -> np.ndarray:
    """Per frame, the nose tip's (u, v) in the projective frame of the eye/mouth quadrilateral.

    `landmarks` is T x 5 x 2 (image coordinates, MTCNN order). The homography H with
    H(0,0) = left eye, H(1,0) = right eye, H(1,1) = right mouth corner, H(0,1) = left mouth
    corner is solved in closed form (Heckbert's square-to-quadrilateral mapping) and the nose is
    mapped back through its adjugate (the inverse up to scale). A frame whose four points are not
    a convex quadrilateral in that order gets NaN rather than a meaningless number.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (LANDMARKS, 2):
        raise ValueError(f"landmarks must be T x {LANDMARKS} x 2; got shape {points.shape}")
    x0, y0 = points[:, _LEFT_EYE, 0], points[:, _LEFT_EYE, 1]
    x1, y1 = points[:, _RIGHT_EYE, 0], points[:, _RIGHT_EYE, 1]
    x2, y2 = points[:, _RIGHT_MOUTH, 0], points[:, _RIGHT_MOUTH, 1]
    x3, y3 = points[:, _LEFT_MOUTH, 0], points[:, _LEFT_MOUTH, 1]
    nx, ny = points[:, _NOSE, 0], points[:, _NOSE, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
        dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
        den = dx1 * dy2 - dx2 * dy1
        g, h = (sx * dy2 - sy * dx2) / den, (dx1 * sy - dy1 * sx) / den
        a, b, c = x1 - x0 + g * x1, x3 - x0 + h * x3, x0
        d, e, f = y1 - y0 + g * y1, y3 - y0 + h * y3, y0
        # adjugate of [[a b c] [d e f] [g h 1]] times (nose x, nose y, 1)
        u = (e - f * h) * nx + (c * h - b) * ny + (b * f - c * e)
        v = (f * g - d) * nx + (a - c * g) * ny + (c * d - a * f)
        w = (d * h - e * g) * nx + (b * g - a * h) * ny + (a * e - b * d)
        uv = np.stack([u / w, v / w], axis=1)
    uv[~(_convex(points) & np.isfinite(uv).all(axis=1))] = np.nan
    return uv


def _convex(points: np.ndarray) -> np.ndarray:
    """Frames whose quadrilateral (left eye, right eye, right mouth, left mouth) turns the same way
    at every corner, each corner's turn at least 1% of the longest edge squared (so three nearly
    collinear points are refused rather than divided by)."""
    corners = [_LEFT_EYE, _RIGHT_EYE, _RIGHT_MOUTH, _LEFT_MOUTH]
    edges = points[:, corners[1:] + corners[:1]] - points[:, corners]
    following = edges[:, [1, 2, 3, 0]]
    with np.errstate(invalid="ignore", over="ignore"):
        turns = edges[:, :, 0] * following[:, :, 1] - edges[:, :, 1] * following[:, :, 0]
        floor = 0.01 * np.square(edges).sum(axis=2).max(axis=1, keepdims=True)
        same_way = (turns > floor).all(axis=1) | (turns < -floor).all(axis=1)
    return same_way & np.isfinite(points).all(axis=(1, 2)) & (floor[:, 0] > 0)


def plane_turns(landmarks: np.ndarray) -> np.ndarray:
    """Degrees the face plane turned between every pair of frames (i < j), from foreshortening.

    Per frame, the eye line and the vector from the eyes' middle to the mouth's middle span the
    face plane (A, 2 x 2). Between two frames the map A_j A_i^-1 stretches one direction more
    than the other by 1/cos(turn) when the plane turns out of the image (a slide, roll or
    approach stretches both alike): turn = arccos(smaller / larger singular value).
    """
    eyes = (landmarks[:, _LEFT_EYE] + landmarks[:, _RIGHT_EYE]) / 2
    mouth = (landmarks[:, _LEFT_MOUTH] + landmarks[:, _RIGHT_MOUTH]) / 2
    across, down = landmarks[:, _RIGHT_EYE] - landmarks[:, _LEFT_EYE], mouth - eyes
    first, second = np.triu_indices(len(landmarks), k=1)
    # A_i^-1 in closed form: [[dy, -dx], [-ay, ax]] / det for A = [[ax, dx], [ay, dy]]
    ax, ay, dx, dy = across[:, 0], across[:, 1], down[:, 0], down[:, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        det = ax * dy - dx * ay
        i, j = first, second
        m00 = (ax[j] * dy[i] - dx[j] * ay[i]) / det[i]
        m01 = (-ax[j] * dx[i] + dx[j] * ax[i]) / det[i]
        m10 = (ay[j] * dy[i] - dy[j] * ay[i]) / det[i]
        m11 = (-ay[j] * dx[i] + dy[j] * ax[i]) / det[i]
        # singular values of a 2 x 2 matrix: s1 s2 = |det|, s1^2 + s2^2 = squared Frobenius norm
        area = np.abs(m00 * m11 - m01 * m10)
        frobenius = m00 * m00 + m01 * m01 + m10 * m10 + m11 * m11
        larger = np.sqrt((frobenius + np.sqrt(np.maximum(frobenius * frobenius - 4 * area * area, 0.0))) / 2)
        return np.degrees(np.arccos(np.clip(area / (larger * larger), 0.0, 1.0)))


def _median3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Elementwise median of three arrays (min/max: np.median costs ten times more here)."""
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _running_median3(values: np.ndarray) -> np.ndarray:
    """Median of each frame and its two neighbours; the end frames take the median of the first
    (last) three, so a bad end frame is smoothed away too. Needs at least three frames."""
    padded = np.concatenate([_median3(*values[:3])[None], values, _median3(*values[-3:])[None]])
    return _median3(padded[:-2], padded[1:-1], padded[2:])


def _quantile(values: np.ndarray, percentile: float) -> float:
    """The nearest-rank percentile (a partial sort; np.percentile costs more than the rest)."""
    rank = min(len(values) - 1, int(round(percentile / 100 * (len(values) - 1))))
    return float(np.partition(values, rank)[rank])


def usable_frames(landmarks: np.ndarray, face_sizes: np.ndarray,
                  settings: LivenessSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(usable, placed, uv): the frames the check may use; the frames whose landmarks have a
    face-shaped layout at all; each frame's nose (u, v) (NaN where not placed)."""
    uv = nose_in_face_plane(landmarks)
    with np.errstate(invalid="ignore"):
        frontal = (np.abs(uv[:, 0] - 0.5) <= settings.max_yaw) & (uv[:, 1] >= settings.pitch_range[0]) \
            & (uv[:, 1] <= settings.pitch_range[1])
        large = np.isfinite(face_sizes) & (face_sizes >= settings.min_face_px)
    return frontal & large, ~np.isnan(uv[:, 0]), uv


def nose_steps(landmarks: np.ndarray, face_sizes: np.ndarray, settings: LivenessSettings | None = None) -> np.ndarray:
    """How far the smoothed nose (u, v) moved between consecutive usable frames (face units):
    what `max_step` is compared with (for choosing it on data)."""
    usable, _, uv = usable_frames(np.asarray(landmarks, np.float64), np.asarray(face_sizes, np.float64),
                                  settings or LivenessSettings())
    track = uv[usable]
    return np.hypot(*np.diff(_running_median3(track), axis=0).T) if len(track) >= 3 else np.zeros(0)


def assess(landmarks: Sequence[Sequence[Sequence[float]]] | np.ndarray, face_sizes: Sequence[float] | np.ndarray,
           settings: LivenessSettings | None = None) -> LivenessResult:
    """The liveness verdict of one track from its frames' landmarks (T x 5 x 2, in time order)
    and face box sizes (T; the smaller side of each box, px).

    Frames that cannot be used (see the module docstring) are left out and the reason says how
    many; with fewer than `min_frames` left the verdict is ``not_enough_motion``. Raises
    ValueError only for input of the wrong shape.
    """
    s = settings or LivenessSettings()
    points = np.asarray(landmarks, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, LANDMARKS, 2)
    sizes = np.asarray(face_sizes, dtype=np.float64).reshape(-1)
    if points.ndim != 3 or points.shape[1:] != (LANDMARKS, 2):
        raise ValueError(f"landmarks must be T x {LANDMARKS} x 2; got shape {points.shape}")
    if len(sizes) != len(points):
        raise ValueError(f"{len(points)} frames of landmarks but {len(sizes)} face sizes")
    usable, placed, uv = usable_frames(points, sizes, s)
    count = int(usable.sum())
    note = ""
    if count < len(points):
        bad = len(points) - int(placed.sum())
        note = (f"; {len(points) - count} of {len(points)} frames left out ({bad} without a usable landmark layout, "
                f"the rest with a small or strongly turned face)")
    if count < s.min_frames:
        return LivenessResult(Liveness.NOT_ENOUGH_MOTION, math.nan, math.nan, math.nan, count,
                              f"{count} usable frames; {s.min_frames} needed{note}")
    track = uv[usable]
    smooth = _running_median3(track)
    steps = np.hypot(*np.diff(smooth, axis=0).T)
    part = np.concatenate([[0], np.cumsum(steps > s.max_step)])  # a jump starts a new part
    first, second = np.triu_indices(count, k=1)
    within = part[first] == part[second]
    distances = np.hypot(*(smooth[first[within]] - smooth[second[within]]).T)
    parallax = _quantile(distances, s.percentile) if len(distances) else 0.0
    if part[-1]:
        note += (f"; the nose jumped up to {steps.max():.3f} between two frames (> {s.max_step}: another "
                 f"picture?), so parallax is measured within each of {part[-1] + 1} parts")
    curvature = track[:-2] - 2 * track[1:-1] + track[2:]
    jitter = _quantile(np.hypot(*curvature.T), 50.0) / _SECOND_DIFFERENCE_MEDIAN
    turn = _quantile(np.nan_to_num(plane_turns(points[usable]), nan=0.0), s.percentile)
    needed = max(s.live_parallax, s.min_snr * jitter)
    if parallax >= needed:
        return LivenessResult(Liveness.LIVE, parallax, jitter, turn, count,
                              f"the nose moved {parallax:.3f} off the eye/mouth plane (>= {needed:.3f}){note}")
    if turn >= s.plane_turn_degrees:
        return LivenessResult(Liveness.NOT_LIVE, parallax, jitter, turn, count,
                              f"the face plane turned {turn:.0f} degrees but the nose stayed on it "
                              f"(parallax {parallax:.3f} < {needed:.3f}): a flat picture{note}")
    return LivenessResult(Liveness.NOT_ENOUGH_MOTION, parallax, jitter, turn, count,
                          f"parallax {parallax:.3f} < {needed:.3f} (floor {s.live_parallax}, jitter {jitter:.3f}) "
                          f"and the face plane turned {turn:.0f} degrees (< {s.plane_turn_degrees}): "
                          f"no evidence either way{note}")


def summary(result: LivenessResult) -> str:
    """A result in one clause, for a door decision's reason: the verdict, the parallax, the usable
    frames and why ("live, parallax 0.081 in 12 usable frames (the nose moved ...)")."""
    parallax = "not measured" if math.isnan(result.parallax) else f"{result.parallax:.3f}"
    return f"{result.verdict.value}, parallax {parallax} in {result.frames} usable frames ({result.reason})"
