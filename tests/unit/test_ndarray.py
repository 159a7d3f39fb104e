"""The NDArray codec: round trips, and a precise INVALID_ARGUMENT for every mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from services.contracts.v1 import common_pb2
from services.core import ndarray
from services.core.errors import InvalidArgument

FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64", "uint16"])
def test__given_a_raw_array__then_it_round_trips_exactly(dtype):
    array = (np.arange(2 * 3 * 4) * 7).reshape(2, 3, 4).astype(dtype)

    decoded = ndarray.decode(ndarray.encode(array))

    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test__given_a_png_frame__then_it_decodes_to_the_same_pixels_and_a_jpeg_to_nearly_the_same():
    np.testing.assert_array_equal(ndarray.decode_frame(ndarray.encode(FRAME, "png")), FRAME)
    ys, xs = np.mgrid[0:48, 0:64]
    smooth = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=2).astype(np.uint8)  # photo-like gradients
    jpeg = ndarray.decode_frame(ndarray.encode(smooth, "jpeg", jpeg_quality=95))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3


def test__raw_decoding_is_zero_copy():
    message = ndarray.encode(FRAME)

    decoded = ndarray.decode(message)

    assert not decoded.flags.writeable  # a view on the message's bytes, not a copy


@pytest.mark.parametrize(
    "message, error",
    [
        (common_pb2.NDArray(dtype="complex128", shape=[2], data=b"\0" * 32), "dtype: 'complex128' is not accepted"),
        (common_pb2.NDArray(dtype="uint8", shape=[2, 2, 3], data=b"\0" * 11), "data: 11 bytes, but shape [2, 2, 3]"),
        (common_pb2.NDArray(dtype="uint8", shape=[], data=b""), "0 dimensions"),
        (common_pb2.NDArray(dtype="uint8", shape=[1, 1, 1, 1, 1], data=b"\0"), "5 dimensions"),
        (common_pb2.NDArray(dtype="uint8", shape=[-1, 3], data=b""), "negative dimension"),
        (common_pb2.NDArray(dtype="uint8", shape=[100000, 100000, 3], data=b""), "exceeds the limit"),
        (common_pb2.NDArray(data=b"not a jpeg", encoding=common_pb2.NDArray.ENCODING_JPEG), "not a recognised image"),
    ],
)
def test__given_a_malformed_array__then_invalid_argument_names_the_field(message, error):
    with pytest.raises(InvalidArgument, match="^frames\\[0\\]") as caught:
        ndarray.decode(message, "frames[0]")
    assert error in caught.value.message


@pytest.mark.parametrize(
    "array, error",
    [
        (np.zeros((48, 64, 3), np.float32), "frames must be uint8 H x W x 3"),
        (np.zeros((48, 64), np.uint8), "frames must be uint8 H x W x 3"),
        (np.zeros((8, 64, 3), np.uint8), "each side must be 12"),
    ],
)
def test__given_an_array_that_is_not_a_frame__then_decode_frame_refuses_it(array, error):
    with pytest.raises(InvalidArgument, match=error):
        ndarray.decode_frame(ndarray.encode(array))


def test__given_an_encoded_image_whose_declared_shape_is_wrong__then_it_is_refused():
    message = ndarray.encode(FRAME, "png")
    message.shape[:] = [10, 10, 3]

    with pytest.raises(InvalidArgument, match="shape: says"):
        ndarray.decode_frame(message)


def test__a_bgr_frame_encodes_to_the_same_file_as_its_rgb_twin():
    bgr = np.ascontiguousarray(FRAME[:, :, ::-1])

    assert ndarray.encode(bgr, "png", bgr=True).data == ndarray.encode(FRAME, "png").data


def test__a_frame_is_checked_from_its_header_without_decoding_its_pixels():
    whole = ndarray.encode(FRAME, "jpeg")
    body_cut = common_pb2.NDArray(data=whole.data[: len(whole.data) // 2], encoding=whole.encoding)

    ndarray.check_frame(whole)
    ndarray.check_frame(body_cut)  # the header is intact: only the decoder can tell
    with pytest.raises(InvalidArgument, match="frame.data: corrupt or truncated"):
        ndarray.decode_frame(body_cut)


@pytest.mark.parametrize(("message", "error"), [
    (common_pb2.NDArray(data=b"not an image at all", encoding=common_pb2.NDArray.ENCODING_JPEG),
     "frame.data: not a recognised image format"),
    (common_pb2.NDArray(data=b"", encoding=common_pb2.NDArray.ENCODING_PNG), "frame.data: empty file"),
    (common_pb2.NDArray(dtype="uint8", shape=[48, 64, 3], data=b"\0" * 10), "frame.data: 10 bytes, but shape"),
    (common_pb2.NDArray(data=b"x", encoding=7), "frame.encoding: unknown value 7"),
])
def test__a_frame_whose_header_is_wrong_is_refused_by_the_check(message, error):
    with pytest.raises(InvalidArgument, match=error):
        ndarray.check_frame(message)


def test__the_check_refuses_a_frame_whose_declared_shape_is_not_its_size_or_that_is_too_large():
    declared = ndarray.encode(FRAME, "png")
    declared.shape[:] = [64, 48, 3]
    huge = ndarray.encode(np.zeros((20, 9000, 3), np.uint8), "png")

    with pytest.raises(InvalidArgument, match=r"frame.shape: says \[64, 48, 3\] but the image is 48x64x3"):
        ndarray.check_frame(declared)
    with pytest.raises(InvalidArgument, match="frame: image 9000x20 exceeds the limits"):
        ndarray.check_frame(huge)


def test__a_requests_pixels_are_counted_from_headers_and_shapes_without_decoding():
    flat = ndarray.encode(np.zeros((3000, 4000, 3), np.uint8), "png")  # 12 MP in a few kilobytes
    raw = ndarray.encode(FRAME)  # 48 x 64
    unreadable = common_pb2.NDArray(data=b"not an image", encoding=common_pb2.NDArray.ENCODING_JPEG)

    assert len(flat.data) < 100_000
    assert ndarray.megapixels([flat, raw, unreadable]) == pytest.approx(12 + 48 * 64 / 1e6)
