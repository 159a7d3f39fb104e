"""The TFLite backend: a model directory holding `model.tflite` (instead of `saved_model/`) and
its card is run by LiteRT's interpreter (`ai-edge-litert`, the one that works with NumPy 2;
`tflite-runtime` does not and `tf.lite.Interpreter` is deprecated) with XNNPACK, its default
CPU delegate.

`convert` writes such a directory from a SavedModel model directory at one precision:

- ``fp32``: the same network, frozen. The SavedModel keeps its weights as variables inside a
  `tf.Module`; converted as it is, the flatbuffer keeps READ_VARIABLE ops and returns NaN, so
  the `embed` function is frozen first (`convert_variables_to_constants_v2`). Its embeddings
  equal the SavedModel's to ~1e-6, so it keeps the model's key: galleries stay valid.
- ``fp16``: weights stored as float16 (half the file), computed in float32.
- ``int8``: post-training quantisation of weights and activations, calibrated on a
  representative set of aligned crops (float input and output). Its embeddings move by a few
  hundredths, so fp16 and int8 get their own model version (`1.0+int8`): a gallery enrolled
  with one is not searched with another (the matcher refuses mixed model keys).

Each variant's card is the source card with the precision in its provenance; fp16 and int8
keep the source's thresholds until `facegate calibrate` is run with them (the benchmark,
`bench/tflite_lfw.py`, says how far off that is).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from services.core.batching import power_of_two_runs
from services.core.model_card import ModelCard, ModelError
from services.embedder.models import TFLITE_FILE as FILE
from services.embedder.models import FirstPasses, flip_averaged

PRECISIONS = ("fp32", "fp16", "int8")
CHUNK = 8  # the largest run of network inputs (4 crops and their mirrors)


class TFLiteEmbedder:
    """Runs a model directory's `model.tflite` in LiteRT with XNNPACK.

    An interpreter has fixed tensor shapes and re-plans (re-packs its weights) when they change,
    so there is one per power of two up to `CHUNK` network inputs (the card's flip averaging
    makes two per crop), and a batch runs as runs of those sizes (`power_of_two_runs`: 5 inputs
    as 4 + 1), with no padding rows, which cost as much as real ones. Per face, batches past a
    few crops gain nothing on this CPU (`make bench-tflite`). A network whose batch size is fixed
    in the file (MobileFaceNet's as published is 2, and XNNPACK cannot re-plan it;
    services/embedder/tflite_graph.py frees it) runs in chunks of that size, padded. A float
    network gets the crops scaled as its card's `input_scaling` says.
    `threads`: XNNPACK's threads per interpreter; one by default (the service shares the machine
    with the others; two made one face ~2x faster alone but cost more CPU per face). Calls are
    serialised: an interpreter is not thread-safe, and the embedder batches requests anyway."""

    def __init__(self, model_dir: Path, card: ModelCard | None = None, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # deferred like TensorFlow

        card_path = model_dir / "model_card.json"
        if not card_path.is_file() or not (model_dir / FILE).is_file():
            raise ModelError(f"{model_dir} is not a TFLite model directory (needs {FILE} and model_card.json)")
        self.card = card or ModelCard.from_json(card_path.read_text())
        started = time.perf_counter()
        self._model = (model_dir / FILE).read_bytes()
        self._new = lambda: Interpreter(model_content=self._model, num_threads=threads)
        probe = self._new()
        given = probe.get_input_details()[0]
        self._fixed_batch = int(given["shape_signature"][0]) if given["shape_signature"][0] > 0 else None
        self._float = given["dtype"] == np.float32
        size = self.card.input_size
        if tuple(given["shape"][1:]) != (size, size, 3):
            raise ModelError(f"{model_dir / FILE} takes {tuple(given['shape'])}; its card says {size} x {size} x 3 "
                             "crops")
        if self._float != (self.card.input_scaling is not None):
            raise ModelError(f"{model_dir / FILE} takes {np.dtype(given['dtype']).name} input but its card "
                             f"{'has no' if self._float else 'has an'} input_scaling: a float network's card says "
                             "how pixels are scaled, a uint8 one's does not")
        self._interpreters: dict[int, tuple[Any, int, int]] = {}
        self._lock = threading.Lock()
        self._first_passes = FirstPasses()
        # a broken file fails here, at load, not on the first face; planned for the runs one face
        # uses (a draft or a drafted crop's mirror: 1; a flip-averaged face: 2)
        first = self._fixed_batch or 1
        self._interpreters[first] = self._planned(probe, first)
        if not self._fixed_batch and self.card.flip_average:
            self._interpreter(2)
        self.load_seconds = time.perf_counter() - started

    def _interpreter(self, batch: int) -> tuple[Any, int, int]:
        if batch not in self._interpreters:
            self._interpreters[batch] = self._planned(self._new(), batch)
        return self._interpreters[batch]

    def _planned(self, interpreter: Any, batch: int) -> tuple[Any, int, int]:
        """The interpreter with its tensors allocated for `batch` network inputs, its input and
        output indices."""
        index = interpreter.get_input_details()[0]["index"]
        if batch != self._fixed_batch:
            interpreter.resize_tensor_input(index, [batch, self.card.input_size, self.card.input_size, 3])
        interpreter.allocate_tensors()
        return interpreter, index, interpreter.get_output_details()[0]["index"]

    def _input(self, chunk: np.ndarray) -> np.ndarray:
        if self.card.input_scaling is None:
            return chunk
        mean, divisor = self.card.input_scaling
        return (chunk.astype(np.float32) - np.float32(mean)) / np.float32(divisor)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = []
        if self._fixed_batch:  # chunks of the file's batch size, the last one padded
            runs = [self._fixed_batch] * -(-len(batch) // self._fixed_batch)
        else:
            runs = power_of_two_runs(len(batch), CHUNK)
        with self._lock:
            start = 0
            for size in runs:
                chunk = batch[start:start + size]
                start += size
                rows = len(chunk)
                interpreter, index, output = self._interpreter(size)
                if rows < size:  # else the chunk goes in as it is, no copy
                    chunk = np.concatenate([chunk, np.zeros((size - rows, *chunk.shape[1:]), np.uint8)])
                interpreter.set_tensor(index, self._input(chunk))
                interpreter.invoke()
                out.append(interpreter.get_tensor(output)[:rows].copy())
        return np.concatenate(out)

    def embed(self, crops: np.ndarray, draft: bool = False) -> np.ndarray:
        return flip_averaged(self.card, crops, self._run, draft, self._first_passes)


def convert(source: Path, target: Path, precision: str, representative: np.ndarray | None = None,
            card: ModelCard | None = None) -> ModelCard:
    """Write a TFLite model directory at `target` from the SavedModel model directory `source`
    (`precision`: one of PRECISIONS; int8 needs `representative` aligned crops, N x S x S x 3
    uint8, a few hundred of them). `card`: the source's card if not the one in `source` (a
    known model's shipped card, which may be newer than the prepared directory's). Returns the
    new card."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; one of {', '.join(PRECISIONS)}")
    if precision == "int8" and (representative is None or len(representative) == 0):
        raise ValueError("int8 needs representative aligned crops to calibrate its activations")
    card = card or ModelCard.from_json((source / "model_card.json").read_text())
    size = card.input_size
    module = tf.saved_model.load(str(source / "saved_model"))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="crops")])
    def embedding(crops: tf.Tensor) -> tf.Tensor:
        return module.embed(crops)["embedding"]  # the one output the backend reads

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(embedding.get_concrete_function())])
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        crops = np.asarray(representative, np.uint8)

        def samples() -> Iterator[list[np.ndarray]]:
            for i in range(len(crops)):
                yield [crops[i:i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
    flatbuffer = converter.convert()
    version = card.version if precision == "fp32" else f"{card.version}+{precision}"
    converted = replace(card, version=version, source={
        **card.source, "backend": "tflite", "precision": precision,
        "converted_from": f"{card.model_key} SavedModel (variables frozen)",
        **({"representative_crops": str(len(representative))} if precision == "int8" and representative is not None
           else {})})
    target.mkdir(parents=True, exist_ok=True)
    (target / FILE).write_bytes(flatbuffer)
    (target / "model_card.json").write_text(converted.to_json())
    return converted
