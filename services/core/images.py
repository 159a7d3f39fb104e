"""Decoding photos into the RGB uint8 arrays the pipeline works on.

The format is recognised from the bytes, never from a file name: real photo dumps hold PGM,
GIF and extension-less files. Pillow does the decoding; this module normalises what comes out
(EXIF rotation, greyscale, alpha, palettes, 16-bit samples) and refuses what cannot be a photo
of a face with a message that says why.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 80_000_000  # ~80 MP: larger is a decompression bomb, not a camera photo
MIN_SIDE = 12  # the smallest face MTCNN can see
ORIENTATION_TAG = 0x0112  # EXIF orientation


class ImageError(ValueError):
    """The bytes are not an image FaceGate can use."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to an H x W x 3 uint8 RGB array (first frame of animations)."""
    with _opened(data) as image, _refusing_bad_bytes(data):
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright photo
        array = _to_rgb(image)
    _refuse_tiny(array.shape[1], array.shape[0])
    return array


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
