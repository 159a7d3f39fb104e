"""Capture flags: how a face's pixels say it was captured, and the stricter threshold they call for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.capture import CAPTURE_FLAGS, capture_flags
from services.core.model_card import DEFAULT_MODEL, ModelCard, ModelError, bundled_card

BOX = (40.0, 40.0, 120.0, 120.0)


def face_like(seed: int = 0) -> np.ndarray:
    """A colourful, textured, evenly lit 200 px frame (what a clean photo's face box looks like to the features)."""
    rng = np.random.default_rng(seed)
    base = np.array([190, 140, 110], np.float32)  # skin-like colour: saturated, well lit
    texture = rng.normal(0, 18, (200, 200, 1)).astype(np.float32)
    smooth = np.stack([np.convolve(row, np.ones(5) / 5, mode="same") for row in texture[..., 0]])[..., None]
    return np.clip(base + smooth, 0, 255).astype(np.uint8)


def test__a_clean_colour_face_raises_no_flag():
    assert capture_flags(face_like(), BOX) == ()


def test__a_grey_face_is_flagged_grey():
    grey = np.repeat(face_like().mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert "grey" in capture_flags(grey, BOX)


def test__a_dark_face_is_flagged_dark():
    assert "dark" in capture_flags((face_like() * 0.2).astype(np.uint8), BOX)


def test__a_box_outside_the_frame_raises_nothing_rather_than_failing():
    assert capture_flags(face_like(), (500.0, 500.0, 50.0, 50.0)) == ()


def test__a_flagged_probe_is_held_stricter_against_a_person_enrolled_the_same_way_than_against_a_clean_one():
    card = bundled_card(DEFAULT_MODEL)
    dark = card.capture_tightening["dark"]
    clean = card.threshold_for(None, 20)

    assert card.threshold_for(None, 20, ("dark",), ()) == pytest.approx(clean - dark.clean_template)
    assert card.threshold_for(None, 20, ("dark",), ("dark",)) == pytest.approx(clean - dark.flagged_template)
    assert card.threshold_for(None, 20, ("dark",), None) == pytest.approx(clean - dark.flagged_template)  # not known
    assert dark.clean_template < dark.flagged_template


def test__several_flags_take_the_strictest():
    card = bundled_card(DEFAULT_MODEL)
    strictest = max(card.capture_tightening[f].flagged_template for f in ("dark", "grey"))
    assert card.tightening(("dark", "grey")) == pytest.approx(strictest)
    assert set(card.capture_tightening) <= set(CAPTURE_FLAGS)


def test__an_unknown_flag_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown capture flags \\['foggy'\\]; known: grey"):
        bundled_card(DEFAULT_MODEL).threshold_for(None, 20, ("foggy",))


@pytest.mark.parametrize("tightening, complaint", [
    ({"foggy": {"clean_template": 0.0, "flagged_template": 0.01}}, "names 'foggy'"),
    ({"dark": {"clean_template": -0.01, "flagged_template": 0.01}}, "0 <= clean_template"),
    ({"dark": {"clean_template": 0.02, "flagged_template": 0.01}}, "clean_template <= flagged_template"),
    ({"dark": {"clean_template": 0.0, "flagged_template": 0.5}}, "below every threshold"),
    ({"dark": 0.01}, "bad field")])
def test__a_card_with_bad_capture_tightening_is_refused(tightening, complaint):
    raw = json.loads(bundled_card(DEFAULT_MODEL).to_json())
    raw["capture_tightening"] = tightening
    with pytest.raises(ModelError, match=complaint):
        ModelCard.from_json(json.dumps(raw))


def test__a_card_with_capture_tightening_but_no_calibrated_far_is_checked_against_its_distance_threshold():
    raw = json.loads(bundled_card(DEFAULT_MODEL).to_json())
    raw["far_thresholds"], raw["gallery_bands"] = {}, []
    raw["capture_tightening"] = {"dark": {"clean_template": 0.0, "flagged_template": raw["distance_threshold"]}}
    with pytest.raises(ModelError, match="below every threshold"):
        ModelCard.from_json(json.dumps(raw))

    raw["capture_tightening"] = {"dark": {"clean_template": 0.0, "flagged_template": 0.01}}
    assert ModelCard.from_json(json.dumps(raw)).tightening(("dark",), ("dark",)) == pytest.approx(0.01)


def test__capture_tightening_must_stay_below_the_strictest_gallery_band_too():
    raw = json.loads(bundled_card(DEFAULT_MODEL).to_json())
    strictest = min(t for band in raw["gallery_bands"] for t in band["far_thresholds"].values())
    raw["capture_tightening"] = {"dark": {"clean_template": 0.0, "flagged_template": strictest}}
    with pytest.raises(ModelError, match="below every threshold"):
        ModelCard.from_json(json.dumps(raw))
