"""The NDArray codec under arbitrary input (hypothesis): every message either decodes to what
its header says or is refused with InvalidArgument; nothing else escapes, nothing is guessed.
`make fuzz` runs many more examples than `make test` (FACEGATE_FUZZ_EXAMPLES)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from services.contracts.v1 import common_pb2
from services.core import ndarray
from services.core.errors import InvalidArgument

pytestmark = pytest.mark.fuzz
FUZZ = settings(max_examples=int(os.environ.get("FACEGATE_FUZZ_EXAMPLES", "200")), deadline=None,
                derandomize=os.environ.get("FACEGATE_FUZZ_RANDOM") != "1")  # make test: the same examples each run

PNG, JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
SIDES = st.one_of(st.integers(-3, 70), st.sampled_from([2**31 - 1, 2**32 + 1, 2**62, -(2**63)]))


@st.composite
def messages(draw: st.DrawFn) -> common_pb2.NDArray:
    """NDArrays as a careless or hostile sender writes them: any encoding number, dtype, shape
    (negative, huge, overflowing int64 when multiplied) and payload (random, or an image magic
    number followed by garbage)."""
    encoding = draw(st.sampled_from([0, 1, 2]) | st.integers(-5, 50))
    dtype = draw(st.sampled_from(sorted(ndarray.ALLOWED_DTYPES)) | st.text(max_size=12))
    shape = draw(st.lists(SIDES, max_size=6))
    prefix = draw(st.sampled_from([b"", PNG, JPEG]))
    data = prefix + draw(st.binary(max_size=4096))
    return common_pb2.NDArray(encoding=encoding, dtype=dtype, shape=shape, data=data)


@FUZZ
@given(messages())
def test__any_message_decodes_as_its_header_says_or_is_refused_with_invalid_argument(message):
    try:
        array = ndarray.decode(message, "frame")
    except InvalidArgument as exc:
        assert exc.message.startswith("frame")  # names the field
        return
    if message.encoding == common_pb2.NDArray.ENCODING_RAW:
        assert array.dtype == np.dtype(message.dtype) and array.shape == tuple(message.shape)
    else:
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3


@FUZZ
@given(messages())
def test__frame_checks_from_the_header_agree_with_decoding_or_refuse(message):
    try:
        width, height = ndarray.check_frame(message)
    except InvalidArgument:
        return
    try:
        frame = ndarray.decode_frame(message)
    except InvalidArgument:
        return  # a valid header over a corrupt body: the decoder is the one to say so
    assert frame.shape[:2] == (height, width)


@FUZZ
@given(st.lists(messages(), max_size=4))
def test__megapixels_of_any_request_is_never_negative_and_never_raises(batch):
    """A bogus frame (refused later, when decoded) must not lower a request's total."""
    assert ndarray.megapixels(batch) >= 0


@FUZZ
@given(hnp.arrays(st.sampled_from(sorted(ndarray.ALLOWED_DTYPES)),
                  hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)))
def test__any_raw_array_round_trips_bit_for_bit(array):
    decoded = ndarray.decode(ndarray.encode(array))

    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    assert decoded.tobytes() == np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
