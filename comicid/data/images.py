"""The one image loader of comicid: any file a user may bring, decoded to 8-bit RGB.

Comic scans and sprite sheets come in every mode PIL knows: palette PNGs with a transparent index,
RGBA sprites, grayscale and 16-bit scans, CMYK print files, phone photos with an EXIF rotation. All of
them become RGB with transparency composited on white (the colour of the page), so that a model never
sees the arbitrary colour hidden under an alpha of zero.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from comicid.errors import ImageReadError

#: Pages of up to 200 megapixels are accepted (a 600-dpi scan of an A2 sheet is about 140 MP); beyond
#: that the file is refused from its header, before anything is decoded. Decoding costs about 4 bytes
#: per pixel (PIL keeps RGB as 4 bytes) and a transparent page about 3 times that while it is
#: composited on white, so a page never needs more than about 2.5 GB; the earlier 1-gigapixel limit let
#: a 20000x20000 PNG take 4.8 GB.
MAX_IMAGE_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

BACKGROUND_RGB = (255, 255, 255)


def _sixteen_bit_to_uint8(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    if values.max(initial=0) > 255:
        values = values / 257.0  # full 16-bit range onto 8 bits
    return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an already-opened image to RGB, compositing any transparency on white."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _sixteen_bit_to_uint8(image)
        mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        composited = Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,)), rgba)
        del rgba  # one full-size copy fewer alive during the conversion below
        return composited.convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")  # L, 1, P without transparency, CMYK, YCbCr, LAB, HSV


def load_image(path: str | Path) -> Image.Image:
    """Read ``path`` as an 8-bit RGB image.

    Raises:
        ImageReadError: the file is missing, not an image, truncated, or too large; the message
            names the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image '{path}' not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                return to_rgb(opened)
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"image '{path}' is too large: {error}") from None
    except Image.DecompressionBombWarning as error:
        raise ImageReadError(f"image '{path}' is too large: {error}") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"image '{path}' is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"image '{path}' could not be decoded ({error})") from None


def crop_hash(image: Image.Image) -> str:
    """The one content key of a crop: SHA-256 over its size and RGB pixels (independent of PNG encoders).

    A collection stores its crops under it (:meth:`comicid.store.collection.Collection.store_crop`) and
    the feature cache of :func:`comicid.models.embed.embed_crops` is keyed by it, so a crop file of a
    collection, decoded by :func:`load_image`, has the key the collection gave it.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike[str]) -> str:
    """``size:mtime_ns`` of a source file, ``""`` when it cannot be read: what says a page changed.

    Used with the part's locator (:func:`comicid.data.manifest.part_locators`) by both caches that
    avoid cutting a page again: a collection's import and the training crop cache.
    """
    try:
        status = os.stat(path)
    except OSError:
        return ""
    return f"{status.st_size}:{status.st_mtime_ns}"
