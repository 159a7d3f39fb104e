"""dlib's face-recognition ResNet rebuilt in Keras from the weights in its `.dat` file.

The network (dlib's `dnn_face_recognition_ex.cpp`, `anet_type`) is a 29-conv ResNet on a
150x150 RGB chip ending in a 128-d metric embedding. Two details matter for exactness:

- every `affine_` (frozen batch norm) follows a convolution, so it is folded into that
  convolution's kernel and bias: same function, one op less;
- dlib's residual add zero-pads the smaller operand (bottom/right rows and columns, extra
  channels) to the larger shape. In this net the 8x8 -> 3x3 strided block meets a 4x4
  average-pooled shortcut, and the 4x4 -> 1x1 block meets a 2x2 one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import keras
import numpy as np
from keras import layers

from services.embedder.dlib_format import (
    AddPrev,
    Affine,
    Conv,
    DlibFormatError,
    DlibNetwork,
    FullyConnected,
    InputRGB,
    Layer,
    Pool,
    Relu,
    Wrapper,
)

L = TypeVar("L", bound=Layer)


class _Layers:
    """The parsed layers as a stream the builder consumes, checking each kind it expects."""

    def __init__(self, items: tuple[Layer, ...]) -> None:
        self._items: Iterator[Layer] = iter(items)
        self._next: Layer | None = next(self._items, None)
        self.index = 0

    def peek(self) -> Layer | None:
        return self._next

    def take(self, kind: type[L]) -> L:
        item = self._next
        if not isinstance(item, kind):
            raise DlibFormatError(
                f"layer {self.index}: expected {kind.__name__}, found {type(item).__name__}; "
                "this file is not the dlib ResNet metric network this builder knows"
            )
        self._next = next(self._items, None)
        self.index += 1
        return item


def _conv_affine(stream: _Layers, x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    conv = stream.take(Conv)
    affine = stream.take(Affine)
    num_filters, _, rows, cols = conv.filters.shape
    kernel = conv.filters.transpose(2, 3, 1, 0) * affine.gamma  # (rows, cols, in, out)
    bias = conv.biases * affine.gamma + affine.beta
    same = conv.stride == (1, 1) and conv.padding == (rows // 2, cols // 2) and rows % 2 == 1
    if not same and conv.padding != (0, 0):
        x = layers.ZeroPadding2D(conv.padding, name=f"{name}_pad")(x)
    layer = layers.Conv2D(
        num_filters, (rows, cols), strides=conv.stride, padding="same" if same else "valid", name=name
    )
    y = layer(x)
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return y


def _pool(stream: _Layers, x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    pool = stream.take(Pool)
    if pool.size == (0, 0):
        if pool.kind != "avg":
            raise DlibFormatError("global max pooling is not supported")
        return layers.GlobalAveragePooling2D(name=name)(x)
    if pool.padding != (0, 0):
        raise DlibFormatError(f"pooling with padding {pool.padding} is not supported")
    cls = layers.MaxPooling2D if pool.kind == "max" else layers.AveragePooling2D
    return cls(pool.size, strides=pool.stride, padding="valid", name=name)(x)


def _relu(stream: _Layers, x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    stream.take(Relu)
    return layers.ReLU(name=name)(x)


def _pad_to(x: keras.KerasTensor, shape: tuple[int, int, int], name: str) -> keras.KerasTensor:
    rows, cols, channels = x.shape[1:]
    if (rows, cols) != shape[:2]:
        x = layers.ZeroPadding2D(((0, shape[0] - rows), (0, shape[1] - cols)), name=f"{name}_hw")(x)
    if channels != shape[2]:
        extra = shape[2] - channels
        x = layers.Lambda(
            lambda t, extra=extra: keras.ops.pad(t, [[0, 0], [0, 0], [0, 0], [0, extra]]), name=f"{name}_c"
        )(x)
    return x


def _zero_padded_add(a: keras.KerasTensor, b: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """dlib's add_prev: the sum over the larger of the two shapes, missing values being 0."""
    shape = tuple(max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True))
    return layers.Add(name=name)([_pad_to(a, shape, f"{name}_pa"), _pad_to(b, shape, f"{name}_pb")])


def _residual_block(stream: _Layers, x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    stream.take(Wrapper)  # tag1: the block input
    shortcut = x
    y = _conv_affine(stream, x, f"{name}_conv1")
    y = _relu(stream, y, f"{name}_relu1")
    y = _conv_affine(stream, y, f"{name}_conv2")
    if isinstance(stream.peek(), Wrapper):  # residual_down: tag2, skip1, avg_pool(tag1)
        stream.take(Wrapper)
        stream.take(Wrapper)
        shortcut = _pool(stream, shortcut, f"{name}_down")
    stream.take(AddPrev)
    return _relu(stream, _zero_padded_add(y, shortcut, f"{name}_add"), f"{name}_out")


def build_keras_model(network: DlibNetwork) -> keras.Model:
    """Build the Keras model (float RGB 0..255 in, raw 128-d descriptor out) from parsed weights."""
    stream = _Layers(network.layers)
    spec = stream.take(InputRGB)
    rgb = keras.Input((spec.rows, spec.cols, 3), dtype="float32", name="rgb")
    x = layers.Normalization(mean=list(spec.mean_rgb), variance=[256.0**2] * 3, name="dlib_input")(rgb)
    x = _conv_affine(stream, x, "stem_conv")
    x = _relu(stream, x, "stem_relu")
    x = _pool(stream, x, "stem_pool")
    block = 0
    while isinstance(stream.peek(), Wrapper):
        x = _residual_block(stream, x, f"block{block:02d}")
        block += 1
    x = _pool(stream, x, "global_pool")
    fc = stream.take(FullyConnected)
    dense = layers.Dense(fc.weights.shape[1], use_bias=fc.bias is not None, name="embedding")
    out = dense(x)
    dense.set_weights([fc.weights] + ([fc.bias] if fc.bias is not None else []))
    if stream.peek() is not None:
        raise DlibFormatError(f"{type(stream.peek()).__name__} after the final fc layer")
    return keras.Model(rgb, out, name="dlib_resnet_metric")
