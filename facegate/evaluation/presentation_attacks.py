"""Presentation attacks rendered from stills: a print or a phone screen showing a still photo of a
face, moving in front of a door camera along a planar 3-D trajectory.

No real print or replay footage was available, so attacks are rendered: the still is a flat
plane in front of a pinhole camera (`WIDTH` x `HEIGHT`, 60 degrees across); each frame is the
picture warped by the plane's homography onto a background frame (no face in it), blurred,
noised and JPEG-compressed as a camera would. Run through the real detector, the landmark noise
is the detector's own. Used by `bench/liveness_planarity.py` (APCER per attack type) and by the
door tests (a door requiring liveness refuses these). Attack types (`trajectory`):
- print held still: a print 45-80 cm away, held by a hand (tremor 0.3 degrees, 1 mm per frame);
- print rotated/tilted: turned about its vertical and/or horizontal axis by 5-40 degrees over
  the frames (from facing the camera to one side, or swung through facing it), with tremor;
- print moved: slid 5-15 cm sideways and brought 10-30% closer, with tremor;
- screen replay of a still with hand shake: a phone-sized screen (dark bezel, emissive) 20-40 cm
  away, shaken by a random walk of 1.5 degrees and 4 mm per frame.
A replayed VIDEO of a real person is not rendered: it carries real 3-D head motion, the very
thing the planarity check looks for, and is not caught by it.

Everything draws from the `rng` it is given (seeded by the caller), in a fixed order.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 360  # the frame attacks are rendered into (the example clip's size)
FOCAL = (WIDTH / 2) / math.tan(math.radians(30))  # px: 60 degrees across
STILL, ROTATED, MOVED, SCREEN = ("print held still", "print rotated/tilted", "print moved (translate/approach)",
                                 "screen replay of a still, hand shake")
ATTACKS = (STILL, ROTATED, MOVED, SCREEN)

Pose = tuple[np.ndarray, np.ndarray]  # (3 x 3 rotation, centre in metres: camera frame, z forward)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation (degrees) about the camera's vertical (yaw), horizontal (pitch) and optical (roll) axes."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def plane_homography(side_px: int, side_m: float, pose: Pose) -> np.ndarray:
    """Picture pixels -> frame pixels for a square picture `side_m` wide whose centre is at `t`
    (metres, camera frame, z forward) and whose orientation is `r` (a pinhole camera, FOCAL px)."""
    r, t = pose
    k = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]])
    to_plane = np.array([[side_m / side_px, 0, -side_m / 2], [0, side_m / side_px, -side_m / 2], [0, 0, 1]])
    return k @ np.column_stack([r[:, 0], r[:, 1], t]) @ to_plane


def trajectory(kind: str, rng: np.random.Generator, frames: int) -> tuple[list[Pose], float]:
    """Poses of the picture over `frames` frames for one attack type (one of `ATTACKS`), and the
    sweep (degrees turned over the frames) for rotated prints (0 for the others): one leg of
    `door_trajectory` (a rotated print turns once, a moved one slides once)."""
    return door_trajectory(kind, rng, seconds=0.0, fps=10.0, leg_frames=max(frames - 1, 1), shake_step=1.0,
                           frames=frames)


def door_trajectory(kind: str, rng: np.random.Generator, seconds: float, fps: float, leg_frames: float,
                    shake_step: float, frames: int | None = None) -> tuple[list[Pose], float]:
    """`trajectory` continued over a door's budget: poses at `fps` for `seconds` (frame 0 at 0 s).

    The picture and its motion are drawn as `trajectory` draws them (same distributions, same
    order). The deliberate motion keeps the window's extent and speed and goes back and forth: a
    rotated print sweeps its 5-40 degrees in `leg_frames` frames (the window's 0.9 s), back in as
    many, and so on (a triangle wave); a moved print slides and approaches, then back, alike. The
    hand's tremor is drawn per frame as there; a screen's random walk takes steps `shake_step`
    times the window's (sqrt(window fps / fps): the same spread per second at any rate). With
    `fps` and `leg_frames` the window's (10, 9.0) and `shake_step` 1, the first 10 poses are
    exactly those `trajectory(kind, rng, 10)` would give from the same generator state. `frames`:
    that many poses instead of `seconds` worth.
    """
    if kind not in ATTACKS:
        raise ValueError(f"attack type {kind!r}; one of {', '.join(ATTACKS)}")
    screen = kind == SCREEN
    distance = rng.uniform(0.2, 0.4) if screen else rng.uniform(0.45, 0.8)
    base = np.array([rng.uniform(-0.08, 0.08) * distance, rng.uniform(-0.05, 0.05) * distance, distance])
    tilt = rng.uniform(-5, 5, size=3)
    sweep, axis = rng.uniform(5, 40), rng.uniform(0, 2 * math.pi)
    one_sided = rng.random() < 0.5
    slide = np.array([rng.choice([-1, 1]) * rng.uniform(0.05, 0.15), rng.uniform(-0.03, 0.03),
                      -rng.uniform(0.1, 0.3) * distance])
    shake_angles, shake_shift = np.zeros(3), np.zeros(3)
    poses = []
    for i in range(round(seconds * fps) + 1 if frames is None else frames):
        cycle = (i / leg_frames) % 2
        progress = (cycle if cycle <= 1 else 2 - cycle) - 0.5  # -0.5 .. 0.5 .. -0.5 ...
        angles, position = tilt.copy(), base.copy()
        if kind == ROTATED:
            turned = progress + 0.5 if one_sided else progress
            angles[:2] += sweep * turned * np.array([math.cos(axis), math.sin(axis)])
        if kind == MOVED:
            position = position + slide * (progress + 0.5)
        if screen:
            shake_angles += rng.normal(0, 1.5 * shake_step, size=3)
            shake_shift += rng.normal(0, 0.004 * shake_step, size=3)
            angles, position = angles + shake_angles, position + shake_shift
        else:
            angles = angles + rng.normal(0, 0.3, size=3)
            position = position + rng.normal(0, 0.001, size=3)
        poses.append((rotation(*angles), position))
    return poses, (sweep if kind == ROTATED else 0.0)


def picture_of(image: np.ndarray, box: tuple[float, float, float, float], side: int = 300) -> tuple[np.ndarray, float]:
    """A square picture around a face (its box x, y, width, height in `image`): 2.4 face widths,
    edges replicated where the photo ends, `side` px; and the face's width as a fraction of it."""
    x, y, w, h = box
    half_side = 1.2 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    x1, y1 = int(round(cx - half_side)), int(round(cy - half_side))
    size = int(round(2 * half_side))
    pad = size
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y1 + pad : y1 + pad + size, x1 + pad : x1 + pad + size]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA), max(w, h) / size


