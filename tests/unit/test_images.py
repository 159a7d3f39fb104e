"""Photos are decoded by content; unusable input gets a clear ImageError, never a crash."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from services.core.images import MAX_PIXELS, ImageError, _one_whole_scan, decode_image, image_size


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


RGB = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "PPM", "BMP", "TIFF", "WEBP"])
def test__given_a_common_format__then_it_decodes_to_rgb_uint8(fmt):
    array = decode_image(_encode(RGB, fmt))

    assert array.shape == (40, 60, 3) and array.dtype == np.uint8


def test__given_greyscale_pgm__then_it_becomes_three_equal_channels():
    grey = Image.fromarray(np.arange(40 * 60, dtype=np.uint32).reshape(40, 60).astype(np.uint8))
    array = decode_image(_encode(grey, "PPM"))  # Pillow writes L images as binary PGM

    assert array.shape == (40, 60, 3)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test__given_a_16_bit_png__then_it_is_scaled_not_clipped():
    values = np.full((40, 60), 32768, dtype=np.uint16)
    array = decode_image(_encode(Image.fromarray(values), "PNG"))

    assert 120 <= array[0, 0, 0] <= 136  # mid-grey, not 255


def test__given_rgba__then_transparent_pixels_become_white():
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[:, :30] = (255, 0, 0, 255)
    array = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))

    assert tuple(array[0, 0]) == (255, 0, 0) and tuple(array[0, 59]) == (255, 255, 255)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is a text file, not a photo", "not a recognised image"),
        (_encode(RGB, "JPEG")[:300], "corrupt or truncated"),
        (_encode(Image.new("RGB", (1, 1)), "PNG"), "at least 12 px"),
    ],
)
def test__given_bad_bytes__then_an_image_error_says_what_is_wrong(data, message):
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test__given_a_huge_image__then_it_is_refused_before_decoding_pixels():
    side = int(np.sqrt(MAX_PIXELS)) + 100
    huge = _encode(Image.new("L", (side, side)), "PNG", compress_level=9)  # a few hundred kB on disk

    with pytest.raises(ImageError, match="MP"):
        decode_image(huge)


def test__a_photo_rotated_by_its_exif_tag_is_decoded_upright_and_its_header_size_says_so():
    landscape = np.zeros((20, 40, 3), np.uint8)
    landscape[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    Image.fromarray(landscape).save(buffer, "PNG", exif=exif)

    upright = decode_image(buffer.getvalue())

    assert upright.shape == (40, 20, 3)
    assert image_size(buffer.getvalue()) == (20, 40)  # (width, height), as decoded
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the white half is now on top


# A camera-like picture (smooth, so JPEG keeps most of it) for the JPEG decoding paths.
SCENE = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 2)


def _pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("picture, options, plain", [
    (SCENE, {}, True), (SCENE, {"subsampling": 0}, True), (SCENE, {"quality": 30}, True),
    (SCENE, {"optimize": True}, True), (SCENE, {"restart_marker_blocks": 1}, True), (SCENE[..., 0], {}, True),
    (SCENE[:121, :157], {}, True),  # sides that are not whole blocks
    (SCENE, {"progressive": True}, False)])
def test__given_a_jpeg__then_it_decodes_to_the_same_pixels_as_pillow_decodes_it(picture, options, plain):
    data = _encode(Image.fromarray(picture), "JPEG", **options)

    assert _one_whole_scan(data) is plain  # which decoder this case exercises: OpenCV's, or Pillow's
    assert np.array_equal(decode_image(data), _pillow_pixels(data))


def test__given_a_jpeg_with_its_exif_rotation__then_it_is_decoded_upright_as_pillow_does():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(SCENE), "JPEG", exif=exif)

    assert np.array_equal(decode_image(data), _pillow_pixels(data))


def test__given_a_jpeg_with_a_marker_inside_its_scan__then_it_is_refused_though_libjpeg_alone_would_decode_it():
    data = _encode(Image.fromarray(SCENE), "JPEG")
    middle = len(data) * 2 // 3
    broken = data[:middle] + b"\xff\xc4" + data[middle + 2:]  # a table marker amid the coded pixels
    assert cv2.imdecode(np.frombuffer(broken, np.uint8), cv2.IMREAD_COLOR_RGB) is not None  # what OpenCV says

    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(broken)
