"""Open-set (1:K) calibration: the distance threshold that keeps a door's false-accept rate as
the gallery grows.

A pair threshold promises a false-accept rate for one comparison (1:1). A door compares each
face with every enrolled identity and accepts the nearest, so a stranger gets K chances: with
the pair threshold, the share of strangers accepted as *someone* grows with the gallery size K.
Here the threshold is chosen per K so that the share of stranger probes the matcher would
accept, under its own rule (nearest identity within the threshold and no second identity within
the ambiguity gap of it), meets the target.

Protocol (people-disjoint, seeded): galleries of K people are drawn repeatedly from one set of
people; people with several images are enrolled with up to `templates` of them and their other
images are genuine probes; people with one image are enrolled with it; every image (at most
`impostor_images` per person, so a few much-photographed people do not dominate) of the people
*not* drawn is a stranger probe. The thresholds are chosen on one half of the people and
measured on the other (bench/gallery_size_lfw.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facegate.evaluation.calibration import threshold_at_far


@dataclass(frozen=True)
class GalleryTrials:
    """Pooled outcomes of repeated galleries of one size: per probe, the score the matcher's
    rule accepts below (the nearest identity's distance, or inf when ambiguous) and, for
    genuine probes, whether the nearest identity is the right person."""

    size: int
    galleries: int
    impostor_scores: np.ndarray
    genuine_scores: np.ndarray
    genuine_correct: np.ndarray

    def far(self, threshold: float) -> float:
        """Share of stranger probes accepted as someone."""
        return float(np.mean(self.impostor_scores <= threshold))

    def dir(self, threshold: float) -> float:
        """Detection and identification rate: share of genuine probes accepted as the right person."""
        return float(np.mean(self.genuine_correct & (self.genuine_scores <= threshold)))

    def threshold_at(self, far: float) -> float:
        return threshold_at_far(self.impostor_scores, far)


def accept_scores(distances: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """Per probe (row) of a probe x identity distance matrix: the score the matcher accepts at
    `score <= threshold` and the index of the nearest identity. The matcher accepts the nearest
    identity when it is within the threshold and the second-nearest is at least `gap` farther;
    an ambiguous probe is never accepted, whatever the threshold, so its score is inf."""
    if distances.shape[1] == 1:
        return distances[:, 0].copy(), np.zeros(len(distances), int)
    two = np.argpartition(distances, 1, axis=1)[:, :2]
    rows = np.arange(len(distances))
    first, second = distances[rows, two[:, 0]], distances[rows, two[:, 1]]
    swap = second < first
    nearest = np.where(swap, two[:, 1], two[:, 0])
    d1, d2 = np.minimum(first, second), np.maximum(first, second)
    return np.where(d2 - d1 < gap, np.inf, d1), nearest


def gallery_trials(similarity: np.ndarray, labels: np.ndarray, size: int, galleries: int, gap: float,
                   rng: np.random.Generator, templates: int = 3, impostor_images: int = 5,
                   min_strangers: int = 0) -> GalleryTrials:
    """Draw `galleries` galleries of `size` people among `labels` (one per row and column of the
    unit embeddings' `similarity` matrix), or more until `min_strangers` stranger probes are
    pooled, and pool what the matcher's rule does with every probe."""
    people, owner = np.unique(labels, return_inverse=True)
    if not 1 <= size < len(people):
        raise ValueError(f"gallery size {size}: need 1..{len(people) - 1} (some people must stay strangers)")
    images = [np.flatnonzero(owner == p) for p in range(len(people))]
    impostor_scores: list[np.ndarray] = []
    genuine_scores: list[np.ndarray] = []
    genuine_correct: list[np.ndarray] = []
    drawn = 0
    while drawn < galleries or sum(map(len, impostor_scores)) < min_strangers:
        drawn += 1
        enrolled = rng.choice(len(people), size, replace=False)
        gallery, gallery_owner, genuine, genuine_owner = [], [], [], []
        for slot, person in enumerate(enrolled):
            idx = rng.permutation(images[person])
            kept = max(1, min(templates, len(idx) - 1))
            gallery += list(idx[:kept])
            gallery_owner += [slot] * kept
            genuine += list(idx[kept:])
            genuine_owner += [slot] * (len(idx) - kept)
        strangers = np.setdiff1d(np.arange(len(people)), enrolled)
        impostor = np.concatenate([rng.permutation(images[p])[:impostor_images] for p in strangers])
        for probes, scores in ((impostor, impostor_scores), (np.asarray(genuine, int), genuine_scores)):
            if not len(probes):
                continue
            best = identity_distances(similarity[np.ix_(probes, gallery)], np.asarray(gallery_owner), size)
            score, nearest = accept_scores(best, gap)
            scores.append(score)
            if scores is genuine_scores:
                genuine_correct.append(nearest == np.asarray(genuine_owner))
    empty = np.zeros(0)
    return GalleryTrials(size, drawn, np.concatenate(impostor_scores),
                         np.concatenate(genuine_scores) if genuine_scores else empty,
                         np.concatenate(genuine_correct) if genuine_correct else empty.astype(bool))


def identity_distances(similarity: np.ndarray, owner: np.ndarray, identities: int) -> np.ndarray:
    """Probe x identity distance to each identity's nearest template, from probe x template
    cosine similarities and each template's identity (0..identities-1)."""
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(identities))
    nearest = np.maximum.reduceat(similarity[:, order], starts, axis=1)
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * nearest))


def card_bands(trials: list[GalleryTrials], fars: tuple[float, ...], pair: dict[str, float],
               samples_per_far: int = 10) -> list[dict]:
    """The model card's `gallery_bands` from trials of growing gallery sizes: per size and target
    FAR, the threshold meeting it, but never looser than the pair threshold `pair[far]` nor than
    the band below (a larger gallery never gets a looser threshold: where the ambiguity rule
    alone rejects more strangers than the target allows, the measured threshold is unbounded).
    A FAR needs `samples_per_far / far` stranger probes to be measured; where a size has fewer,
    it is refused (draw more galleries) rather than guessed."""
    bands: list[dict] = []
    for trial in sorted(trials, key=lambda t: t.size):
        chosen = {}
        for far in fars:
            key = f"{far:g}"
            if len(trial.impostor_scores) * far < samples_per_far:
                raise ValueError(f"K={trial.size}: {len(trial.impostor_scores):,} stranger probes cannot measure FAR "
                                 f"{key} (need {samples_per_far / far:,.0f}); draw more galleries")
            limits = [pair[key], *([bands[-1]["far_thresholds"][key]] if bands else [])]
            chosen[key] = float(np.floor(min(trial.threshold_at(far), *limits) * 1e4) / 1e4)
        bands.append({"max_identities": trial.size, "far_thresholds": chosen})
    return bands
