"""Training views of a crop: strong and weak views, and drawing-style changes.

The identity-aware recipe (Soykan et al. 2023) contrasts two *strong* views of a face (and of a body)
and ties a *weak* face view to a *weak* body view of the same instance. Comics add a problem photos do
not have: one character is drawn by many hands, printed in colour or in black and white, halftoned,
recoloured. The style operations below (grayscale, posterise, pixelate, halftone, line-art, hue shift)
change how a character is drawn while keeping who it is, so contrasting across them teaches the
network to ignore the drawing style.

Every view starts from the same letterbox as inference (:func:`comicid.data.preprocess.letterbox`:
the crop centred on a white square), so a training view never sees a stretched body, and ends as a
float ``(3, S, S)`` tensor normalised with the backbone's mean/std. All randomness comes from torch's
global generator, so seeding torch (per worker, per item) makes views reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torch import Tensor
from torchvision.transforms import v2

from comicid.errors import ConfigError
from comicid.data.preprocess import letterbox

#: Side of the square a crop is letterboxed to before random cropping, relative to the output size.
#: A margin above 1 keeps detail for crops that zoom in.
_CANVAS_SCALE = 1.25

StyleOp = Callable[[Image.Image], Image.Image]


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()).item())


def _randint(low: int, high: int) -> int:
    """An integer in ``[low, high]`` (inclusive) from torch's generator."""
    return int(torch.randint(low, high + 1, ()).item())


def pixelate(image: Image.Image) -> Image.Image:
    """Blocks of 2-5 pixels: low-resolution sprites and heavily compressed scans."""
    factor = _randint(2, 5)
    width, height = image.size
    small = image.resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX)
    return small.resize((width, height), Image.Resampling.NEAREST)


def posterise(image: Image.Image) -> Image.Image:
    """2-4 bits per channel: flat colouring with few inks."""
    return ImageOps.posterize(image, _randint(2, 4))


