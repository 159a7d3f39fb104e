"""The site adapter: a head fine-tuned on one site's enrolled people, kept only if it measures
better on that site's own held-out templates.

A site's gallery holds embeddings, not photos, and a head works on embeddings, so a site can
be adapted from what it has (plus augmented copies where the enrolment photos are still at
hand). One template of each person with at least three is held out as a probe (the guard's
data: the head never trains on it); the head is trained on the rest and scored against the
pretrained embedding on those probes: each probe against every other template of the site.
It is kept only when it lowers the equal-error rate by `min_gain` AND does not lower the
rank-1 rate: with a few dozen people a head fits them easily, and a site is better off with
the pretrained network than with one that learned its enrolment photos by heart.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from facegate.evaluation.verification import equal_error_rate
from facegate.training.head import HeadTraining, train_head


@dataclass(frozen=True)
class SiteScore:
    """Probes against a site's templates: rank-1 identification and verification EER (a probe's
    genuine score: its distance to its own person's nearest template; impostor scores: to each
    other person's nearest)."""

    rank1: float
    eer: float
    probes: int


@dataclass(frozen=True)
class Adaptation:
    kept: bool
    head: keras.Model | None  # the adapted head when kept
    before: SiteScore  # the pretrained embedding on the held-out probes
    after: SiteScore  # the adapted head on the same probes
    reason: str


def site_score(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
               probe_labels: np.ndarray) -> SiteScore:
    people = np.unique(gallery_labels)
    distances = np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=2)
    nearest = np.stack([distances[:, gallery_labels == p].min(axis=1) for p in people], axis=1)  # probes x people
    own = people[None, :] == probe_labels[:, None]
    rank1 = float(np.mean(people[nearest.argmin(axis=1)] == probe_labels))
    scores = np.concatenate([nearest[own], nearest[~own]])
    same = np.concatenate([np.ones(int(own.sum()), bool), np.zeros(int((~own).sum()), bool)])
    return SiteScore(rank1, equal_error_rate(scores, same), len(probes))


def held_out(labels: np.ndarray, seed: int) -> np.ndarray:
    """A mask of one row per person with at least three rows (seeded): the guard's probes."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for person in np.unique(labels):
        rows = np.flatnonzero(labels == person)
        if len(rows) >= 3:
            mask[rng.choice(rows)] = True
    return mask


def adapt_site(templates: np.ndarray, labels: np.ndarray, settings: HeadTraining, min_gain: float = 0.005,
               augmented: list[np.ndarray] | None = None, seed: int = 0) -> Adaptation:
    """Fine-tune a head on a site's `templates` (N x D unit vectors of people `labels`), plus
    `augmented` copies of them if any (each N x D, row for row: the embedding of an augmented
    copy of the same enrolment photo), and keep it only if it measures better on held-out
    templates (see the module docstring). A held-out template's copies are left out of
    training too."""
    probe = held_out(labels, seed)
    if probe.sum() < 2:
        raise ValueError("a site needs at least 2 people with 3 or more templates to measure an adapter on")
    x, y = templates[~probe], labels[~probe]
    before = site_score(x, y, templates[probe], labels[probe])
    copies = [copy[~probe] for copy in augmented or []]
    train_x, train_y = np.concatenate([x, *copies]), np.tile(y, 1 + len(copies))
    head, _ = train_head(train_x, train_y, settings)
    after = site_score(head.predict(x, verbose=0), y, head.predict(templates[probe], verbose=0), labels[probe])
    if after.eer <= before.eer - min_gain and after.rank1 >= before.rank1:
        return Adaptation(True, head, before, after, f"kept: EER {before.eer:.3f} -> {after.eer:.3f}, rank-1 "
                                                     f"{before.rank1:.3f} -> {after.rank1:.3f}")
    return Adaptation(False, None, before, after, f"not kept: EER {before.eer:.3f} -> {after.eer:.3f}, rank-1 "
                                                  f"{before.rank1:.3f} -> {after.rank1:.3f} (needs EER lower by "
                                                  f"{min_gain} and rank-1 no worse)")
