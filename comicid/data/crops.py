"""The one crop rule of comicid.

Faces follow the identity-aware re-ID paper (Soykan et al. 2023): the annotated box is scaled by 1.2
about its centre and made square (side = the longer scaled side), because tight face boxes cut off
hair, ears and headwear that carry much of a drawn character's identity. Bodies and whole characters
are cut exactly as given.

Parts of a box that fall outside the page are padded with white, the colour of paper, rather than
clamped: clamping would shift and rescale the character relative to crops of the same box size,
and edge replication smears panel borders into the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from comicid.data.images import BACKGROUND_RGB

FACE_SCALE = 1.2
#: Boxes whose shorter side is below this many pixels carry almost no identity; they are reported.
MIN_BOX_SIDE = 4.0


@dataclass(frozen=True)
class Box:
    """A box in pixels, ``x1``/``y1`` exclusive; coordinates may lie outside the image."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def is_tiny(self) -> bool:
        return min(self.width, self.height) < MIN_BOX_SIDE


def face_box(box: Box, scale: float = FACE_SCALE) -> Box:
    """Scale about the centre, then square: the paper's face rule."""
    side = max(box.width, box.height) * scale
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    return Box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def crop_box_for(kind: str, box: Box) -> Box:
    """The box actually cut for a part of ``kind`` (face, body or character)."""
    return face_box(box) if kind == "face" else box


#: A crop may pad a page with white, but not without bound: the cut box may cover at most this many
#: times the page's pixels, and never more than :data:`MAX_CROP_PIXELS` (about 400 MB as RGBA), so
#: that a 600-byte annotation file cannot ask for a 10-gigabyte crop.
MAX_CROP_PAGE_RATIO = 4.0
MAX_CROP_PIXELS = 100_000_000


def check_box_fits(kind: str, box: Box, page_size: tuple[int, int]) -> str | None:
    """Why the crop of ``box`` cannot be cut from a page of ``page_size`` (width, height), or None.

    The box actually cut (faces scaled and squared) must overlap the page, and its padded size must
    stay within :data:`MAX_CROP_PAGE_RATIO` times the page and :data:`MAX_CROP_PIXELS`.
    """
    width, height = page_size
    cut_box = crop_box_for(kind, box)
    described = f"box ({box.x0:g}, {box.y0:g}, {box.x1:g}, {box.y1:g})"
    if cut_box.x1 <= 0 or cut_box.y1 <= 0 or cut_box.x0 >= width or cut_box.y0 >= height:
        return f"{described} lies outside its {width}x{height} image"
    pixels = (math.ceil(cut_box.x1) - math.floor(cut_box.x0)) * (math.ceil(cut_box.y1) - math.floor(cut_box.y0))
    if pixels > MAX_CROP_PAGE_RATIO * width * height or pixels > MAX_CROP_PIXELS:
        return (f"{described} asks for a {pixels:,}-pixel crop of a {width}x{height} image "
                f"(at most {MAX_CROP_PAGE_RATIO:g}x the image and {MAX_CROP_PIXELS:,} pixels)")
    return None


def cut(image: Image.Image, box: Box) -> Image.Image:
    """Cut ``box`` (rounded outward to whole pixels) from an RGB image, padding outside with white."""
    x0, y0 = math.floor(box.x0), math.floor(box.y0)
    x1, y1 = max(math.ceil(box.x1), x0 + 1), max(math.ceil(box.y1), y0 + 1)
    width, height = image.size
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return image.crop((x0, y0, x1, y1))
    canvas = Image.new("RGB", (x1 - x0, y1 - y0), BACKGROUND_RGB)
    inside = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        canvas.paste(image.crop(inside), (inside[0] - x0, inside[1] - y0))
    return canvas


def crop_part(image: Image.Image, kind: str, box: Box | None) -> Image.Image:
    """The crop of one manifest row: the whole image when there is no box."""
    if box is None:
        return image
    return cut(image, crop_box_for(kind, box))
