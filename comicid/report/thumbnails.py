"""Small pictures for the HTML report: pages with coloured boxes, crop thumbnails, data URIs.

Everything is scaled down and JPEG-encoded before it is embedded, because the report must stay a
single file of a few MB even for a collection of thousands of instances: a page is at most
``max_width`` px wide (and twice that tall, so that long webtoon strips stay bounded too), a crop at
most ``max_side`` px on its longer side.

Colours come from :func:`palette`, which depends only on the identities it is given (never on hash
seeds), so two reports of the same assignments look the same.
"""

from __future__ import annotations

import base64
import colorsys
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]

#: Colour of boxes whose instance has no identity (unassigned, or unlabelled without assignments).
UNKNOWN_COLOUR: RGB = (128, 128, 128)
MISTAKE_COLOUR: RGB = (220, 0, 0)
#: Successive hues differ by the golden angle, so neighbours in the size order never look alike.
_GOLDEN_ANGLE = 0.381966
JPEG_QUALITY = 75
LABEL_MAX_CHARS = 24
LINE_WIDTH = 3
FONT_SIZE = 13


def palette(identities: Sequence[str]) -> dict[str, RGB]:
    """A colour per identity, by position in ``identities`` (pass them largest first).

    Hues walk the colour wheel by the golden angle and alternate between two brightness levels,
    so the largest identities, which fill most of the pages, get the most distinct colours.
    """
    colours: dict[str, RGB] = {}
    for rank, identity in enumerate(identities):
        hue = (rank * _GOLDEN_ANGLE) % 1.0
        value = 0.9 if rank % 2 == 0 else 0.7
        red, green, blue = colorsys.hsv_to_rgb(hue, 0.8, value)
        colours[identity] = (round(red * 255), round(green * 255), round(blue * 255))
    return colours


def css_colour(colour: RGB) -> str:
    """``#rrggbb`` for inline CSS."""
    return "#{:02x}{:02x}{:02x}".format(*colour)


def text_colour(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background`` (relative luminance)."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


@dataclass(frozen=True)
class DrawnBox:
    """One box to draw on a page, in page pixels; ``label`` None draws the outline only."""

    x0: float
    y0: float
    x1: float
    y1: float
    colour: RGB
    label: str | None = None
    mistake: bool = False


def _scaled_size(width: int, height: int, max_width: int, max_height: int) -> tuple[float, tuple[int, int]]:
    scale = min(1.0, max_width / width, max_height / height)
    return scale, (max(1, round(width * scale)), max(1, round(height * scale)))


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], colour: RGB,
                      width: int, dash: float = 7.0) -> None:
    x0, y0, x1, y1 = box
    for start, end in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
        steps = max(1, int(length // (2 * dash)) + 1)
        for step in range(steps):
            t0 = min(1.0, 2 * step * dash / max(length, 1e-9))
            t1 = min(1.0, (2 * step + 1) * dash / max(length, 1e-9))
            draw.line([(start[0] + (end[0] - start[0]) * t0, start[1] + (end[1] - start[1]) * t0),
                       (start[0] + (end[0] - start[0]) * t1, start[1] + (end[1] - start[1]) * t1)],
                      fill=colour, width=width)


def _cross(draw: ImageDraw.ImageDraw, x: float, y: float, size: float) -> None:
    """A red ✗ on white at (x, y), drawn with lines so that it needs no font glyph."""
    draw.rectangle((x, y, x + size, y + size), fill=(255, 255, 255), outline=MISTAKE_COLOUR)
    inset = size * 0.2
    draw.line([(x + inset, y + inset), (x + size - inset, y + size - inset)], fill=MISTAKE_COLOUR, width=3)
    draw.line([(x + inset, y + size - inset), (x + size - inset, y + inset)], fill=MISTAKE_COLOUR, width=3)


def _label(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
           x: float, y: float, text: str, colour: RGB) -> None:
    """The identity id on a tab of its colour, above the box when there is room, else inside it."""
    if len(text) > LABEL_MAX_CHARS:
        text = text[:LABEL_MAX_CHARS - 3] + "..."
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    height = bottom - top + 4
    y = y - height if y >= height else y
    draw.rectangle((x, y, x + right - left + 6, y + height), fill=colour)
    draw.text((x + 3 - left, y + 2 - top), text, fill=text_colour(colour), font=font)


def page_thumbnail(page: Image.Image, boxes: Sequence[DrawnBox], max_width: int = 900) -> Image.Image:
    """``page`` scaled to at most ``max_width`` px wide, its boxes drawn on top.

    A mistake gets a dashed red outline just outside its box and a red ✗ at its top-right corner,
    so that it shows even when its identity colour happens to be red.
    """
    scale, size = _scaled_size(page.width, page.height, max_width, 2 * max_width)
    thumb = page.convert("RGB").resize(size, Image.Resampling.LANCZOS) if scale < 1 else page.convert("RGB")
    draw = ImageDraw.Draw(thumb)
    font = ImageFont.load_default(size=FONT_SIZE)
    for item in boxes:
        x0, y0, x1, y1 = (value * scale for value in (item.x0, item.y0, item.x1, item.y1))
        draw.rectangle((x0, y0, x1, y1), outline=item.colour, width=LINE_WIDTH)
        if item.mistake:
            gap = LINE_WIDTH + 1
            _dashed_rectangle(draw, (x0 - gap, y0 - gap, x1 + gap, y1 + gap), MISTAKE_COLOUR, LINE_WIDTH)
            _cross(draw, x1 - 14, y0, 14)
    for item in boxes:  # labels last, so that no box line crosses a label
        if item.label is not None:
            _label(draw, font, item.x0 * scale, item.y0 * scale, item.label, item.colour)
    return thumb


def crop_thumbnail(crop: Image.Image, max_side: int = 112) -> Image.Image:
    """``crop`` scaled so that its longer side is at most ``max_side`` px (never enlarged)."""
    _, size = _scaled_size(crop.width, crop.height, max_side, max_side)
    return crop.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def data_uri(image: Image.Image, quality: int = JPEG_QUALITY) -> str:
    """``image`` as an embeddable ``data:image/jpeg;base64,...`` URI."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
