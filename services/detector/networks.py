"""The cascade's three networks (MTCNN's P-, R- and O-Net, with the weights the `mtcnn` package
ships), run by LiteRT with XNNPACK (the default) or by TensorFlow.

They are tiny (PNet 7k parameters): in TensorFlow each call is mostly per-op overhead. On this
2-core machine (`make bench-detector-profile`, 640x480 frames, smallest face 60 px, 2026-12-03)
LiteRT runs PNet over the whole pyramid in 2.2 ms per frame instead of 28.1, RNet in 3.6
instead of 13.1, ONet in 4.7 instead of 14.5, with the same weights in float32 (the faces found
agree to a fraction of a pixel: tests/system/test_detector_networks.py).

The LiteRT flatbuffers are converted from the Keras networks once per `mtcnn` and TensorFlow
version (variables frozen first: converted as they are, READ_VARIABLE ops make them ~100x
slower) and cached in `$FACEGATE_HOME/mtcnn-litert/`. An interpreter has fixed tensor shapes
and re-plans when they change, so each thread keeps one per input shape: PNet one per pyramid
level (per frame size), R/ONet one per power of two up to 64: a batch runs as runs of those
sizes (45 crops: 32 + 8 + 4 + 1), with no padding rows, which cost ONet as much as real ones.
Interpreters are not thread-safe; the detector runs concurrent calls on worker threads, so each
thread has its own.

Cost of the whole detector per 640x480 frame (decode to crops), TensorFlow -> LiteRT, same
run: 85.7 -> 33.1 ms at one frame a call; the faces are the same (boxes within 0.001 px).
Resizing from exact halvings (mtcnn_cascade._pyramid_levels, _shrunk) then took it to ~26.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.core import assets
from services.core.batching import power_of_two_runs

log = logging.getLogger(__name__)

RUNTIMES = ("litert", "tensorflow")
CROP_SIDES = {"rnet": 24, "onet": 48}
CHUNK = 64  # the largest R/ONet batch run at once
KEPT_INTERPRETERS = 128  # per thread: a few frame sizes' and the gateway's region sizes' pyramids, R/ONet's runs
# each output of a network is known by its last dimension (TFLite may order them otherwise)
OUTPUTS = {"pnet": (4, 2), "rnet": (4, 2), "onet": (4, 10, 2)}


class Networks(Protocol):
    """P/R/O-Net on uint8 RGB inputs; outputs as NumPy arrays, in Keras's order."""

    def pnet(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x H x W x 3 -> (box offsets N x h x w x 4, face probabilities N x h x w x 2)."""
        ...

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 24 x 24 x 3 -> (offsets N x 4, probabilities N x 2)."""
        ...

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """N x 48 x 48 x 3 -> (offsets N x 4, landmarks N x 10, probabilities N x 2)."""
        ...


def _keras_networks() -> dict[str, Any]:
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    nets: dict[str, Any] = {}
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        net = cls()
        net.build()
        net.set_weights(load_weights(f"{name}.lz4"))
        nets[name] = net
    return nets


def _signature(name: str) -> list[int | None]:
    side = CROP_SIDES.get(name)
    return [None, side, side, 3] if side else [1, None, None, 3]


def _functions(nets: dict[str, Any]) -> dict[str, Any]:
    """Each network as a `tf.function` on uint8 input (normalised inside, as MTCNN was trained)."""
    import tensorflow as tf

    def compiled(net: Any, signature: list[int | None]) -> Any:
        return tf.function(lambda x: net((tf.cast(x, tf.float32) - 127.5) / 128.0, training=False),
                           input_signature=[tf.TensorSpec(signature, tf.uint8)])

    return {name: compiled(net, [None, *_signature(name)[1:]]) for name, net in nets.items()}


class _Runtime:
    """The three calls of `Networks` over one `_run(network name, batch)` per runtime."""

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def pnet(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets, probs = self._run("pnet", images)
        return offsets, probs

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets, probs = self._run("rnet", crops)
        return offsets, probs

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets, points, probs = self._run("onet", crops)
        return offsets, points, probs


class TensorFlowNetworks(_Runtime):
    """The networks as compiled TensorFlow graphs (one trace each: fixed input signatures)."""

    def __init__(self) -> None:
        self._fn = _functions(_keras_networks())

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        return [t.numpy() for t in self._fn[name](batch)]


def flatbuffers(cache: Path | None = None) -> dict[str, bytes]:
    """The three networks as LiteRT flatbuffers, converted once and cached."""
    versions = f"mtcnn-{importlib.metadata.version('mtcnn')}-tf-{importlib.metadata.version('tensorflow')}"
    directory = (cache or assets.home()) / "mtcnn-litert" / versions
    if all((directory / f"{name}.tflite").is_file() for name in OUTPUTS):
        return {name: (directory / f"{name}.tflite").read_bytes() for name in OUTPUTS}
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    functions = _functions(_keras_networks())
    out = {}
    for name, function in functions.items():
        concrete = function.get_concrete_function(tf.TensorSpec(_signature(name), tf.uint8))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])
        out[name] = converter.convert()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, flatbuffer in out.items():
            partial = directory / f".{name}.tflite.{os.getpid()}"  # whole or absent: another process may read it
            partial.write_bytes(flatbuffer)
            partial.replace(directory / f"{name}.tflite")
    except OSError as exc:  # a read-only cache (an image built without `facegate prepare`): convert each start
        log.warning("could not cache the detector's LiteRT networks in %s (%s); run `facegate prepare` where "
                    "it can write", directory, exc)
    return out


