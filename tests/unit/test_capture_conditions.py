"""Capture-condition degradations are seeded, keep the frame's shape, and do what they are named
for; the capture features see it; the condition estimate picks the strictest threshold."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facegate.evaluation.conditions import (
    DEGRADATIONS,
    ConditionEstimator,
    choose_cutoff,
    motion_kernel,
    off_angle_homography,
    pair_thresholds,
    rng_for,
)
from services.core.capture import FlagRule, capture_features

BOX = (72.0, 70.0, 106.0, 120.0)  # where an LFW face is in its 250 px photo


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 250 px colour frame with detail at every scale: blurred noise, a colour ramp, fine texture."""
    rng = np.random.default_rng(7)
    coarse = cv2.resize(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), (250, 250), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 25, (250, 250, 3)).astype(np.float32)
    ramp = np.linspace(60, 200, 250, dtype=np.float32)[None, :, None] * np.array([1.0, 0.7, 0.5], np.float32)
    return np.clip(0.4 * coarse + 0.6 * ramp + fine, 0, 255).astype(np.uint8)


def luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def high_frequency(image: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(image), cv2.CV_64F).var())


@pytest.mark.parametrize("condition", list(DEGRADATIONS))
def test__given_a_seed_and_a_name__then_the_degradation_is_the_same_every_time(condition, photo):
    first = DEGRADATIONS[condition](photo, rng_for(0, condition, "a/a_0001.jpg"))
    again = DEGRADATIONS[condition](photo, rng_for(0, condition, "a/a_0001.jpg"))

    assert np.array_equal(first, again)
    assert first.shape == photo.shape and first.dtype == np.uint8


@pytest.mark.parametrize("condition", [c for c in DEGRADATIONS if c != "clean"])
def test__every_degradation_changes_the_photo_and_leaves_the_input_alone(condition, photo):
    before = photo.copy()

    out = DEGRADATIONS[condition](photo, rng_for(0, condition, "a/a_0001.jpg"))

    assert np.array_equal(photo, before)
    assert np.mean(np.abs(out.astype(np.int16) - photo)) > 1.0


def test__the_generator_depends_on_seed_condition_and_name_only():
    draw = [rng_for(0, "jpeg", "a/a_0001.jpg").random() for _ in range(2)]

    assert draw[0] == draw[1]
    assert rng_for(0, "jpeg", "a/a_0001.jpg").random() != rng_for(0, "jpeg", "a/a_0002.jpg").random()
    assert rng_for(0, "jpeg", "a/a_0001.jpg").random() != rng_for(1, "jpeg", "a/a_0001.jpg").random()
    assert rng_for(0, "jpeg", "a/a_0001.jpg").random() != rng_for(0, "grey", "a/a_0001.jpg").random()


def test__clean_returns_an_equal_copy(photo):
    out = DEGRADATIONS["clean"](photo, rng_for(0, "clean", "x"))

    assert np.array_equal(out, photo) and out is not photo


def test__grey_has_three_equal_channels_stretched_to_the_full_range(photo):
    out = DEGRADATIONS["grey"](photo, rng_for(0, "grey", "x"))

    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.percentile(out[..., 0], 1) <= 2 and np.percentile(out[..., 0], 99) >= 253
    assert capture_features(out, BOX)["saturation"] == 0.0


def test__low_light_darkens_and_adds_noise(photo):
    flat = np.full_like(photo, 180)

    out = DEGRADATIONS["low_light"](photo, rng_for(0, "low_light", "x"))
    flat_out = DEGRADATIONS["low_light"](flat, rng_for(0, "low_light", "x")).astype(np.float64)

    assert luma(out).mean() < 0.4 * luma(photo).mean()
    assert 5.0 < flat_out.std() < 11.0  # the sensor noise on a flat grey card (sigma 6-10)
    assert capture_features(out, BOX)["luma_mean"] < 0.4 * capture_features(photo, BOX)["luma_mean"]


