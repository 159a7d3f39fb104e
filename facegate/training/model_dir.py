"""A trained head shipped as a model directory the embedder loads like any other: one SavedModel
running the frozen backbone and the head, and its own card.

The head was trained on the backbone's flip-averaged unit embeddings, so the SavedModel does the
flip averaging itself (backbone on the crop and on its mirror, summed, normalised, then the head)
and its card says `flip_average: false`: serving computes exactly what training saw.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import tensorflow as tf

from facegate.evaluation.calibration import CalibrationReport
from services.core.model_card import ModelCard


def trained_card(base: ModelCard, model_id: str, calibration: CalibrationReport, default_far: float,
                 provenance: dict[str, str]) -> ModelCard:
    """The trained model's card: the base's crop contract, thresholds from `calibration` (on
    people the head never saw), no 1:K bands and no capture tightening (both were measured for
    the base network: run the benchmarks with this model before relying on them), the base's
    ambiguity gap and duplicate distance scaled by the ratio of the two default thresholds (a
    first-order guess, not measured: the head's distances are on a scale close to the base's),
    and where everything came from."""
    thresholds = {f"{p.far_target:g}": round(p.threshold, 4) for p in calibration.points}
    if f"{default_far:g}" not in thresholds:
        raise ValueError(f"the default FAR {default_far:g} was not calibrated (calibrated: {', '.join(thresholds)})")
    scale = thresholds[f"{default_far:g}"] / base.distance_threshold
    return replace(
        base, model_id=model_id, version="1.0", flip_average=False,
        draft_margin=0.0,  # the mirror pass is inside the model: there is no cheaper first pass to draft with
        distance_threshold=thresholds[f"{default_far:g}"], far_thresholds=thresholds, default_far=default_far,
        ambiguity_gap=round(base.ambiguity_gap * scale, 4),
        duplicate_distance=round(base.duplicate_distance * scale, 4),
        threshold_source=(f"facegate train: calibrated on held-out people ({calibration.genuine_pairs} genuine, "
                          f"{calibration.impostor_pairs} impostor pairs; AUC {calibration.auc:.5f}); ambiguity gap "
                          f"and duplicate distance: the base's x {scale:.3f}, not measured"),
        gallery_bands=(), capture_tightening={},
        source={"base_model": base.model_key, **provenance})


def write_trained_model(base_dir: Path, head: keras.Model, card: ModelCard, target: Path) -> None:
    """Write `target` (saved_model/ and model_card.json): the base model directory's network,
    flip-averaged, then `head`."""
    base_card = ModelCard.from_json((base_dir / "model_card.json").read_text())
    backbone = tf.saved_model.load(str(base_dir / "saved_model"))
    size = base_card.input_size
    flip = base_card.flip_average

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = head

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="crops")])
        def embed(self, crops: tf.Tensor) -> dict[str, tf.Tensor]:
            vectors = self.backbone.embed(crops)["embedding"]
            if flip:
                vectors = tf.math.l2_normalize(vectors + self.backbone.embed(tf.reverse(crops, axis=[2]))["embedding"],
                                               axis=1)
            return {"embedding": tf.math.l2_normalize(self.head(vectors, training=False), axis=1)}

    serving = Serving()
    target.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(serving, str(target / "saved_model"), signatures={"serving_default": serving.embed})
    (target / "model_card.json").write_text(card.to_json())
