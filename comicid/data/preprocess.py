"""Crop to model input: letterbox on white, then normalise.

Characters are tall, wide or square; stretching them to a square would change the proportions that
tell a lanky hero from a stocky one. The crop is therefore scaled so that its longer side equals the
model's input size, keeping its aspect, and centred on a white square (the colour of the page, the
same fill the crop rule and the image loader use).

Preprocessing is split in two so that DataLoader workers do the expensive part and send little
data: :func:`letterbox_uint8` (decode-side, 8-bit CHW tensor, 4x smaller than float) and
:func:`normalise_batch` (model-side, on the batch, on the model's device).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from comicid.data.images import BACKGROUND_RGB, to_rgb


def letterbox(image: Image.Image, size: int) -> Image.Image:
    """Scale ``image`` so its longer side is ``size`` pixels and centre it on a white square."""
    image = to_rgb(image)
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != image.size:
        # reducing_gap: big page crops are first shrunk by an integer factor, much faster, same look
        image = image.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    if new_size == (size, size):
        return image
    canvas = Image.new("RGB", (size, size), BACKGROUND_RGB)
    canvas.paste(image, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def letterbox_uint8(image: Image.Image, size: int) -> Tensor:
    """The letterboxed crop as an 8-bit ``(3, size, size)`` tensor."""
    pixels = np.array(letterbox(image, size), dtype=np.uint8)  # (S, S, 3), writable copy
    return torch.from_numpy(pixels).permute(2, 0, 1)


def normalise_batch(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(B, 3, S, S)`` uint8 -> float32 scaled to [0, 1] and normalised per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean_t) / std_t
