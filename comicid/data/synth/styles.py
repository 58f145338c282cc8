"""Drawing styles applied to a rendered panel, so that colour alone cannot identify a character.

Real comics mix full colour, grayscale, halftone print and uncoloured line art, sometimes within one
book. Each style keeps the shapes (outlines, patterns, silhouettes) and changes or removes colour:

* ``colour``: the drawing with a random hue rotation, saturation and brightness, so the same shirt is
  a slightly different colour in two panels (like recolourings and print shifts);
* ``grayscale``: luminance only, with a random contrast;
* ``halftone``: a dot screen whose dot size follows darkness, plus solid ink lines (newsprint);
* ``lineart``: outlines and colour edges only, no fill (inks before colouring).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageFilter

STYLES: tuple[str, ...] = ("colour", "grayscale", "halftone", "lineart")
#: Colour stays the most common style, as in a modern comic.
STYLE_WEIGHTS: tuple[float, ...] = (0.45, 0.2, 0.2, 0.15)
_INK_LEVEL = 70  # gray values below this are ink lines and survive every style
_PAPER = 0.12  # darkness below this gets no halftone dot


def sample_style(rng: random.Random) -> str:
    """One style name, drawn with :data:`STYLE_WEIGHTS`."""
    return rng.choices(STYLES, weights=STYLE_WEIGHTS)[0]


def apply_style(image: Image.Image, style: str, rng: random.Random) -> Image.Image:
    """Return ``image`` (RGB) redrawn in ``style``; randomness comes only from ``rng``."""
    if style == "colour":
        return _colour(image, hue=rng.uniform(-0.05, 0.05), saturation=rng.uniform(0.75, 1.15),
                       brightness=rng.uniform(0.88, 1.05))
    if style == "grayscale":
        return _grayscale(image, contrast=rng.uniform(0.8, 1.25))
    if style == "halftone":
        return _halftone(image, cell=rng.choice((3, 4, 5)))
    if style == "lineart":
        return _lineart(image)
    raise ValueError(f"unknown style {style!r} (expected one of {', '.join(STYLES)})")


def _colour(image: Image.Image, hue: float, saturation: float, brightness: float) -> Image.Image:
    """Rotate hue by ``hue`` turns and scale saturation and value."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue * 256.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * brightness, 0, 255)
    return Image.fromarray(hsv.round().astype(np.uint8), mode="HSV").convert("RGB")


def _grayscale(image: Image.Image, contrast: float) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    gray = np.clip((gray - 128.0) * contrast + 128.0, 0, 255)
    return Image.fromarray(gray.round().astype(np.uint8), mode="L").convert("RGB")


def _halftone(image: Image.Image, cell: int) -> Image.Image:
    """A square dot screen: each ``cell``-pixel cell gets one dot whose area is its mean darkness."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = gray.shape
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.full((rows * cell, cols * cell), 255.0, dtype=np.float32)
    padded[:height, :width] = gray
    darkness = 1.0 - padded.reshape(rows, cell, cols, cell).mean(axis=(1, 3)) / 255.0
    darkness = np.clip((darkness - _PAPER) / (1.0 - _PAPER), 0.0, 1.0)  # pale tints print as bare paper
    radius = cell * 0.6 * np.sqrt(darkness)  # dot area proportional to darkness; 0.6 lets dots merge when dark
    offset = np.arange(cell, dtype=np.float32) - (cell - 1) / 2.0
    distance = np.sqrt(offset[:, None] ** 2 + offset[None, :] ** 2)  # (cell, cell)
    dots = distance[None, :, None, :] < radius[:, None, :, None]  # (rows, cell, cols, cell)
    ink = dots.reshape(rows * cell, cols * cell)[:height, :width] | (gray < _INK_LEVEL)
    return Image.fromarray(np.where(ink, 25, 250).astype(np.uint8), mode="L").convert("RGB")


def _lineart(image: Image.Image) -> Image.Image:
    """Keep ink lines and the boundaries between colour areas (patterns stay visible as outlines)."""
    gray = image.convert("L")
    edges = np.asarray(gray.filter(ImageFilter.FIND_EDGES), dtype=np.uint8)
    ink = (np.asarray(gray) < _INK_LEVEL) | (edges > 40)
    return Image.fromarray(np.where(ink, 20, 252).astype(np.uint8), mode="L").convert("RGB")
