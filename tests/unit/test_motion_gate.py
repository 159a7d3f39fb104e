"""The motion gate: which frames of a door with nobody tracked may skip the detector."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from services.contracts.v1 import common_pb2
from services.core import ndarray
from services.core.errors import InvalidArgument
from services.core.thumbnails import grey_thumbnail, thumbnail_shape
from services.detector.regions import MAX_EXPECTED
from services.gateway.motion import (
    MAX_FOLLOWED,
    MotionGate,
    Why,
    around_tracks,
    followable,
    sent_thumbnail,
    thumbnail,
)

FULL_EVERY = 10


def corridor(seed: int = 0) -> np.ndarray:
    """A 640x480 RGB scene with structure at every scale (walls, a door frame, texture)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (12, 16, 3), dtype=np.uint8)
    scene = cv2.resize(coarse, (640, 480), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(scene, (250, 60), (390, 470), (90, 60, 30), 12)
    return scene


def with_face(scene: np.ndarray, x: int = 300, y: int = 200, side: int = 60) -> np.ndarray:
    """The scene with a face-sized skin-toned oval and dark eyes in it."""
    out = scene.copy()
    cv2.ellipse(out, (x + side // 2, y + side // 2), (side // 2, side * 2 // 3), 0, 0, 360, (205, 160, 130), -1)
    for dx in (side // 3, 2 * side // 3):
        cv2.circle(out, (x + dx, y + side // 2), max(2, side // 12), (30, 20, 20), -1)
    return out


def jpeg(image: np.ndarray) -> common_pb2.NDArray:
    return ndarray.encode(image, "jpeg", jpeg_quality=85)


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def run(gate: MotionGate, frames: list[common_pb2.NDArray], tracking: bool = False,
        nobody: bool = True, read: Callable[[common_pb2.NDArray], np.ndarray | None] = thumbnail) -> list[Why]:
    """Each frame checked, then learnt if it showed `nobody` (as the gateway does once the
    detector, or the gate, has said so); `read` makes its thumbnail, as the gateway does."""
    whys = []
    for frame in frames:
        whys.append(gate.check(read(frame), tracking))
        if nobody:
            gate.learn(read(frame))
    return whys


def test__given_an_unchanging_scene__then_only_the_first_frame_and_every_nth_after_are_searched() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=FULL_EVERY)
    whys = run(gate, [jpeg(corridor())] * 31)
    assert whys[0] is Why.MOTION  # nothing to compare with yet
    searched = [i for i, why in enumerate(whys) if why is not Why.STILL]
    assert searched == [0, 10, 20, 30]
    assert all(whys[i] is Why.PERIODIC for i in searched[1:])


def test__given_sensor_noise_on_a_still_scene__then_its_frames_are_still_gated() -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    whys = run(gate, [jpeg(noisy(corridor(), rng)) for _ in range(40)])
    assert whys[5:].count(Why.STILL) >= 34, whys


@pytest.mark.parametrize("side", [60, 120])
def test__given_a_still_scene__when_a_face_appears__then_that_frame_is_searched(side: int) -> None:
    rng = np.random.default_rng(2)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(noisy(corridor(), rng)) for _ in range(20)])
    assert gate.check(thumbnail(jpeg(noisy(with_face(corridor(), side=side), rng))), tracking=False) is Why.MOTION


def test__given_a_face_that_moves_a_little_each_frame__then_every_frame_is_searched() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 20)
    whys = run(gate, [jpeg(with_face(corridor(), x=200 + 16 * i)) for i in range(10)])
    assert whys == [Why.MOTION] * 10


@pytest.mark.parametrize("gain", [0.6, 1.25])  # 1.25: the brightest wall just short of saturating
def test__given_the_whole_scene_getting_darker_or_brighter__then_that_is_not_motion(gain: float) -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 20)
    dimmed = np.clip(corridor().astype(np.float32) * gain, 0, 255).astype(np.uint8)
    assert run(gate, [jpeg(dimmed)] * 3) == [Why.STILL] * 3


def test__given_a_tracked_face__then_every_frame_is_searched_even_with_nothing_moving() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 5)
    scene = jpeg(with_face(corridor()))
    assert run(gate, [scene], nobody=False) == [Why.MOTION]
    assert run(gate, [scene] * 5, tracking=True, nobody=False) == [Why.TRACKING] * 5


