"""Metric-learning losses on a batch of embeddings, with online mining (FaceNet's triplet loss).

A batch holds P people x K images (`sampler.PKSampler`); every (anchor, positive, negative)
triplet in it is formed on the fly from the pairwise distances, so no triplet list is built.
The losses work on Euclidean distances between the rows of `embeddings` (unit vectors, as
FaceGate's embedder gives), the distance the matcher thresholds.

- `batch_all_triplet_loss`: the mean hinge over every valid triplet that still violates the
  margin (easy triplets, already satisfied, would only dilute the mean);
- `batch_hard_triplet_loss`: per anchor, its farthest positive against its nearest negative;
- `semi_hard_triplet_loss`: per (anchor, positive), the nearest negative that is still
  farther than the positive (FaceNet's semi-hard choice: hard enough to teach, not so hard
  that it is a mislabelled or degenerate pair); without one, the farthest negative;
- `contrastive_loss`: every pair: same person pulled together (d^2), different people pushed
  beyond the margin (max(0, margin - d)^2).

Memory: the triplet mask is B x B x B booleans (B = P * K), which is why batches stay around
256 images. Each loss is checked against a brute-force NumPy reference in the tests.
"""

from __future__ import annotations

import tensorflow as tf


def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """B x B Euclidean distances; the gradient of sqrt at 0 is infinite, so zeros are nudged first."""
    squared = tf.reduce_sum(tf.square(embeddings), axis=1)
    d2 = squared[:, None] - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True) + squared[None, :]
    d2 = tf.maximum(d2, 0.0)
    zero = tf.cast(tf.equal(d2, 0.0), embeddings.dtype)
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _masks(labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(positive pairs: same label, not the same row), (negative pairs: different labels)."""
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def batch_all_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    hinge = distances[:, :, None] - distances[:, None, :] + margin  # [a, p, n]
    valid = tf.logical_and(positive[:, :, None], negative[:, None, :])
    losses = tf.where(valid, tf.maximum(hinge, 0.0), 0.0)
    violating = tf.reduce_sum(tf.cast(losses > 1e-16, embeddings.dtype))
    return tf.reduce_sum(losses) / tf.maximum(violating, 1.0)


def batch_hard_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    hardest_positive = tf.reduce_max(tf.where(positive, distances, 0.0), axis=1)
    far = tf.reduce_max(distances) + 1.0  # a non-negative pair can never be the nearest negative
    hardest_negative = tf.reduce_min(tf.where(negative, distances, far), axis=1)
    has_both = tf.logical_and(tf.reduce_any(positive, axis=1), tf.reduce_any(negative, axis=1))
    losses = tf.maximum(hardest_positive - hardest_negative + margin, 0.0)
    count = tf.reduce_sum(tf.cast(has_both, embeddings.dtype))
    return tf.reduce_sum(tf.where(has_both, losses, 0.0)) / tf.maximum(count, 1.0)


def semi_hard_negatives(labels: tf.Tensor, distances: tf.Tensor) -> tf.Tensor:
    """[a, p] -> d(a, n) of the semi-hard negative for each anchor-positive pair: the nearest
    negative farther than the positive, else (none is) the farthest negative."""
    _, negative = _masks(labels)
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    negatives = tf.broadcast_to(negative[:, None, :], tf.shape(d_an - d_ap))
    outside = tf.logical_and(negatives, d_an > d_ap)
    big = tf.reduce_max(distances) + 1.0
    nearest_outside = tf.reduce_min(tf.where(outside, tf.broadcast_to(d_an, tf.shape(outside)), big), axis=2)
    farthest = tf.reduce_max(tf.where(negative, distances, 0.0), axis=1)[:, None]
    fallback = tf.broadcast_to(farthest, tf.shape(nearest_outside))
    return tf.where(tf.reduce_any(outside, axis=2), nearest_outside, fallback)


def semi_hard_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    chosen = semi_hard_negatives(labels, distances)
    usable = tf.logical_and(positive, tf.reduce_any(negative, axis=1)[:, None])
    losses = tf.maximum(distances - chosen + margin, 0.0)
    count = tf.reduce_sum(tf.cast(usable, embeddings.dtype))
    return tf.reduce_sum(tf.where(usable, losses, 0.0)) / tf.maximum(count, 1.0)


def contrastive_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float) -> tf.Tensor:
    distances = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    pulled = tf.where(positive, tf.square(distances), 0.0)
    pushed = tf.where(negative, tf.square(tf.maximum(margin - distances, 0.0)), 0.0)
    pairs = tf.reduce_sum(tf.cast(tf.logical_or(positive, negative), embeddings.dtype))
    return tf.reduce_sum(pulled + pushed) / tf.maximum(pairs, 1.0)


LOSSES = {
    "batch_all": batch_all_triplet_loss,
    "batch_hard": batch_hard_triplet_loss,
    "semi_hard": semi_hard_triplet_loss,
    "contrastive": contrastive_loss,
}
