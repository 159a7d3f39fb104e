"""A head trained on the frozen embedding ships as a model directory with its own card, which the
embedder loads like any model and which computes exactly what the head was trained on."""

from __future__ import annotations

import json

import numpy as np

from facegate.evaluation.calibration import calibrate
from facegate.training.head import HeadTraining, build_head
from facegate.training.model_dir import trained_card, write_trained_model
from services.core.model_card import bundled_card
from services.embedder.models import SavedModelEmbedder, load_embedder, prepare_model
from tests.conftest import shared_path


def test__a_trained_model_directory_loads_in_the_embedder_and_serves_the_head_on_the_flip_averaged_backbone(
    tmp_path, embedder, demo_crops
):
    head = build_head(128, HeadTraining(head="linear"))
    rotation, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((128, 128)))
    head.get_layer("projection").set_weights([rotation.astype(np.float32)])  # as if trained: not the identity
    rng = np.random.default_rng(6)
    report = calibrate(rng.uniform(0.2, 0.5, 400), rng.uniform(0.4, 1.2, 4000), (1e-2, 1e-3))
    card = trained_card(bundled_card("dlib-resnet-v1"), "dlib-resnet-v1-head", report, 1e-3,
                        {"loss": "semi_hard", "trained_on": "a test"})

    write_trained_model(prepare_model(), head, card, tmp_path / "trained")
    served = load_embedder(str(tmp_path / "trained"))

    expected = head.predict(embedder.embed(demo_crops), verbose=0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert isinstance(served, SavedModelEmbedder) and served.card == card
    assert served.card.model_key == "dlib-resnet-v1-head@1.0" and not served.card.flip_average
    assert served.card.source == {"base_model": "dlib-resnet-v1@1.0", "loss": "semi_hard", "trained_on": "a test"}
    assert served.card.distance_threshold == served.card.far_thresholds["0.001"]
    assert np.abs(served.embed(demo_crops) - expected).max() < 1e-5


def test__facegate_train_writes_a_model_directory_with_calibrated_thresholds_and_checkpoints(tmp_path):
    from tests.system.test_cli import facegate

    data = shared_path("lfw-deepfunneled")
    pairs = shared_path("lfw-pairs", "pairsDevTrain.txt")

    result = facegate("train", "--data", str(data), "--pairs", str(pairs), "--out", str(tmp_path / "head"),
                      "--limit-people", "120", "--epochs", "2", "--copies", "1", "--people", "16", "--seed", "3")

    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((tmp_path / "head" / "model_card.json").read_text())
    assert card["model_id"] == "dlib-resnet-v1-semi_hard-linear" and card["flip_average"] is False
    assert set(card["far_thresholds"]) == {"0.01", "0.001"} and "held-out people" in card["threshold_source"]
    assert card["source"]["loss"] == "semi_hard" and "pairsDevTrain.txt" in card["source"]["trained_on"]
    assert sorted(p.name for p in (tmp_path / "head.checkpoints").glob("ckpt-*.index")) == ["ckpt-1.index",
                                                                                          "ckpt-2.index"]
    assert "epoch 2/2" in result.stderr and "held-out people" in result.stdout
    assert load_embedder(str(tmp_path / "head")).card.model_key == "dlib-resnet-v1-semi_hard-linear@1.0"
