"""The NDArray codec: numpy arrays <-> `facegate.v1.NDArray`, with every check in one place.

Raw arrays travel as little-endian C-order bytes with dtype and shape; frames may instead be
JPEG/PNG-encoded and are decoded back to the same uint8 H x W x 3 RGB contract. Anything that
does not add up raises `InvalidArgument` (-> INVALID_ARGUMENT) with a message naming the field.
Raw decoding makes no copy beyond protobuf's own: the array is a read-only view on the bytes
read once from the message (protobuf's upb runtime copies a bytes field on every read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.contracts.v1 import common_pb2
from services.core.errors import InvalidArgument
from services.core.images import ImageError, decode_image, image_size

ALLOWED_DTYPES = frozenset({"uint8", "uint16", "int32", "int64", "float16", "float32", "float64"})


@dataclass(frozen=True)
class ArrayLimits:
    """What a receiver accepts. `max_bytes` bounds the decoded array, not just the message."""

    max_bytes: int = 64 * 1024 * 1024
    max_dims: int = 4
    max_side: int = 8192


DEFAULT_LIMITS = ArrayLimits()


def encode(array: np.ndarray, encoding: str = "raw", jpeg_quality: int = 90, bgr: bool = False) -> common_pb2.NDArray:
    """numpy -> NDArray. `encoding` is "raw", "jpeg" or "png" (images: uint8 H x W x 3 RGB).

    `bgr=True`: the image is in OpenCV's BGR order (a camera frame as `cv2` reads it); JPEG/PNG
    take it as it is instead of converting it to RGB and back (the file decodes to RGB either way).
    """
    if encoding == "raw":
        message = common_pb2.NDArray()
        encode_into(message, array)
        return message
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{encoding} encoding needs a uint8 H x W x 3 image; got {array.dtype} {array.shape}")
    if not bgr:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if encoding == "jpeg":
        ok, data = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        kind = common_pb2.NDArray.ENCODING_JPEG
    elif encoding == "png":
        ok, data = cv2.imencode(".png", array)
        kind = common_pb2.NDArray.ENCODING_PNG
    else:
        raise ValueError(f"unknown encoding {encoding!r}; use raw, jpeg or png")
    if not ok:
        raise ValueError(f"OpenCV could not {encoding}-encode the image")
    return common_pb2.NDArray(dtype="uint8", shape=list(array.shape), data=data.tobytes(), encoding=kind)


def encode_into(message: common_pb2.NDArray, array: np.ndarray) -> None:
    """Fill `message` (e.g. a field of a reply being built) with `array` raw: one copy of the
    pixels fewer than building an NDArray and copying it in."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    message.dtype, message.data = array.dtype.name, np.ascontiguousarray(little).tobytes()
    message.shape[:] = array.shape


