"""1:K thresholds: how the card picks a threshold for a gallery's size, and how the bands are
calibrated (facegate/evaluation/openset.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegate.evaluation.openset import GalleryTrials, accept_scores, card_bands, gallery_trials, identity_distances
from services.core.model_card import DEFAULT_MODEL, GalleryBand, ModelCard, ModelError, bundled_card


def card_with(bands: list[dict]) -> ModelCard:
    raw = json.loads(bundled_card(DEFAULT_MODEL).to_json())
    raw["far_thresholds"] = {"0.001": 0.37, "0.0001": 0.33}
    raw["distance_threshold"], raw["default_far"] = 0.37, 0.001
    raw["gallery_bands"] = bands
    return ModelCard.from_json(json.dumps(raw))


BANDS = [{"max_identities": 10, "far_thresholds": {"0.001": 0.36, "0.0001": 0.32}},
         {"max_identities": 100, "far_thresholds": {"0.001": 0.34, "0.0001": 0.30}}]


def test__given_a_gallery_size__then_the_smallest_band_holding_it_sets_the_threshold():
    card = card_with(BANDS)
    assert card.threshold_for(1e-3, identities=1) == 0.36
    assert card.threshold_for(1e-3, identities=10) == 0.36
    assert card.threshold_for(1e-3, identities=11) == 0.34
    assert card.threshold_for(1e-4, identities=100) == 0.30


def test__given_a_gallery_larger_than_every_band__then_the_largest_band_applies():
    assert card_with(BANDS).threshold_for(1e-3, identities=5000) == 0.34


def test__given_no_target__then_the_default_far_is_banded_too():
    card = card_with(BANDS)
    assert card.threshold_for(None, identities=50) == 0.34
    assert card.threshold_for(None) == 0.37  # no size known: the pair threshold, as before


def test__given_a_band_looser_than_the_pair_threshold__then_the_pair_threshold_still_applies():
    card = card_with([{"max_identities": 10, "far_thresholds": {"0.001": 0.40, "0.0001": 0.35}}])
    assert card.threshold_for(1e-3, identities=3) == 0.37


def test__the_shipped_card_tightens_as_the_gallery_grows():
    card = bundled_card(DEFAULT_MODEL)
    assert card.gallery_bands, "the shipped card has 1:K bands"
    thresholds = [card.threshold_for(1e-3, identities=band.max_identities) for band in card.gallery_bands]
    assert thresholds == sorted(thresholds, reverse=True)
    assert thresholds[-1] < card.threshold_for(1e-3)


@pytest.mark.parametrize("bands, complaint", [
    ([BANDS[1], BANDS[0]], "growing"),
    ([{"max_identities": 10, "far_thresholds": {"0.001": 0.36}}], "both must match"),
    ([{"max_identities": 10, "far_thresholds": {"0.001": 0.30, "0.0001": 0.29}},
      {"max_identities": 100, "far_thresholds": {"0.001": 0.34, "0.0001": 0.28}}], "looser"),
    ([{"max_identities": 10}], "bad field"),
])
def test__given_inconsistent_bands__then_the_card_is_refused_with_the_reason(bands, complaint):
    with pytest.raises(ModelError, match=complaint):
        card_with(bands)


def test__bands_survive_a_round_trip_through_json():
    card = card_with(BANDS)
    again = ModelCard.from_json(card.to_json())
    assert again.gallery_bands == (GalleryBand(10, {"0.001": 0.36, "0.0001": 0.32}),
                                   GalleryBand(100, {"0.001": 0.34, "0.0001": 0.30}))


def test__accept_scores_follow_the_matchers_rule():
    distances = np.array([[0.30, 0.60],   # clear nearest: accepted at 0.30
                          [0.30, 0.35],   # second within the gap: ambiguous, never accepted
                          [0.50, 0.20]])  # nearest is the second identity
    score, nearest = accept_scores(distances, gap=0.08)
    assert score[0] == pytest.approx(0.30) and nearest[0] == 0
    assert np.isinf(score[1])
    assert score[2] == pytest.approx(0.20) and nearest[2] == 1


def test__identity_distances_take_each_identitys_nearest_template():
    similarity = np.array([[0.9, 0.1, 0.5]])
    best = identity_distances(similarity, np.array([1, 0, 1]), 2)
    assert best[0] == pytest.approx([np.sqrt(2 - 2 * 0.1), np.sqrt(2 - 2 * 0.9)])


def test__strangers_are_accepted_more_often_as_the_gallery_grows():
    """Random unit vectors in few dimensions: every pair is as close as chance makes it, so the
    share of strangers within a fixed distance of *someone* grows with the gallery."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat(np.arange(300), 2)
    similarity = vectors @ vectors.T
    small = gallery_trials(similarity, labels, 5, 20, 0.0, np.random.default_rng(1))
    large = gallery_trials(similarity, labels, 100, 20, 0.0, np.random.default_rng(1))
    assert large.far(0.8) > small.far(0.8)
    assert large.threshold_at(0.01) < small.threshold_at(0.01)
    assert small.far(small.threshold_at(0.01)) <= 0.01


def test__a_gallery_must_leave_some_strangers():
    labels = np.arange(10)
    with pytest.raises(ValueError, match="strangers"):
        gallery_trials(np.eye(10), labels, 10, 1, 0.0, np.random.default_rng(0))


def trials_of(size: int, impostor_scores: list[float]) -> GalleryTrials:
    return GalleryTrials(size, 1, np.asarray(impostor_scores, float), np.zeros(0), np.zeros(0, bool))


def test__card_bands_never_loosen_past_the_pair_threshold_or_a_smaller_gallery():
    scores = np.linspace(0.2, 1.0, 1000)  # FAR 1e-2 at ~0.208
    many_ambiguous = [np.inf] * 995 + [0.1] * 5  # the rule alone rejects more than 1e-2: unbounded
    bands = card_bands([trials_of(10, list(scores)), trials_of(100, many_ambiguous)], (1e-2,), {"0.01": 0.42})

    assert bands[0]["far_thresholds"]["0.01"] == pytest.approx(0.208, abs=1e-3)
    assert bands[1]["far_thresholds"]["0.01"] == bands[0]["far_thresholds"]["0.01"]


def test__card_bands_refuse_a_far_too_small_for_the_strangers_measured():
    with pytest.raises(ValueError, match="cannot measure FAR 0.0001"):
        card_bands([trials_of(10, [0.5] * 5000)], (1e-4,), {"0.0001": 0.33})