def test__given_a_tracked_face_that_left__when_the_empty_scene_is_back__then_it_is_not_searched() -> None:
    rng = np.random.default_rng(4)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=FULL_EVERY)
    run(gate, [jpeg(noisy(corridor(), rng)) for _ in range(8)])
    run(gate, [jpeg(noisy(with_face(corridor()), rng)) for _ in range(3)], tracking=True, nobody=False)
    whys = run(gate, [jpeg(noisy(corridor(), rng)) for _ in range(12)], tracking=True)
    assert whys[:9] == [Why.SCENE] * 9 and whys[9] is Why.PERIODIC  # still looked at every 10th frame


def test__given_a_60px_face_in_a_1280x720_frame__then_it_differs_from_the_scene() -> None:
    rng = np.random.default_rng(5)
    wide = cv2.resize(corridor(), (1280, 720), interpolation=cv2.INTER_CUBIC)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(noisy(wide, rng)) for _ in range(10)])
    assert run(gate, [jpeg(noisy(with_face(wide, x=700, y=300), rng))], tracking=True, nobody=False) == \
        [Why.TRACKING]


def test__given_a_person_who_was_tracked_and_left__when_they_come_back_to_the_same_spot__then_it_is_motion() -> None:
    rng = np.random.default_rng(3)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    empty = [jpeg(noisy(corridor(), rng)) for _ in range(5)]
    visit = [jpeg(noisy(with_face(corridor()), rng)) for _ in range(5)]
    run(gate, empty * 4)
    assert run(gate, visit[:1], nobody=False) == [Why.MOTION]
    run(gate, visit * 3, tracking=True, nobody=False)  # frames that showed someone are not learnt
    run(gate, empty * 2)
    assert run(gate, visit[1:2], nobody=False) == [Why.MOTION]


def test__given_a_stream_that_starts_with_someone_in_view__then_they_are_not_taken_for_the_scene() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    visit = jpeg(with_face(corridor()))
    assert run(gate, [visit] * 3, nobody=False) == [Why.MOTION] * 3  # no scene learnt yet
    run(gate, [jpeg(corridor())] * 10)
    assert run(gate, [visit], nobody=False) == [Why.MOTION]


def test__given_a_frame_whose_thumbnail_cannot_be_read__then_it_goes_to_the_detector_to_say_why() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 5)
    garbage = common_pb2.NDArray(encoding=common_pb2.NDArray.ENCODING_JPEG, data=b"\xff\xd8" + b"\x00" * 300)
    assert thumbnail(garbage) is None
    assert run(gate, [garbage]) == [Why.UNREADABLE]


def test__given_a_png_frame__then_it_is_searched_without_a_thumbnail() -> None:
    # PNG has no reduced decode: a whole 8 MP decode on the gateway's event loop is not worth a skip
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    png = ndarray.encode(corridor(), "png")
    assert thumbnail(png) is None and run(gate, [png] * 3) == [Why.UNREADABLE] * 3


def test__given_a_frame_that_differed_without_a_face__then_it_becomes_scene_only_after_seconds() -> None:
    # a person turned away is searched whole for ~10 s at 5 fps before the scene takes them in
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 20)
    changed = jpeg(with_face(corridor(), side=120))
    whys = []
    for _ in range(80):
        whys.append(gate.check(thumbnail(changed), tracking=False))
        if whys[-1] is Why.MOTION:
            gate.learn(thumbnail(changed), slowly=True)
    assert whys[:40] == [Why.MOTION] * 40 and Why.STILL in whys[40:]