def test__side_light_is_a_horizontal_gradient_from_either_side():
    flat = np.full((250, 250, 3), 150, np.uint8)
    balances = []
    for name in (f"p/p_{i:04d}.jpg" for i in range(20)):
        out = DEGRADATIONS["side_light"](flat, rng_for(0, "side_light", name)).astype(np.float64)
        column = out[:, :, 0].mean(axis=0)
        assert np.allclose(out[:, :, 0], column[None, :])  # the gain depends on x only
        assert min(column[0], column[-1]) == pytest.approx(0.2 * 150, abs=1)  # the dark side
        assert max(column[0], column[-1]) == 210  # 1.4 x 150
        balances.append(capture_features(out.astype(np.uint8), BOX)["balance"])
    assert min(balances) < -0.5 and max(balances) > 0.5  # both directions are drawn


def test__low_res_loses_the_high_frequencies(photo):
    out = DEGRADATIONS["low_res"](photo, rng_for(0, "low_res", "x"))

    assert high_frequency(out) < 0.2 * high_frequency(photo)
    assert abs(luma(out).mean() - luma(photo).mean()) < 2.0  # blur, not a change of brightness
    assert capture_features(out, BOX)["sharpness"] < 0.5 * capture_features(photo, BOX)["sharpness"]
    assert capture_features(out, BOX)["detail"] < 0.7 * capture_features(photo, BOX)["detail"]


def test__jpeg_at_low_quality_leaves_8px_blocks(photo):
    out = DEGRADATIONS["jpeg"](photo, rng_for(0, "jpeg", "x"))

    assert capture_features(out, BOX)["blockiness"] > 1.3 * capture_features(photo, BOX)["blockiness"]
    assert abs(luma(out).mean() - luma(photo).mean()) < 3.0


def test__motion_blur_is_a_normalised_line_and_smooths_the_photo(photo):
    kernel = motion_kernel(11, 0.0)

    assert kernel.sum() == pytest.approx(1.0)
    assert np.count_nonzero(kernel[kernel.shape[0] // 2]) == 11 and np.count_nonzero(kernel) == 11
    out = DEGRADATIONS["motion_blur"](photo, rng_for(0, "motion_blur", "x"))
    assert high_frequency(out) < 0.2 * high_frequency(photo)


def test__off_angle_foreshortens_the_side_turned_away():
    matrix = off_angle_homography(250, 250, 30.0)

    def seen(x: float, y: float) -> np.ndarray:
        point = matrix @ np.array([x, y, 1.0])
        return point[:2] / point[2]

    centre, right, left = seen(125, 125), seen(250, 125), seen(0, 125)
    assert np.allclose(centre, (125, 125), atol=1e-3)  # turned about the vertical through the centre
    assert right[0] - centre[0] < 0.8 * 125 < centre[0] - left[0]  # the far (right) side shrinks
    assert seen(250, 0)[1] > seen(0, 0)[1]  # and is smaller vertically too (perspective)
    mirrored = off_angle_homography(250, 250, -30.0)
    assert (mirrored @ [0, 125, 1])[0] / (mirrored @ [0, 125, 1])[2] > 0.2 * 125


def test__off_angle_keeps_the_centre_and_squeezes_one_side(photo):
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 250, dtype=np.float32)[None, :, None], 250, 0), 3, 2)
    out = DEGRADATIONS["off_angle"](ramp.astype(np.uint8), rng_for(0, "off_angle", "x")).astype(np.float64)

    assert abs(out[125, 125, 0] - ramp[125, 125, 0]) < 3
    assert np.max(np.abs(out[125, :, 0] - ramp[125, :, 0])) > 20


def test__features_of_a_sharp_colour_face_box(photo):
    features = capture_features(photo, BOX)

    assert features["width"] == 106.0
    assert 0 < features["luma_mean"] < 255 and features["luma_std"] > 0 and features["saturation"] > 0.1
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    assert capture_features(blurred, BOX)["sharpness"] < 0.5 * features["sharpness"]
    assert capture_features(blurred, BOX)["detail"] < 0.7 * features["detail"]


