"""Capture-condition degradations are seeded, keep the frame's shape, and do what they are named
for; the capture features see it; the bench flags whole tables as the detector flags each face
and judges every (template, probe) pair at the threshold the matcher applies."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facegate.evaluation.conditions import (
    DEGRADATIONS,
    choose_cutoff,
    flag_rows,
    motion_kernel,
    off_angle_homography,
    pair_thresholds,
    rng_for,
    row_flags,
)
from services.core.capture import CAPTURE_RULES, FlagRule, capture_features, capture_flags
from services.core.model_card import load_card

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


def test__flag_rows_raises_on_whole_tables_what_the_detector_raises_per_face(photo):
    frames = [photo, DEGRADATIONS["grey"](photo, rng_for(0, "grey", "x")),
              DEGRADATIONS["low_light"](photo, rng_for(0, "low_light", "x")),
              DEGRADATIONS["motion_blur"](photo, rng_for(0, "motion_blur", "x")),
              DEGRADATIONS["side_light"](photo, rng_for(0, "side_light", "x"))]
    rows = [capture_features(frame, BOX) for frame in frames]
    table = {k: np.array([r[k] for r in rows] + [np.nan]) for k in rows[0]}  # the last: a detector miss

    flagged = flag_rows(CAPTURE_RULES, table)

    for i, frame in enumerate(frames):
        assert tuple(f for f in flagged if flagged[f][i]) == capture_flags(frame, BOX)
    assert not any(hit[-1] for hit in flagged.values())
    assert row_flags(CAPTURE_RULES, table) == [*(capture_flags(frame, BOX) for frame in frames), ()]
    assert "grey" in capture_flags(frames[1], BOX) and "dark" in capture_flags(frames[2], BOX)


def test__a_rule_on_the_magnitude_flags_both_signs():
    uneven = (FlagRule("uneven", "balance", 0.3, below=False, absolute=True),)

    assert flag_rows(uneven, {"balance": np.array([-0.5, 0.1, 0.5])})["uneven"].tolist() == [True, False, True]


def test__the_cutoff_lies_between_the_two_kinds_and_points_the_right_way():
    clean, dark = np.linspace(60, 200, 500), np.linspace(5, 40, 500)

    assert 40 < choose_cutoff(clean, dark, below=True) < 60
    assert choose_cutoff(clean, dark, below=True) == pytest.approx(50, abs=0.5)  # the middle of the gap
    assert 40 < choose_cutoff(dark, np.append(clean, np.nan), below=False) < 60
    overlapping = choose_cutoff(np.random.default_rng(0).normal(1.0, 0.1, 5000),
                                np.random.default_rng(1).normal(0.6, 0.1, 5000), below=True)
    assert overlapping == pytest.approx(0.8, abs=0.03)  # equal spreads: halfway


def test__each_pair_gets_the_threshold_the_matcher_applies_for_its_probe_and_template_flags():
    card = load_card()
    templates = [(), ("dark",), ("blurry", "uneven"), None, ()]
    probes = [(), ("dark",), ("dark", "blurry"), ("grey",), ("dark",)]

    for identities in (None, 20):
        matrix = pair_thresholds(card, 1e-3, identities, templates, probes)

        assert matrix.shape == (5, 5)
        for i, template in enumerate(templates):
            for j, probe in enumerate(probes):
                assert matrix[i, j] == card.threshold_for(1e-3, identities, probe, template)
    matrix, pair = pair_thresholds(card, 1e-3, None, templates, probes), card.threshold_for(1e-3)
    dark = card.capture_tightening["dark"]
    assert dark.clean_template < dark.flagged_template
    assert matrix[0, 1] == pytest.approx(pair - dark.clean_template)  # a clean template: the light tightening
    assert matrix[1, 1] == pytest.approx(pair - dark.flagged_template)  # both dark: the strong one
    assert matrix[3, 1] == matrix[1, 1]  # flags not known (enrolled before they were kept): as flagged
    assert matrix[:, 0].tolist() == [pair] * 5  # an unflagged probe keeps the card's threshold
    assert matrix[2, 2] == pytest.approx(pair - max(dark.clean_template,
                                                       card.capture_tightening["blurry"].flagged_template))
