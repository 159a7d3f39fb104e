"""Clustering groups faces of one person together and keeps different people apart."""

from __future__ import annotations

import numpy as np
import pytest

from services.matcher.clustering import cluster_faces, pairwise_precision_recall


def people(count: int, faces_each: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((count, 128))
    vectors = np.repeat(centres, faces_each, axis=0) + spread * rng.standard_normal((count * faces_each, 128))
    unit = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit, np.repeat(np.arange(count), faces_each)


def test__given_well_separated_people__then_each_becomes_one_cluster():
    vectors, truth = people(6, 5, 0.01)

    labels = cluster_faces(vectors, 0.35)

    assert pairwise_precision_recall(labels, truth) == (1.0, 1.0)
    assert len(set(labels)) == 6


def test__clusters_below_min_size_are_noise_and_labels_go_by_size():
    vectors, _ = people(3, 4, 0.01)
    vectors = np.concatenate([vectors[:8], vectors[8:9]])  # person 2 seen once

    labels = cluster_faces(vectors, 0.35, min_size=2)

    assert labels[-1] == -1 and set(labels[:8]) == {0, 1}


def test__pairwise_metrics_count_pairs():
    precision, recall = pairwise_precision_recall(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]))

    assert precision == pytest.approx(1 / 3) and recall == pytest.approx(1 / 2)
