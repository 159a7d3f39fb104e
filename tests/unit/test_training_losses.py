"""Metric-learning losses against brute-force NumPy references, and the P x K sampler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from facegate.training.losses import (  # noqa: E402 (after the TensorFlow import check)
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    contrastive_loss,
    semi_hard_negatives,
    semi_hard_triplet_loss,
)
from facegate.training.sampler import PKSampler  # noqa: E402

MARGIN = 0.3


def batch(seed: int, people: int = 4, images: int = 3, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(people), images)
    centres = rng.normal(size=(people, dim))
    x = centres[labels] + 0.8 * rng.normal(size=(len(labels), dim))
    return labels, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def d(x: np.ndarray, i: int, j: int) -> float:
    return float(np.linalg.norm(x[i] - x[j]))


def triplets(labels: np.ndarray):
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[a] != labels[q]:
            yield a, p, q


def reference_batch_all(labels, x):
    losses = [max(d(x, a, p) - d(x, a, q) + MARGIN, 0.0) for a, p, q in triplets(labels)]
    positive = [v for v in losses if v > 1e-16]
    return sum(positive) / max(len(positive), 1)


def reference_batch_hard(labels, x):
    losses = []
    for a in range(len(labels)):
        pos = [d(x, a, p) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d(x, a, q) for q in range(len(labels)) if labels[q] != labels[a]]
        losses.append(max(max(pos) - min(neg) + MARGIN, 0.0))
    return sum(losses) / len(losses)


def reference_semi_hard(labels, x):
    losses = []
    for a, p in itertools.product(range(len(labels)), repeat=2):
        if a == p or labels[a] != labels[p]:
            continue
        neg = [d(x, a, q) for q in range(len(labels)) if labels[q] != labels[a]]
        outside = [v for v in neg if v > d(x, a, p)]
        chosen = min(outside) if outside else max(neg)
        losses.append(max(d(x, a, p) - chosen + MARGIN, 0.0))
    return sum(losses) / len(losses)


def reference_contrastive(labels, x):
    losses = []
    for i, j in itertools.product(range(len(labels)), repeat=2):
        if i == j:
            continue
        losses.append(d(x, i, j) ** 2 if labels[i] == labels[j] else max(MARGIN - d(x, i, j), 0.0) ** 2)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("loss, reference", [
    (batch_all_triplet_loss, reference_batch_all), (batch_hard_triplet_loss, reference_batch_hard),
    (semi_hard_triplet_loss, reference_semi_hard), (contrastive_loss, reference_contrastive)])
def test__each_loss_equals_its_brute_force_reference(seed, loss, reference):
    labels, x = batch(seed)
    assert float(loss(tf.constant(labels), tf.constant(x), MARGIN)) == pytest.approx(reference(labels, x), abs=1e-5)


def test__semi_hard_mining_picks_the_nearest_negative_beyond_the_positive():
    # one line: anchor 0 at 0, its positive at 0.5; negatives at 0.3 (harder), 0.6 and 0.9
    x = np.array([[0.0], [0.5], [0.3], [0.6], [0.9]], np.float32)
    labels = np.array([0, 0, 1, 2, 3])
    distances = tf.abs(tf.constant(x) - tf.transpose(tf.constant(x)))
    assert float(semi_hard_negatives(tf.constant(labels), distances)[0, 1]) == pytest.approx(0.6)


def test__without_a_semi_hard_negative_the_farthest_negative_is_used():
    x = np.array([[0.0], [0.9], [0.3], [0.6]], np.float32)  # every negative nearer than the positive
    labels = np.array([0, 0, 1, 2])
    distances = tf.abs(tf.constant(x) - tf.transpose(tf.constant(x)))
    assert float(semi_hard_negatives(tf.constant(labels), distances)[0, 1]) == pytest.approx(0.6)


def test__losses_have_finite_gradients_even_for_identical_embeddings():
    x = tf.Variable(np.repeat(batch(0)[1][:1], 6, axis=0))
    labels = tf.constant(np.repeat(np.arange(3), 2))
    for loss in (batch_all_triplet_loss, batch_hard_triplet_loss, semi_hard_triplet_loss, contrastive_loss):
        with tf.GradientTape() as tape:
            value = loss(labels, x, MARGIN)
        assert np.all(np.isfinite(tape.gradient(value, x).numpy())), loss.__name__


def test__the_sampler_yields_p_people_by_k_images_and_repeats_under_a_seed():
    labels = np.array([f"p{i}" for i in range(10) for _ in range(i % 4 + 1)])  # some people with one image
    batches = list(PKSampler(labels, people=3, images=4, seed=7))
    again = list(PKSampler(labels, people=3, images=4, seed=7))

    assert all(len(b) == 12 for b in batches) and len(batches) == len(PKSampler(labels, 3, 4))
    for b in batches:
        people, counts = np.unique(labels[b], return_counts=True)
        assert len(people) == 3 and set(counts) == {4}
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))


def test__the_sampler_refuses_batches_it_cannot_fill():
    with pytest.raises(ValueError, match="identities have >= 2 images"):
        PKSampler(np.array(["a", "a", "b"]), people=2, images=2)
    with pytest.raises(ValueError, match="P >= 2 people and K >= 2"):
        PKSampler(np.array(["a", "a", "b", "b"]), people=2, images=1)
