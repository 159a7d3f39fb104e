"""Grouping unlabelled faces (e.g. the strangers seen at a door over a day) into likely-same people.

Average-linkage agglomerative clustering on distances between unit embeddings, cut at a
distance: two groups merge while their mean pairwise distance stays under `max_distance`.
Average linkage resists the chaining single linkage suffers from (one blurry face bridging two
people), and needs no number of clusters up front. scikit-learn does the work.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import AgglomerativeClustering

# The distance matrix is n^2 float64: 5k faces ~ 200 MB. (20k was ~3 GB: one call could take a
# 4 GiB matcher, and with it every door, down.)
MAX_FACES = 5_000
# bench/cluster_lfw.py on two 3,000-face LFW samples (seeds 0/1): pairwise precision 99.9%/98.4%,
# recall 97.6%/87.2%. Merging two strangers costs more than splitting one person, so precision first.
DEFAULT_MAX_DISTANCE = 0.35


def cluster_faces(vectors: np.ndarray, max_distance: float, min_size: int = 1) -> np.ndarray:
    """A cluster label per face (0, 1, ... by decreasing size); -1 for faces in clusters smaller than `min_size`."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=int)
    if len(vectors) == 1:
        return np.array([0 if min_size <= 1 else -1])
    raw = AgglomerativeClustering(n_clusters=None, distance_threshold=max_distance, metric="euclidean",
                                  linkage="average").fit_predict(vectors)
    ids, counts = np.unique(raw, return_counts=True)
    by_size = np.argsort(-counts, kind="stable")
    relabel = {ids[i]: new for new, i in enumerate(i for i in by_size if counts[i] >= min_size)}
    return np.array([relabel.get(label, -1) for label in raw])


def pairwise_precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Over all pairs of faces: precision = same-cluster pairs that are the same person,
    recall = same-person pairs that share a cluster (faces labelled -1 share nothing)."""
    def same_pairs(labels: np.ndarray, skip_negative: bool) -> int:
        _, counts = np.unique(labels[labels >= 0] if skip_negative else labels, return_counts=True)
        return int(np.sum(counts * (counts - 1) // 2))

    kept = predicted >= 0
    joint = np.array([f"{p}|{t}" for p, t in zip(predicted[kept], truth[kept], strict=True)])
    both = same_pairs(joint, False)
    clustered = same_pairs(predicted, True)
    actual = same_pairs(truth, False)
    return (both / clustered if clustered else 1.0), (both / actual if actual else 1.0)