class LiteRTNetworks(_Runtime):
    """The networks in LiteRT's interpreter with XNNPACK, one interpreter per thread and shape."""

    def __init__(self, cache: Path | None = None, threads: int = 1) -> None:
        """`threads`: XNNPACK's per interpreter. One: every interpreter (one per thread and
        shape, up to `KEPT_INTERPRETERS` per thread) would otherwise keep a thread pool of its
        own; the detector runs calls in parallel on one worker per core instead (two threads
        made a single call ~20% faster here)."""
        from ai_edge_litert.interpreter import Interpreter  # deferred: only this runtime needs it

        self._interpreter_class = Interpreter
        self._models = flatbuffers(cache)
        self._threads = threads
        self._local = threading.local()

    def _interpreter(self, name: str, shape: tuple[int, ...]) -> tuple[Any, int, list[int]]:
        kept: OrderedDict[tuple[str, tuple[int, ...]], tuple[Any, int, list[int]]] = \
            self._local.__dict__.setdefault("kept", OrderedDict())
        key = (name, shape)
        if key in kept:
            kept.move_to_end(key)
            return kept[key]
        interpreter = self._interpreter_class(model_content=self._models[name], num_threads=self._threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(shape), strict=False)
        interpreter.allocate_tensors()
        by_width = {int(d["shape"][-1]): d["index"] for d in interpreter.get_output_details()}
        kept[key] = (interpreter, index, [by_width[width] for width in OUTPUTS[name]])
        if len(kept) > KEPT_INTERPRETERS:
            kept.popitem(last=False)
        return kept[key]

    def _invoke(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        interpreter, index, outputs = self._interpreter(name, batch.shape)
        interpreter.set_tensor(index, np.ascontiguousarray(batch))
        interpreter.invoke()
        return [interpreter.get_tensor(i).copy() for i in outputs]

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        if name == "pnet":  # one image at a time: an interpreter per pyramid level's shape
            outs = [self._invoke(name, image[None]) for image in batch]
            return [np.concatenate(parts) for parts in zip(*outs, strict=True)]
        runs, start = [], 0
        for size in power_of_two_runs(len(batch), CHUNK):  # no padding rows: see power_of_two_runs
            runs.append(self._invoke(name, batch[start:start + size]))
            start += size
        return [np.concatenate(parts) for parts in zip(*runs, strict=True)]


def load_networks(runtime: str = "litert", cache: Path | None = None) -> Networks:
    """The networks on `runtime` (one of RUNTIMES)."""
    if runtime == "litert":
        return LiteRTNetworks(cache)
    if runtime == "tensorflow":
        return TensorFlowNetworks()
    raise ValueError(f"runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