def render(picture: np.ndarray, face_fraction: float, kind: str, background: np.ndarray, poses: list[Pose],
           face_px: float, rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple[float, ...]]]:
    """The frames (RGB, `HEIGHT` x `WIDTH`, over `background` of that size) a camera takes of the
    picture moving along `poses`, the face `face_px` wide at the first pose; and where the
    picture's face is in each frame (its box mapped by the homography, x, y, width, height, for
    picking the detection that belongs to it)."""
    if background.shape[:2] != (HEIGHT, WIDTH):
        raise ValueError(f"background must be {HEIGHT} x {WIDTH}; got {background.shape[:2]}")
    content = picture
    if kind == SCREEN:  # emissive, lower contrast, inside a dark bezel
        content = cv2.convertScaleAbs(picture, alpha=0.85, beta=30)
        bezel = picture.shape[0] // 12
        content = cv2.copyMakeBorder(content, bezel, bezel, bezel, bezel, cv2.BORDER_CONSTANT, value=(12, 12, 14))
    side_px = content.shape[0]
    # the physical size that makes the face `face_px` wide at the trajectory's first distance
    side_m = face_px * poses[0][1][2] / (FOCAL * face_fraction) * side_px / picture.shape[0]
    centre, half_face = side_px / 2, face_fraction * picture.shape[0] / 2
    frames: list[np.ndarray] = []
    boxes: list[tuple[float, ...]] = []
    for pose in poses:
        h = plane_homography(side_px, side_m, pose)
        warped = cv2.warpPerspective(content, h, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.full(content.shape[:2], 255, np.uint8), h, (WIDTH, HEIGHT))
        frame = np.where(mask[..., None] > 127, warped, background)
        frame = cv2.GaussianBlur(frame, (0, 0), 0.6)
        frame = np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        frames.append(np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)) if ok else frame)
        corners = np.array([[centre - half_face, centre - half_face], [centre + half_face, centre - half_face],
                            [centre + half_face, centre + half_face], [centre - half_face, centre + half_face]])
        mapped = cv2.perspectiveTransform(corners[None].astype(np.float32), h)[0]
        x1, y1 = mapped.min(axis=0)
        x2, y2 = mapped.max(axis=0)
        boxes.append((float(x1), float(y1), float(x2 - x1), float(y2 - y1)))
    return frames, boxes


def wall(rng: np.random.Generator) -> np.ndarray:
    """A background with no face in it, for attacks rendered where no empty camera frame is at
    hand: a wall lit from one side (a smooth grey-beige gradient) with a little texture."""
    across = np.linspace(0.0, 1.0, WIDTH)[None, :, None]
    down = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    base = np.array([150.0, 140.0, 125.0]) + rng.uniform(-20, 20)
    shade = base * (0.75 + 0.35 * across) * (1.0 - 0.1 * down)
    texture = cv2.GaussianBlur(rng.normal(0, 6.0, (HEIGHT, WIDTH, 1)), (0, 0), 3.0)[..., None]
    return np.clip(shade + texture, 0, 255).astype(np.uint8)
