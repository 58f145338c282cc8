"""Letterboxing keeps the aspect ratio and pads with the colour of the page."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from comicid.data.preprocess import letterbox, letterbox_uint8, normalise_batch


def _red_extent(image: Image.Image) -> tuple[int, int]:
    pixels = np.asarray(image).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    rows, cols = np.nonzero(red)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_tall_bar_stays_tall_and_centred_on_white() -> None:
    bar = Image.new("RGB", (20, 100), (255, 0, 0))
    boxed = letterbox(bar, 50)
    assert boxed.size == (50, 50)
    height, width = _red_extent(boxed)
    assert height == 50 and 9 <= width <= 11
    pixels = np.asarray(boxed)
    assert (pixels[:, :15] == 255).all() and (pixels[:, -15:] == 255).all()


def test_wide_crop_is_padded_top_and_bottom() -> None:
    boxed = letterbox(Image.new("RGB", (300, 100), (255, 0, 0)), 30)
    assert _red_extent(boxed) == (10, 30)


def test_transparency_becomes_white() -> None:
    sprite = Image.new("RGBA", (10, 10), (0, 0, 255, 0))
    assert (np.asarray(letterbox(sprite, 8)) == 255).all()


def test_uint8_tensor_and_normalisation() -> None:
    pixels = letterbox_uint8(Image.new("RGB", (4, 4), (255, 0, 51)), 4)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 4, 4)
    images = normalise_batch(pixels[None], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    torch.testing.assert_close(images[0, :, 0, 0], torch.tensor([1.0, -1.0, -0.6]))