def test__detail_does_not_follow_contrast_brightness_or_a_lighting_gradient(photo):
    detail = capture_features(photo, BOX)["detail"]
    gradient = np.linspace(0.5, 1.0, 250, dtype=np.float32)[None, :, None]

    for changed in (photo // 2 + 60, (photo * gradient).astype(np.uint8)):
        assert capture_features(changed, BOX)["detail"] == pytest.approx(detail, rel=0.25)


def test__features_refuse_a_box_outside_the_frame(photo):
    with pytest.raises(ValueError, match="fewer than 4x4"):
        capture_features(photo, (300.0, 300.0, 50.0, 50.0))


ESTIMATOR = ConditionEstimator(
    rules=(FlagRule("grey", "saturation", 0.05), FlagRule("dark", "luma_mean", 50.0),
           FlagRule("uneven", "balance", 0.4, below=False, absolute=True)),
    thresholds={"grey": 0.36, "dark": 0.35},
    both_thresholds={"grey": 0.34, "dark": 0.32},
    default=0.3746,
)


def test__given_several_flags__then_the_strictest_threshold_applies_and_none_loosens_the_default():
    features = {"saturation": 0.0, "luma_mean": 30.0, "balance": -0.6}

    assert ESTIMATOR.estimate(features) == {"grey", "dark", "uneven"}
    assert ESTIMATOR.threshold({"grey", "dark", "uneven"}) == 0.35
    assert ESTIMATOR.threshold({"uneven"}) == 0.3746  # a flag with no threshold of its own keeps the card's
    assert ESTIMATOR.threshold(set()) == 0.3746
    assert ConditionEstimator(ESTIMATOR.rules, {"grey": 0.5}, default=0.3746).threshold({"grey"}) == 0.3746


def test__given_a_template_with_the_probes_flag__then_the_both_flagged_threshold_applies():
    assert ESTIMATOR.threshold({"grey"}, template_flags={"grey"}) == 0.34
    assert ESTIMATOR.threshold({"grey"}, template_flags={"dark"}) == 0.36  # only a shared flag counts
    assert ESTIMATOR.threshold({"grey", "dark"}, template_flags={"grey", "dark"}) == 0.32
    assert ESTIMATOR.threshold(set(), template_flags={"dark"}) == 0.3746  # a flagged template alone: the default


def test__the_estimator_round_trips_through_json_and_works_on_whole_tables():
    import json

    again = ConditionEstimator.from_dict(json.loads(ESTIMATOR.to_json()))
    table = {"saturation": np.array([0.0, 0.3, 0.3, np.nan]), "luma_mean": np.array([120.0, 30.0, 120.0, np.nan]),
             "balance": np.array([0.0, 0.0, -0.7, np.nan])}

    assert again == ESTIMATOR
    rows = [ESTIMATOR.estimate({k: float(v[i]) for k, v in table.items()}) for i in range(4)]
    expected = [[ESTIMATOR.threshold(p, t) for p in rows] for t in rows]
    assert np.allclose(pair_thresholds(again, table, table), expected)
    banded = [[ESTIMATOR.threshold(p, t, base=0.32) for p in rows] for t in rows]
    assert np.allclose(pair_thresholds(again, table, table, base=0.32), banded)


def test__given_another_base_threshold__then_a_flag_lowers_it_by_its_own_tightening():
    assert ESTIMATOR.tightening({"dark"}) == pytest.approx(0.3746 - 0.35)
    assert ESTIMATOR.threshold({"dark"}, base=0.32) == pytest.approx(0.32 - (0.3746 - 0.35))
    assert ESTIMATOR.threshold({"dark"}, {"dark"}, base=0.32) == pytest.approx(0.32 - (0.3746 - 0.32))
    assert ESTIMATOR.threshold(set(), base=0.32) == 0.32


def test__the_cutoff_lies_between_the_two_kinds_and_points_the_right_way():
    clean, dark = np.linspace(60, 200, 500), np.linspace(5, 40, 500)

    assert 40 < choose_cutoff(clean, dark, below=True) < 60
    assert choose_cutoff(clean, dark, below=True) == pytest.approx(50, abs=0.5)  # the middle of the gap
    assert 40 < choose_cutoff(dark, np.append(clean, np.nan), below=False) < 60
    overlapping = choose_cutoff(np.random.default_rng(0).normal(1.0, 0.1, 5000),
                                np.random.default_rng(1).normal(0.6, 0.1, 5000), below=True)
    assert overlapping == pytest.approx(0.8, abs=0.03)  # equal spreads: halfway
