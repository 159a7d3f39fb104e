"""Training data from images in LFW layout: aligned crops, and their backbone embeddings clean or
augmented (cached: embedding thousands of crops takes minutes on two cores)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def stacked_crops(pipeline: Any, root: Path, names: list[str]) -> np.ndarray:
    """One aligned crop per image, in `names` order (facegate.evaluation.lfw.aligned_crops)."""
    from facegate.evaluation.lfw import aligned_crops

    crops = {name: crop for chunk, batch, _ in aligned_crops(pipeline, root, names)
             for name, crop in zip(chunk, batch, strict=True)}
    return np.stack([crops[n] for n in names])


def embeddings_of(pipeline: Any, crops: np.ndarray, seed: int, condition: str, cache: Path) -> np.ndarray:
    """The backbone's embeddings of `crops` as they are ("clean"), augmented ("augmented": every
    operation of `augment.Augmentation`) or under one condition ("grey", "dark"), seeded; cached
    in `cache` by the crops, the seed and the condition."""
    from facegate.training.augment import Augmentation, augment

    # every crop in the key (the first few alone would let two crop sets of one size collide)
    key = hashlib.sha256(crops.tobytes() + f"{len(crops)}-{seed}-{condition}".encode()).hexdigest()[:16]
    path = cache / f"head-bench-{pipeline.embedder.card.model_key}-{condition}-{key}.npy"
    if path.is_file():
        return np.load(path)
    if condition == "clean":
        images = crops
    else:
        only = Augmentation(brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), grey_probability=0.0,
                            flip_probability=0.0, rotation_degrees=0.0, shift=0.0, blur_probability=0.0,
                            noise_probability=0.0, jpeg_probability=0.0, low_res_probability=0.0)
        settings = {"augmented": Augmentation(), "grey": replace(only, grey_probability=1.0),
                    "dark": replace(only, gamma=(2.0, 2.5), brightness=0.0, noise_probability=1.0)}[condition]
        images = np.concatenate([augment(crops[i:i + 256], seed + i, settings) for i in range(0, len(crops), 256)])
    vectors = np.concatenate([pipeline.embedder.embed(images[i:i + 64]) for i in range(0, len(images), 64)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
