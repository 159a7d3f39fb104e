"""The site adapter keeps a fine-tuned head only when it measures better on the site's held-out
templates."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from facegate.training.adapter import adapt_site, held_out, site_score  # noqa: E402 (after the import check)
from facegate.training.head import HeadTraining  # noqa: E402

SETTINGS = HeadTraining(people=8, images=3, epochs=30, learning_rate=1e-2, loss="contrastive", margin=0.5)


def site(nuisance: float, seed: int = 0, people: int = 16, images: int = 5, dim: int = 16):
    """People whose templates differ by identity in a few directions and, for a site's camera, by
    a strong nuisance in another (light, angle) that a head can learn to ignore."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, dim)) * np.r_[np.ones(dim // 2), np.zeros(dim - dim // 2)]
    x = np.repeat(centres, images, axis=0) + 0.3 * rng.standard_normal((people * images, dim))
    x[:, -1] += nuisance * rng.standard_normal(people * images)
    labels = np.repeat(np.arange(people), images).astype(str)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test__one_held_out_template_per_person_with_three_or_more():
    labels = np.array(["a", "a", "a", "b", "b", "c", "c", "c", "c"])

    mask = held_out(labels, seed=1)

    assert sorted(labels[mask]) == ["a", "c"] and np.array_equal(mask, held_out(labels, seed=1))


def test__a_site_whose_camera_adds_a_nuisance_keeps_the_head_that_learned_to_ignore_it():
    x, labels = site(nuisance=3.0)

    adaptation = adapt_site(x, labels, SETTINGS)

    assert adaptation.kept and adaptation.head is not None, adaptation.reason
    assert adaptation.after.eer < adaptation.before.eer and adaptation.after.rank1 >= adaptation.before.rank1


def test__a_head_that_measures_no_better_is_not_kept():
    x, labels = site(nuisance=0.0, seed=2)

    adaptation = adapt_site(x, labels, SETTINGS, min_gain=1.0)  # no head can lower the EER by 1

    assert not adaptation.kept and adaptation.head is None and "not kept" in adaptation.reason


def test__a_site_too_small_to_measure_is_refused():
    x, labels = site(nuisance=0.0, people=3, images=2)
    with pytest.raises(ValueError, match="at least 2 people with 3 or more templates"):
        adapt_site(x, labels, SETTINGS)


def test__the_score_counts_a_probe_nearest_its_own_person_as_rank_one():
    gallery = np.eye(3, dtype=np.float32)
    score = site_score(gallery, np.array(["a", "b", "c"]), gallery[[0, 1]], np.array(["a", "c"]))
    assert score.rank1 == 0.5 and score.probes == 2