def halftone(image: Image.Image) -> Image.Image:
    """Print dots: each channel becomes a grid of ink dots whose area follows the local darkness.

    Cells are 3-6 pixels; a pixel is inked (channel value 0) when it lies within the dot radius of its
    cell centre, the radius growing with the square root of the cell's mean darkness so that ink area is
    proportional to darkness, as in print.
    """
    cell = _randint(3, 6)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    height, width = pixels.shape[:2]
    rows, cols = -(-height // cell), -(-width // cell)
    padded = np.ones((rows * cell, cols * cell, 3), dtype=np.float32)
    padded[:height, :width] = pixels
    darkness = 1.0 - padded.reshape(rows, cell, cols, cell, 3).mean(axis=(1, 3))  # (rows, cols, 3)
    darkness = darkness.repeat(cell, axis=0).repeat(cell, axis=1)[:height, :width]
    offset = (np.arange(cell, dtype=np.float32) + 0.5) - cell / 2
    y = np.tile(offset, rows)[:height, None]
    x = np.tile(offset, cols)[None, :width]
    distance = np.sqrt(x * x + y * y)[..., None]  # (H, W, 1) from the cell centre
    radius = cell * 0.75 * np.sqrt(darkness)  # 0.75 * cell covers the whole cell at full darkness
    inked = distance < radius
    return Image.fromarray(np.where(inked, 0, 255).astype(np.uint8), mode="RGB")


def line_art(image: Image.Image) -> Image.Image:
    """Black lines on white: the inked drawing before colouring (edges of the luminance)."""
    edges = image.convert("L").filter(ImageFilter.FIND_EDGES)
    lines = ImageOps.invert(ImageOps.autocontrast(edges))
    threshold = _randint(150, 230)
    return lines.point(lambda value: 255 if value > threshold else 0).convert("RGB")


def grayscale(image: Image.Image) -> Image.Image:
    """Black-and-white printing."""
    return image.convert("L").convert("RGB")


def hue_shift(image: Image.Image) -> Image.Image:
    """Any hue rotation: recoloured editions and palette swaps of the same design."""
    return v2.functional.adjust_hue(image, _uniform(-0.5, 0.5))


STYLE_OPS: dict[str, StyleOp] = {
    "grayscale": grayscale,
    "posterise": posterise,
    "pixelate": pixelate,
    "halftone": halftone,
    "lineart": line_art,
    "hue": hue_shift,
}


def check_style_ops(ops: Sequence[str], where: str) -> None:
    """A :class:`ConfigError` naming ``where`` (a config key) when ``ops`` has a name not in ``STYLE_OPS``."""
    unknown = [name for name in ops if name not in STYLE_OPS]
    if unknown:
        raise ConfigError(f"{where}: unknown {unknown}; choose from {sorted(STYLE_OPS)}")


class RandomStyle:
    """With probability ``p``, redraw the crop in one style picked uniformly from ``ops``."""

    def __init__(self, ops: Sequence[str], p: float) -> None:
        unknown = [name for name in ops if name not in STYLE_OPS]
        if unknown:
            raise ConfigError(f"unknown style augmentation(s) {unknown}; choose from {sorted(STYLE_OPS)}")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"style probability must be in [0, 1], got {p}")
        self.ops = [STYLE_OPS[name] for name in ops]
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if not self.ops or torch.rand(()).item() >= self.p:
            return image
        return self.ops[_randint(0, len(self.ops) - 1)](image)


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of the training views (the defaults follow SimCLR, with drawing styles added).

    ``strong_scale`` is the RandomResizedCrop area range of a strong view, ``weak_scale`` that of a
    weak view; ``style_ops``/``style_p`` pick and apply the drawing-style changes to strong views
    only (``weak_style_p`` for weak views, 0 by default: the weak face/body pair keeps the same style).
    """

    strong_scale: tuple[float, float] = (0.35, 1.0)
    weak_scale: tuple[float, float] = (0.75, 1.0)
    jitter: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.3
    style_ops: tuple[str, ...] = ("grayscale", "posterise", "pixelate", "halftone", "lineart", "hue")
    style_p: float = 0.5
    weak_style_p: float = 0.0
    flip: bool = True


class _Letterbox:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        return letterbox(image, self.size)


def _to_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def _framing(size: int, style_p: float, scale: tuple[float, float], ratio: tuple[float, float],
             config: AugmentConfig) -> list[Callable]:
    """What every view starts with: letterbox on a canvas, maybe a drawing style, a random crop, a flip."""
    ops: list[Callable] = [
        _Letterbox(round(size * _CANVAS_SCALE)),
        RandomStyle(config.style_ops, style_p),
        v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True),
    ]
    if config.flip:
        ops.append(v2.RandomHorizontalFlip())
    return ops


def strong_view(size: int, mean: Sequence[float], std: Sequence[float],
                config: AugmentConfig = AugmentConfig()) -> Callable[[Image.Image], Tensor]:
    """Random crop, flip, colour jitter, grayscale, blur and a drawing style: PIL crop -> (3, S, S)."""
    j = config.jitter
    ops = _framing(size, config.style_p, config.strong_scale, (0.75, 1.333), config) + [
        v2.RandomApply([v2.ColorJitter(j, j, j, min(0.1, j / 4))], p=config.jitter_p),
        v2.RandomGrayscale(config.grayscale_p),
        v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=config.blur_p),
    ]
    return v2.Compose(ops + _to_tensor(mean, std))


def weak_view(size: int, mean: Sequence[float], std: Sequence[float],
              config: AugmentConfig = AugmentConfig()) -> Callable[[Image.Image], Tensor]:
    """A mild crop and a flip: the face and body of one instance stay recognisably the same picture."""
    ops = _framing(size, config.weak_style_p, config.weak_scale, (0.9, 1.111), config)
    return v2.Compose(ops + _to_tensor(mean, std))


def clean_view(size: int, mean: Sequence[float], std: Sequence[float]) -> Callable[[Image.Image], Tensor]:
    """Exactly the inference preprocessing (letterbox + normalise), for validation."""
    return v2.Compose([_Letterbox(size)] + _to_tensor(mean, std))


def reid_view(size: int, mean: Sequence[float], std: Sequence[float], pad: float = 0.08, erasing_p: float = 0.5,
              flip: bool = True, style_ops: Sequence[str] = (), style_p: float = 0.0
              ) -> Callable[[Image.Image], Tensor]:
    """The BoT re-ID training view: letterbox, maybe a drawing style, flip, pad-and-crop, random erasing.

    ``pad`` is the padding as a fraction of ``size`` (BoT pads 10 px of a 256x128 person crop: about
    0.04-0.08); the crop back to ``size`` then shifts the character by up to that much. Random
    erasing (Zhong et al.) blanks a rectangle of 2-40 % of the area with probability ``erasing_p``,
    after normalisation, so that no single part (a hat, a logo) carries the identity alone.
    """
    ops: list[Callable] = [_Letterbox(size), RandomStyle(style_ops, style_p)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    padding = round(pad * size)
    if padding > 0:
        ops.append(v2.RandomCrop(size, padding=padding, fill=255))
    ops += _to_tensor(mean, std)
    if erasing_p > 0:
        ops.append(v2.RandomErasing(p=erasing_p, scale=(0.02, 0.4), value=0))
    return v2.Compose(ops)