def test__given_raw_frames__then_they_are_gated_like_jpeg_ones() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    still = ndarray.encode(corridor())
    assert run(gate, [still] * 6) == [Why.MOTION] + [Why.STILL] * 5
    assert gate.check(thumbnail(ndarray.encode(with_face(corridor()))), tracking=False) is Why.MOTION


def test__given_the_camera_changing_resolution__then_the_first_new_frame_is_searched() -> None:
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    run(gate, [jpeg(corridor())] * 5)
    smaller = cv2.resize(corridor(), (320, 240), interpolation=cv2.INTER_AREA)
    assert run(gate, [jpeg(smaller)] * 3) == [Why.MOTION, Why.STILL, Why.STILL]


@pytest.mark.parametrize("face_fraction, min_face_size, full_every",
                         [(0.0, 60, 10), (1.5, 60, 10), (0.25, 8, 10), (0.25, 60, 0)])
def test__given_settings_out_of_range__then_the_gate_refuses_them(face_fraction: float, min_face_size: int,
                                                                  full_every: int) -> None:
    with pytest.raises(ValueError, match="face_fraction|min_face_size|full_every"):
        MotionGate(face_fraction=face_fraction, min_face_size=min_face_size, full_every=full_every)


def box(x: float, y: float, w: float, h: float) -> common_pb2.Box:
    return common_pb2.Box(x=x, y=y, width=w, height=h)


def test__given_a_face_unseen_for_a_while__then_its_region_reaches_further() -> None:
    fresh = around_tracks([(box(300, 200, 40, 40), 0.2)], 640, 480)
    stale = around_tracks([(box(300, 200, 40, 40), 0.6)], 640, 480)  # e.g. after the decided skip
    assert fresh is not None and stale is not None and stale.width > fresh.width


def test__given_a_tracked_face__then_the_search_region_is_the_smallest_square_reaching_a_face_side_beyond_it() -> None:
    region = around_tracks([(box(300, 200, 60, 80), 0.2)], 640, 480)
    assert region is not None
    # needed: 220 x 240 (80 px, its longer side, every way) -> a 256 px square on its centre
    assert (region.x, region.y, region.width, region.height) == (202, 112, 256, 256)


def test__given_faces_near_the_edges__then_the_region_joins_them_and_is_moved_inside_the_frame() -> None:
    region = around_tracks([(box(10, 10, 40, 40), 0.2), (box(100, 60, 40, 40), 0.0)], 640, 480)
    assert region is not None
    assert (region.x, region.y, region.width, region.height) == (0, 0, 256, 256)  # needs 210 x 170
    corner = around_tracks([(box(600, 440, 30, 30), 0.2)], 640, 480)
    assert corner is not None and (corner.x + corner.width, corner.y + corner.height) == (640, 480)


def test__given_any_faces__then_regions_come_in_a_few_sizes_only() -> None:
    rng = np.random.default_rng(6)
    sides = set()
    for _ in range(200):
        x, y, side = rng.uniform(0, 560), rng.uniform(0, 400), rng.uniform(30, 110)
        if (region := around_tracks([(box(x, y, side, side), 0.2)], 640, 480)) is not None:
            assert region.width == region.height and 0 <= region.x <= 640 - region.width
            assert 0 <= region.y <= 480 - region.height
            sides.add(region.width)
    assert sides <= {96, 128, 160, 192, 256, 320, 384} and len(sides) >= 3


def test__given_tracked_faces_in_the_frame__then_they_can_be_looked_for_again_and_otherwise_the_frame_is_searched(
        ) -> None:
    assert followable([box(300, 200, 60, 80), box(0, 0, 40, 40)], 640, 480)
    assert followable([box(-20, 460, 60, 80)], 640, 480)  # partly outside: the detector pads its crops
    assert not followable([], 640, 480)
    assert not followable([box(700, 200, 60, 80)], 640, 480)  # from a larger frame: the camera changed resolution
    assert not followable([box(0, 0, 900, 900)], 640, 480)
    assert not followable([box(0, 0, 500, 100)], 640, 480)  # longer than the frame's shorter side
    assert not followable([box(10 * i, 10, 20, 20) for i in range(MAX_FOLLOWED + 1)], 640, 480)  # the detector's limit
    assert MAX_FOLLOWED == MAX_EXPECTED  # the gateway asks for what the detector takes


