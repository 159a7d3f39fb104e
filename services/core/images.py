"""Decoding photos into the RGB uint8 arrays the pipeline works on.

The format is recognised from the bytes, never from a file name: real photo dumps hold PGM,
GIF and extension-less files. Pillow does the decoding; this module normalises what comes out
(EXIF rotation, greyscale, alpha, palettes, 16-bit samples) and refuses what cannot be a photo
of a face with a message that says why.

Camera frames are JPEG, and the detector decodes every frame it searches: a plain one (sequential,
RGB or grey, upright, its one scan whole) is decoded by OpenCV's libjpeg-turbo instead: the same
pixels in two thirds of the time (2.1 -> 1.4 ms for a 640x480 door frame, header checks included).
Pillow refuses some JPEGs that libjpeg only warns about (a marker inside the scan: "broken data
stream"), so those, and anything else, take Pillow's path and its errors.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 80_000_000  # ~80 MP: larger is a decompression bomb, not a camera photo
MIN_SIDE = 12  # the smallest face MTCNN can see
ORIENTATION_TAG = 0x0112  # EXIF orientation
# JPEG start-of-frame markers: all of them (0xC4, 0xC8, 0xCC are tables), and the sequential
# Huffman-coded ones the OpenCV path takes (progressive, lossless and arithmetic-coded go to Pillow)
START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
SEQUENTIAL = frozenset({0xC0, 0xC1})
_IN_SCAN = np.zeros(256, bool)  # what may follow 0xFF inside a scan: a stuffed 0 or a restart marker
_IN_SCAN[0x00] = _IN_SCAN[0xD0:0xD8] = True


class ImageError(ValueError):
    """The bytes are not an image FaceGate can use."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to an H x W x 3 uint8 RGB array (first frame of animations)."""
    with _opened(data) as image, _refusing_bad_bytes(data):
        array = _plain_jpeg(data, image)
        if array is None:
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright photo
            array = _to_rgb(image)
    _refuse_tiny(array.shape[1], array.shape[0])
    return array


def _plain_jpeg(data: bytes, image: Image.Image) -> np.ndarray | None:
    """A plain JPEG's pixels from OpenCV (the module docstring says which and why), else None."""
    if (image.format != "JPEG" or image.mode not in ("RGB", "L")
            or image.getexif().get(ORIENTATION_TAG, 1) != 1 or not _one_whole_scan(data)):
        return None
    # None for what libjpeg cannot decode at all: Pillow's path then says why
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)


def _one_whole_scan(data: bytes) -> bool:
    """A sequential JPEG whose one scan runs to the end-of-image marker with no marker inside it
    but restarts (~30 us for a 640x480 frame): what libjpeg and Pillow decode alike. Anything
    unusual before the scan (a marker without a length, another frame type) is not."""
    if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
        return False  # truncated: Pillow says so
    position, sequential = 2, False
    while True:  # the segments before the scan, each a marker and its length
        if position + 4 > len(data) or data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in START_OF_FRAME:
            if marker not in SEQUENTIAL:
                return False
            sequential = True
        elif marker == 0x01 or 0xD0 <= marker <= 0xD9:  # no length: TEM, restarts, SOI, EOI
            return False
        position += 2 + (data[position + 2] << 8 | data[position + 3])
        if marker == 0xDA:  # start of scan: the entropy-coded data follows its header
            break
    if not sequential or position > len(data) - 2:
        return False
    scan = np.frombuffer(data, np.uint8, count=len(data) - 2 - position, offset=position)
    after_ff = scan[np.flatnonzero(scan[:-1] == 0xFF) + 1]
    return bool(_IN_SCAN[after_ff].all() and (len(scan) == 0 or scan[-1] != 0xFF))


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) as the decoded image will have them (EXIF rotation applied), read from the
    header only; the same refusals as `decode_image` for what the header can show."""
    with _opened(data) as image, _refusing_bad_bytes(data):  # lazy: reads the header, not the pixels
        width, height = image.size
        if image.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8):  # rotated by 90 degrees
            width, height = height, width
    _refuse_tiny(width, height)
    return width, height


@contextlib.contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    """The image, opened lazily (header read), if the bytes are one of a size we decode."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    with _refusing_bad_bytes(data), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"image is {width}x{height} = {width * height / 1e6:.0f} MP; the limit is "
                                 f"{MAX_PIXELS / 1e6:.0f} MP (downscale it first)")
            yield image


@contextlib.contextmanager
def _refusing_bad_bytes(data: bytes) -> Iterator[None]:
    """Pillow's ways of saying "not an image" or "broken image" as one ImageError."""
    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError as exc:  # its text is "cannot identify image file <_io.BytesIO at 0x...>"
        raise ImageError(f"not a recognised image format ({len(data)} bytes; send JPEG, PNG, WebP, GIF, BMP, "
                         "TIFF or PGM)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"not a recognised image format ({len(data)} bytes): {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc


def _refuse_tiny(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"image is {width}x{height} px; need at least {MIN_SIDE} px per side")


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/float greyscale: Pillow's own RGB conversion clips instead of scaling.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, not whatever colour they happen to store.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":  # convert() copies even when there is nothing to convert
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
