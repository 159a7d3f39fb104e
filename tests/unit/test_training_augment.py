"""Augmentation of aligned crops: deterministic under a seed, shape-preserving, and each
operation doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from facegate.training.augment import Augmentation, augment  # noqa: E402 (after the TensorFlow import check)

NOTHING = Augmentation(brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), grey_probability=0.0,
                       flip_probability=0.0, rotation_degrees=0.0, shift=0.0, blur_probability=0.0,
                       noise_probability=0.0, jpeg_probability=0.0, low_res_probability=0.0)


def crops(n: int = 4, side: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(40, 220, side, dtype=np.float32)[None, :, None] * np.array([1.0, 0.8, 0.6])
    texture = rng.normal(0, 20, (n, side, side, 1))
    return np.clip(base[None] + texture, 0, 255).astype(np.uint8)


def test__the_same_seed_gives_the_same_crops_and_another_seed_others():
    x = crops()
    assert np.array_equal(augment(x, 3), augment(x, 3))
    assert not np.array_equal(augment(x, 3), augment(x, 4))


def test__augmented_crops_keep_their_shape_and_type():
    out = augment(crops(), 1)
    assert out.shape == crops().shape and out.dtype == np.uint8


def test__with_every_operation_off_the_crops_come_back_unchanged():
    x = crops()
    assert np.abs(augment(x, 0, NOTHING).astype(int) - x).max() <= 1


def test__grey_always_gives_equal_channels():
    from dataclasses import replace

    out = augment(crops(), 0, replace(NOTHING, grey_probability=1.0))
    assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 1


def test__flip_mirrors_the_crop():
    from dataclasses import replace

    x = crops()
    assert np.abs(augment(x, 0, replace(NOTHING, flip_probability=1.0)).astype(int) - x[:, :, ::-1]).max() <= 1


def test__blur_and_low_resolution_remove_fine_detail():
    from dataclasses import replace

    x = crops()

    def detail(images: np.ndarray) -> float:
        return float(np.abs(np.diff(images.astype(float), axis=2)).mean())

    assert detail(augment(x, 0, replace(NOTHING, blur_probability=1.0, blur_sigma=(1.5, 2.0)))) < 0.6 * detail(x)
    assert detail(augment(x, 0, replace(NOTHING, low_res_probability=1.0, low_res_side=(12, 16)))) < 0.6 * detail(x)


def test__bad_settings_and_bad_crops_are_refused():
    with pytest.raises(ValueError, match="grey_probability must be in"):
        Augmentation(grey_probability=1.5)
    with pytest.raises(ValueError, match="uint8 N x S x S x 3"):
        augment(np.zeros((2, 8, 8), np.uint8), 0)