def test__given_no_tracks_or_a_region_that_is_most_of_the_frame__then_the_whole_frame_is_searched() -> None:
    assert around_tracks([], 640, 480) is None
    assert around_tracks([(box(200, 120, 200, 200), 0.2)], 640, 480) is None  # needs 600 px
    assert around_tracks([(box(40, 40, 40, 40), 0.2)], 160, 120) is None  # a 128 px square is most of it


def test__given_the_agents_own_thumbnails__then_a_noisy_still_scene_is_gated_and_a_face_stepping_in_is_searched(
        ) -> None:
    """What `facegate camera` sends with each frame (the pixels before JPEG) gates as the decoded JPEG does."""
    rng = np.random.default_rng(3)
    gate = MotionGate(face_fraction=0.25, min_face_size=60, full_every=1000)
    whys = run(gate, [ndarray.encode(grey_thumbnail(noisy(corridor(), rng))) for _ in range(40)],
               read=lambda sent: sent_thumbnail(sent, 640, 480))
    face = sent_thumbnail(ndarray.encode(grey_thumbnail(noisy(with_face(corridor()), rng))), 640, 480)

    assert whys[5:].count(Why.STILL) >= 34, whys
    assert gate.check(face, tracking=False) is Why.MOTION


def test__the_agents_thumbnail_of_a_frame_is_within_a_few_grey_levels_of_the_one_decoded_from_its_jpeg() -> None:
    frame = noisy(with_face(corridor()), np.random.default_rng(4))
    decoded = thumbnail(jpeg(frame))
    sent = grey_thumbnail(frame)
    assert decoded is not None and sent.shape == decoded.shape == (60, 80)

    assert np.abs(sent.astype(int) - decoded).mean() < 2.0


@pytest.mark.parametrize("sent, says", [
    (ndarray.encode(np.zeros((30, 40), np.uint8)),
     r"motion_thumbnail: raw uint8 \[30, 40\] for a 640x480 frame; send raw uint8 \[60, 80\]"),
    (ndarray.encode(np.zeros((60, 80), np.float32)), "float32"),
    (ndarray.encode(np.zeros((60, 80, 3), np.uint8)), r"\[60, 80, 3\]"),
    (jpeg(np.zeros((60, 80, 3), np.uint8)), "JPEG"),
    # never decoded: a PNG could claim 80 MP (here it is not even a PNG)
    (common_pb2.NDArray(dtype="uint8", shape=[60, 80], data=b"not a png", encoding=common_pb2.NDArray.ENCODING_PNG),
     "motion_thumbnail: PNG uint8 \\[60, 80\\] for a 640x480 frame; send raw"),
    (common_pb2.NDArray(dtype="uint8", shape=[60, 80], data=b"\0" * 10), "motion_thumbnail"),  # too short
])
def test__given_a_sent_thumbnail_that_is_not_the_frames_grey_eighth__then_invalid_argument_says_what_to_send(
        sent: common_pb2.NDArray, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        sent_thumbnail(sent, 640, 480)


@pytest.mark.parametrize("width, height", [(640, 480), (641, 481), (100, 100), (1280, 719)])
def test__the_agents_thumbnail_has_the_shape_of_the_one_decoded_from_the_jpeg_whatever_the_frame_size(
        width: int, height: int) -> None:
    frame = cv2.resize(corridor(), (width, height), interpolation=cv2.INTER_AREA)
    decoded = thumbnail(jpeg(frame))
    assert decoded is not None

    assert grey_thumbnail(frame).shape == thumbnail_shape(width, height) == decoded.shape
