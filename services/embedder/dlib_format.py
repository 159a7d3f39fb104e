"""Reader for dlib's DNN serialization format (the `.dat` files of `dlib::net_type`).

dlib writes a network outermost layer first, but each `add_layer` writes its subnetwork
*before* its own details, so the byte stream is: the loss layer, then one version number per
wrapper from the output down to the input, then the input layer, then each layer's details
from the input up to the output. Formats follow dlib's `serialize.h`, `dnn/core.h`,
`dnn/layers.h`, `dnn/input.h` and `dnn/tensor.h`:

- integers: one control byte (low nibble = byte count, bit 7 = negative) + little-endian bytes;
- floats/doubles: an integer mantissa followed by an integer base-2 exponent;
- strings: an integer length + the bytes;
- bools: the ASCII character '0' or '1';
- tensors (version 2): num_samples, k, nr, nc, then raw little-endian float32 values.

Tag and skip wrappers serialize only a version number and cannot be told apart here, so the
reader returns them as `Wrapper` records; the network *shape* comes from the model definition
(see `dlib_resnet.py`), which checks every record against what it expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The file is not a dlib DNN of a kind this reader understands."""


@dataclass(frozen=True)
class InputRGB:
    """`input_rgb_image_sized`: pixels become (value - mean) / 256 in RGB order."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class Conv:
    """`con_`: filters are (num_filters, channels, rows, cols); cross-correlation like cuDNN."""

    filters: np.ndarray
    biases: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """`affine_` (batch norm frozen for inference): y = gamma * x + beta per channel."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Pool:
    """`max_pool_` / `avg_pool_`; a size of (0, 0) means pooling over the whole plane."""

    kind: str
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Relu:
    """`relu_`."""


@dataclass(frozen=True)
class AddPrev:
    """`add_prev_`: adds a tagged earlier output; mismatched shapes are zero-padded."""


@dataclass(frozen=True)
class Wrapper:
    """An `add_tag_layer` or `add_skip_layer` (indistinguishable in the stream)."""


@dataclass(frozen=True)
class FullyConnected:
    """`fc_`: weights are (num_inputs, num_outputs); `bias` is None for `fc_no_bias`."""

    weights: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class LossMetric:
    """`loss_metric_`: the training margin and the distance threshold dlib recommends."""

    margin: float
    distance_threshold: float


Layer = InputRGB | Conv | Affine | Pool | Relu | AddPrev | Wrapper | FullyConnected


@dataclass(frozen=True)
class DlibNetwork:
    """A parsed network: its loss and its layers in forward order (input first)."""

    loss: LossMetric
    layers: tuple[Layer, ...]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self._data):
            raise DlibFormatError(f"file ends early: wanted {n} bytes at offset {self.pos}")
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise DlibFormatError(f"implausible string length {length} at offset {self.pos}")
        return self._take(length).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at offset {self.pos - 1}")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at offset {self.pos}; only version 2 is supported")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias_tensor_shape(self) -> tuple[int, ...]:
        version = self.integer()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} at offset {self.pos}")
        return tuple(self.integer() for _ in range(4))


def _read_details(reader: _Reader) -> Layer:
    name = reader.string()
    if name == "con_4":
        params = reader.tensor().ravel()
        num_filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
        stride = (reader.integer(), reader.integer())
        padding = (reader.integer(), reader.integer())
        filter_shape = reader.alias_tensor_shape()
        reader.alias_tensor_shape()  # biases: (1, num_filters, 1, 1)
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            reader.real()
        filters = params[: int(np.prod(filter_shape))].reshape(filter_shape)
        if filters.shape[0] != num_filters or filters.shape[2:] != (rows, cols):
            raise DlibFormatError(f"con_ filter shape {filters.shape} disagrees with {num_filters}x{rows}x{cols}")
        return Conv(filters, params[filters.size :].copy(), stride, padding)
    if name == "affine_":
        params = reader.tensor().ravel()
        reader.alias_tensor_shape()
        reader.alias_tensor_shape()
        mode = reader.integer()
        if mode != 0:
            raise DlibFormatError("affine_ in FC_MODE is not supported (only CONV_MODE, per channel)")
        half = params.size // 2
        return Affine(params[:half].copy(), params[half:].copy())
    if name in ("max_pool_2", "avg_pool_2"):
        rows, cols = reader.integer(), reader.integer()
        stride = (reader.integer(), reader.integer())
        padding = (reader.integer(), reader.integer())
        return Pool(name[:3], (rows, cols), stride, padding)
    if name == "relu_":
        return Relu()
    if name == "add_prev_":
        return AddPrev()
    if name == "fc_2":
        num_outputs, num_inputs = reader.integer(), reader.integer()
        params = reader.tensor().ravel()
        reader.alias_tensor_shape()
        bias_shape = reader.alias_tensor_shape()
        has_bias = reader.integer() == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        for _ in range(4):
            reader.real()
        weights = params[: num_inputs * num_outputs].reshape(num_inputs, num_outputs)
        bias = params[weights.size :].copy() if has_bias and np.prod(bias_shape) else None
        return FullyConnected(weights.copy(), bias)
    raise DlibFormatError(f"unsupported dlib layer {name!r} at offset {reader.pos}")


def _read_layer_state(reader: _Reader) -> None:
    """Skip what `add_layer` stores after its details (training-time state, empty in models)."""
    for _ in range(3):
        reader.boolean()
    for _ in range(3):
        reader.tensor()


def parse_network(data: bytes) -> DlibNetwork:
    """Parse a serialized `loss_metric` network (e.g. dlib_face_recognition_resnet_model_v1)."""
    reader = _Reader(data)
    if reader.integer() != 1:
        raise DlibFormatError("not a dlib add_loss_layer stream (version != 1)")
    loss_name = reader.string()
    if loss_name != "loss_metric_2":
        raise DlibFormatError(f"loss layer {loss_name!r}: only loss_metric_2 networks are supported")
    loss = LossMetric(margin=reader.real(), distance_threshold=reader.real())

    # One version per wrapper from the output down: 2 = add_layer, 1 = tag/skip, and the
    # innermost add_layer (the one holding the input layer) is version 3.
    wrappers: list[int] = []
    while True:
        version = reader.integer()
        if version == 3:
            break
        if version not in (1, 2) or len(wrappers) > 10_000:
            raise DlibFormatError(f"unexpected layer version {version} at offset {reader.pos}")
        wrappers.append(version)

    name = reader.string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"input layer {name!r}: only input_rgb_image_sized is supported")
    mean_rgb = (reader.real(), reader.real(), reader.real())
    layers: list[Layer] = [InputRGB(mean_rgb, reader.integer(), reader.integer())]
    layers.append(_read_details(reader))
    _read_layer_state(reader)
    reader.integer()  # the input-level add_layer also stores its sample expansion factor

    for version in reversed(wrappers):
        if version == 1:
            layers.append(Wrapper())
            continue
        layers.append(_read_details(reader))
        _read_layer_state(reader)
    if reader.pos != len(data):
        raise DlibFormatError(f"{len(data) - reader.pos} unread bytes at the end of the file")
    return DlibNetwork(loss, tuple(layers))


def load_network(path: Path) -> DlibNetwork:
    """Read and parse a dlib DNN `.dat` file."""
    return parse_network(Path(path).read_bytes())
