"""Image augmentation for aligned face crops: what door cameras do to a face, drawn at random.

Training on cached embeddings of a few photos per person learns little; the same photos seen
darker, greyer, blurred, shifted or compressed are new evidence of what does *not* change a
person (the seeds' imgaug recipe, here from `tf.image` and Keras 3 preprocessing layers;
imgaug is broken on NumPy 2). Every operation is applied to each crop with its own probability
and strength, all drawn from stateless random ops keyed by `seed`: the same seed and crops give
the same output, whatever ran before.

Crops are uint8 N x S x S x 3 RGB (the embedder's aligned crops); so is the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of each operation (defaults: mild, as a door camera varies)."""

    brightness: float = 0.25  # +- share of the full range
    contrast: tuple[float, float] = (0.6, 1.4)
    gamma: tuple[float, float] = (0.7, 1.6)
    grey_probability: float = 0.2  # IR night cameras
    flip_probability: float = 0.5  # a face and its mirror image are the same person
    rotation_degrees: float = 8.0
    shift: float = 0.05  # share of the crop side
    blur_probability: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    noise_probability: float = 0.3
    noise_sigma: tuple[float, float] = (2.0, 10.0)  # 0-255 units
    jpeg_probability: float = 0.3
    jpeg_quality: tuple[int, int] = (15, 60)
    low_res_probability: float = 0.2
    low_res_side: tuple[int, int] = (40, 80)  # px the face is shrunk to before coming back up

    def __post_init__(self) -> None:
        for name in ("grey_probability", "flip_probability", "blur_probability", "noise_probability",
                     "jpeg_probability", "low_res_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must be an increasing range in 1..100; got {self.jpeg_quality}")


def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """One H x W x 3 float image blurred with a 9 x 9 Gaussian of `sigma` px (separable)."""
    x = tf.range(-4.0, 5.0)
    kernel = tf.exp(-0.5 * tf.square(x / sigma))
    kernel /= tf.reduce_sum(kernel)
    row = tf.tile(tf.reshape(kernel, (1, 9, 1, 1)), (1, 1, 3, 1))
    column = tf.tile(tf.reshape(kernel, (9, 1, 1, 1)), (1, 1, 3, 1))
    out = tf.nn.depthwise_conv2d(image[None], row, (1, 1, 1, 1), "SAME")
    return tf.nn.depthwise_conv2d(out, column, (1, 1, 1, 1), "SAME")[0]


def _one(image: tf.Tensor, seed: tf.Tensor, settings: Augmentation) -> tf.Tensor:
    """One uint8 crop augmented with the stateless seed pair `seed`."""
    seeds = tf.random.experimental.stateless_split(seed, 16)
    uniform = [tf.random.stateless_uniform((), seeds[i]) for i in range(16)]
    side = tf.shape(image)[0]
    x = tf.image.convert_image_dtype(image, tf.float32)
    x = tf.cond(uniform[0] < settings.flip_probability, lambda: tf.image.flip_left_right(x), lambda: x)
    x = tf.image.adjust_brightness(x, (2.0 * uniform[1] - 1.0) * settings.brightness)
    x = tf.image.adjust_contrast(x, settings.contrast[0] + uniform[2] * (settings.contrast[1] - settings.contrast[0]))
    gamma = settings.gamma[0] + uniform[3] * (settings.gamma[1] - settings.gamma[0])
    x = tf.image.adjust_gamma(tf.clip_by_value(x, 0.0, 1.0), gamma)
    x = tf.cond(uniform[4] < settings.grey_probability,
                lambda: tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x)), lambda: x)
    sigma = settings.blur_sigma[0] + uniform[5] * (settings.blur_sigma[1] - settings.blur_sigma[0])
    x = tf.cond(uniform[6] < settings.blur_probability, lambda: _gaussian_blur(x, sigma), lambda: x)
    low = settings.low_res_side[0] + tf.cast(uniform[7] * (settings.low_res_side[1] - settings.low_res_side[0]),
                                              tf.int32)
    x = tf.cond(uniform[8] < settings.low_res_probability,
                lambda: tf.image.resize(tf.image.resize(x, (low, low), antialias=True), (side, side)), lambda: x)
    noise = (settings.noise_sigma[0] + uniform[9] * (settings.noise_sigma[1] - settings.noise_sigma[0])) / 255.0
    x = tf.cond(uniform[10] < settings.noise_probability,
                lambda: x + noise * tf.random.stateless_normal(tf.shape(x), seeds[11]), lambda: x)
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = tf.cond(uniform[12] < settings.jpeg_probability,
                lambda: tf.image.stateless_random_jpeg_quality(x, *settings.jpeg_quality, seeds[13]), lambda: x)
    return tf.image.convert_image_dtype(x, tf.uint8, saturate=True)


def augment(crops: np.ndarray, seed: int, settings: Augmentation | None = None) -> np.ndarray:
    """`crops` (uint8 N x S x S x 3) augmented: per crop, photometric changes, then a small
    rotation and shift of the whole batch's geometry drawn per crop (Keras 3 layers, seeded)."""
    settings = settings or Augmentation()
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 N x S x S x 3; got {crops.dtype} {crops.shape}")
    if len(crops) == 0:
        return crops.copy()
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), len(crops))
    photometric = tf.stack([_one(tf.constant(c), s, settings) for c, s in zip(crops, seeds, strict=True)])
    geometry = keras.Sequential([
        keras.layers.RandomRotation(settings.rotation_degrees / 360.0, fill_mode="reflect", seed=seed),
        keras.layers.RandomTranslation(settings.shift, settings.shift, fill_mode="reflect", seed=seed + 1),
    ])
    moved = geometry(tf.cast(photometric, tf.float32), training=True)
    return np.clip(np.rint(keras.ops.convert_to_numpy(moved)), 0, 255).astype(np.uint8)