def decode(message: common_pb2.NDArray, field: str = "array", limits: ArrayLimits = DEFAULT_LIMITS) -> np.ndarray:
    """NDArray -> numpy, validated. `field` names the request field in error messages."""
    if message.encoding in (common_pb2.NDArray.ENCODING_JPEG, common_pb2.NDArray.ENCODING_PNG):
        return _decode_image(message, field, limits)
    if message.encoding != common_pb2.NDArray.ENCODING_RAW:
        raise InvalidArgument(f"{field}.encoding: unknown value {message.encoding}")
    if message.dtype not in ALLOWED_DTYPES:
        raise InvalidArgument(f"{field}.dtype: {message.dtype!r} is not accepted; use one of {sorted(ALLOWED_DTYPES)}")
    shape = tuple(message.shape)
    if not 1 <= len(shape) <= limits.max_dims:
        raise InvalidArgument(f"{field}.shape: {len(shape)} dimensions; need 1 to {limits.max_dims}")
    if any(side < 0 for side in shape):
        raise InvalidArgument(f"{field}.shape: negative dimension in {list(shape)}")
    if any(side > limits.max_bytes for side in shape):  # numpy refuses such a shape even with no elements
        raise InvalidArgument(f"{field}.shape: a side over {limits.max_bytes} in {list(shape)}")
    dtype = np.dtype(message.dtype).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no int64 overflow
    if expected > limits.max_bytes:
        raise InvalidArgument(f"{field}: {expected} bytes exceeds the limit of {limits.max_bytes}")
    data = message.data  # read once: with protobuf's upb runtime every read of a bytes field is a copy
    if len(data) != expected:
        raise InvalidArgument(
            f"{field}.data: {len(data)} bytes, but shape {list(shape)} of {message.dtype} needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_frame(message: common_pb2.NDArray, field: str = "frame", limits: ArrayLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A frame: uint8 H x W x 3 RGB, each side at least 12 and at most `limits.max_side` px."""
    array = decode(message, field, limits)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise InvalidArgument(f"{field}: frames must be uint8 H x W x 3 RGB; got {array.dtype} {list(array.shape)}")
    if min(array.shape[:2]) < 12 or max(array.shape[:2]) > limits.max_side:
        raise InvalidArgument(
            f"{field}: {array.shape[1]}x{array.shape[0]} px; each side must be 12..{limits.max_side} px"
        )
    return array


def check_frame(message: common_pb2.NDArray, field: str = "frame",
                limits: ArrayLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """What `decode_frame` checks, without decoding the pixels: a JPEG/PNG frame is judged by its
    header (format, size), a raw one by its dtype, shape and length (free: no copy). For a
    service that forwards frames it does not look at: the one that decodes them reports a body
    that is corrupt behind a valid header. Returns (width, height) as the frame decodes."""
    if message.encoding == common_pb2.NDArray.ENCODING_RAW:
        height, width = decode_frame(message, field, limits).shape[:2]
        return width, height
    if message.encoding not in (common_pb2.NDArray.ENCODING_JPEG, common_pb2.NDArray.ENCODING_PNG):
        raise InvalidArgument(f"{field}.encoding: unknown value {message.encoding}")
    data = message.data  # read once (a copy per read under upb)
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"{field}: {len(data)} encoded bytes exceeds the limit of {limits.max_bytes}")
    try:
        width, height = image_size(data)
    except ImageError as exc:
        raise InvalidArgument(f"{field}.data: {exc}") from exc
    if max(width, height) > limits.max_side or width * height * 3 > limits.max_bytes:
        raise InvalidArgument(f"{field}: image {width}x{height} exceeds the limits")
    if message.shape and tuple(message.shape) != (height, width, 3):
        raise InvalidArgument(f"{field}.shape: says {list(message.shape)} but the image is {height}x{width}x3")
    return width, height


def megapixels(messages: list[common_pb2.NDArray]) -> float:
    """What frames decode to, in megapixels, from their headers (raw: their shape), without
    decoding: a request's total is limited before any of it is decoded, since ten small PNGs can
    each claim 20 MP. A frame whose header is unreadable counts 0 (decoding it reports why)."""
    total = 0
    for message in messages:
        if message.encoding == common_pb2.NDArray.ENCODING_RAW:
            # a negative side is refused when the frame is decoded; here it must not lower the total
            total += math.prod(max(0, side) for side in message.shape[:2]) if len(message.shape) >= 2 else 0
            continue
        try:
            width, height = image_size(message.data)
        except ImageError:
            continue
        total += width * height
    return total / 1e6


def _decode_image(message: common_pb2.NDArray, field: str, limits: ArrayLimits) -> np.ndarray:
    data = message.data  # read once (a copy per read under upb)
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"{field}: {len(data)} encoded bytes exceeds the limit of {limits.max_bytes}")
    try:
        array = decode_image(data)
    except ImageError as exc:
        raise InvalidArgument(f"{field}.data: {exc}") from exc
    if array.nbytes > limits.max_bytes or max(array.shape[:2]) > limits.max_side:
        raise InvalidArgument(f"{field}: decoded image {array.shape[1]}x{array.shape[0]} exceeds the limits")
    if message.shape and tuple(message.shape) != array.shape:
        raise InvalidArgument(f"{field}.shape: says {list(message.shape)} but the image decodes to {list(array.shape)}")
    return array
