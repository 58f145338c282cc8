"""Comic pages composed from real character art: crops of a labelled manifest placed in synthetic panels.

The procedural books of :mod:`comicid.data.synth.pages` are drawn by this project, so a model trained
or benchmarked on them learns one artist. Here the *characters* come from a manifest of real drawings
(e.g. the comicgen figures, with a face box and a whole-figure body per instance, or whole-figure
sprite sets) and only the *page* is synthetic: the same panel layouts, backgrounds, drawing styles,
balloons and occlusion as the procedural books, with real art cut out and pasted into the panels.

What the composed manifest carries, and why:

* **face and body boxes where the source has both** (an instance with a ``face`` row and a ``body``
  row on the same image): the face box is carried through scaling, flipping and placement exactly.
  A whole-figure source (``character`` or ``body`` rows only) gives body rows only; no face box is
  guessed, because a made-up head box would teach and score the fusion on boxes no annotator drew.
  A face-only source (``face`` rows only) gives close-ups with face rows only.
* **identities and splits of the source**: an identity keeps its name and its ``split`` (an
  identity in both ``dev`` and ``test`` is an error), so the dev/test separation of the source holds
  on the pages; each book's cast takes from both splits in proportion.
* **the same character in several panels** of a page and book (every cast member at least three
  times per book when the pages have room), each time a drawing chosen at random from its source
  drawings, flipped half the time and scaled to the shot; ``source`` keeps the source's
  near-duplicate key (or the drawing's file), so two panels showing one drawing are not ranked
  against each other.
* **occlusion**: figures of a panel overlap in a random order, panel borders cut feet and sides,
  medium shots cut the figure at the panel bottom, balloons cover the top of the panel.

Cut-outs: a drawing with an alpha channel is cut along it; an opaque drawing loses the near-white
background connected to its border (its white eyes and teeth stay). Everything is seeded by strings
(``comicid-synth-art/<seed>/...``), so the same arguments give the same bytes. See ``docs/SYNTH.md``.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from tqdm import tqdm

from comicid.data.crops import Box, face_box
from comicid.data.images import load_image
from comicid.data.manifest import from_records, instance_keys, read_manifest, write_manifest
from comicid.data.synth import DEFAULT_PAGE_SIZE, MAX_CHARACTERS, _validate, write_page_boxes
from comicid.data.synth.characters import INK
from comicid.data.synth.pages import (
    _CATCHPHRASES,
    _LINES,
    PAGE_STYLE_RATE,
    SPEAK_RATE,
    PagePlan,
    Rect,
    _area,
    _background,
    _clip,
    _draw_balloon,
    _plan_pages,
    _slots,
)
from comicid.data.synth.styles import STYLE_WEIGHTS, STYLES, apply_style
from comicid.errors import ConfigError
from comicid.atomic import atomic_write

__all__ = ["ArtFigure", "CharacterPool", "DEFAULT_CAST", "generate_art_books", "read_character_pool"]

#: Identities per composed book unless told otherwise.
DEFAULT_CAST = 6
#: Gray level above which an opaque drawing's border-connected pixels count as background paper.
_PAPER_LEVEL = 242
#: Drawings smaller than this (pixel art) are enlarged by pixel repetition, not interpolation.
_PIXEL_ART_SIDE = 48
FloatBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class ArtFigure:
    """One source drawing of an identity.

    ``region`` is the figure's box in the image (``None``: the whole image); ``face`` the face box in
    image pixels or ``None`` when the source has none. ``has_body`` is false for face-only sources.
    """

    identity: str
    image: str
    region: FloatBox | None
    face: FloatBox | None
    has_body: bool
    source: str


@dataclass(frozen=True)
class CharacterPool:
    """The drawings of a character manifest, per identity (identities sorted, drawings in file order)."""

    figures: dict[str, tuple[ArtFigure, ...]]
    splits: dict[str, str]
    skipped_rows: int  # rows without an identity: nothing to compose them as
    unplaced_faces: int  # face rows on another image than their body: their box cannot be carried


def _box(row: object) -> FloatBox | None:
    values = tuple(float(getattr(row, name)) for name in ("x0", "y0", "x1", "y1"))
    return None if any(math.isnan(v) for v in values) else values  # type: ignore[return-value]


def read_character_pool(path: str | Path) -> CharacterPool:
    """Read a manifest-v1 of character drawings into a pool of figures per identity.

    Rows sharing an ``instance`` are one figure: its ``body``/``character`` row gives the drawing and
    region, its ``face`` row (on the same image) the face box. Rows without an identity are counted and
    skipped.

    Raises:
        ManifestError: the manifest is unreadable or invalid.
        ConfigError: an identity has rows in two splits, or fewer than 2 identities remain.
    """
    frame = read_manifest(path)
    frame = frame.assign(_key=instance_keys(frame).to_numpy())
    figures: dict[str, list[ArtFigure]] = {}
    splits: dict[str, set[str]] = {}
    skipped = unplaced = 0
    for _, rows in frame.groupby("_key", sort=False):
        identity = next((value for value in rows["identity"] if value), "")
        if not identity:
            skipped += len(rows)
            continue
        bodies = rows[rows["kind"].isin(("body", "character"))]
        faces = rows[rows["kind"] == "face"]
        body_row = next(bodies.itertuples(), None)
        face_row = next(faces.itertuples(), None)
        source = next((value for value in rows["source"] if value), "")
        if body_row is not None:
            face = None
            if face_row is not None:
                if face_row.image == body_row.image and _box(face_row) is not None:
                    face = _box(face_row)
                else:
                    unplaced += 1
            figure = ArtFigure(identity, body_row.image, _box(body_row), face, True, source or body_row.image)
        else:
            assert face_row is not None  # a group has at least one row, and kinds are face/body/character
            face = _box(face_row)
            if face is None:  # a whole-image face crop
                with Image.open(face_row.image) as opened:
                    face = (0.0, 0.0, float(opened.width), float(opened.height))
            region = face_box(Box(*face))
            figure = ArtFigure(identity, face_row.image, (region.x0, region.y0, region.x1, region.y1), face, False,
                               source or face_row.image)
        figures.setdefault(identity, []).append(figure)
        splits.setdefault(identity, set()).update(value for value in rows["split"] if value)
    mixed = sorted(identity for identity, values in splits.items() if len(values) > 1)
    if mixed:
        raise ConfigError(f"identities {', '.join(mixed[:5])} of '{path}' have rows in more than one split; "
                          "composed pages keep the split by identity, so each identity needs one split")
    if len(figures) < 2:
        raise ConfigError(f"'{path}' has {len(figures)} labelled identities; composing pages needs at least 2")
    return CharacterPool(figures={identity: tuple(figures[identity]) for identity in sorted(figures)},
                         splits={identity: next(iter(splits[identity]), "") for identity in sorted(figures)},
                         skipped_rows=skipped, unplaced_faces=unplaced)


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class ArtBookPlan:
    """Everything decided before drawing a composed book: cast (identity names), layouts, casts per panel."""

    name: str
    seed: int
    cast: tuple[str, ...]
    pages: tuple[PagePlan, ...]
    page_size: tuple[int, int]


def _choose_book_cast(rng: random.Random, pool: CharacterPool, size: int) -> list[str]:
    """``size`` identities, each split represented in proportion to its share of the pool."""
    by_split: dict[str, list[str]] = {}
    for identity in pool.figures:
        by_split.setdefault(pool.splits[identity], []).append(identity)
    total = len(pool.figures)
    quotas = {split: max(1, round(size * len(ids) / total)) if size >= len(by_split) else 0
              for split, ids in sorted(by_split.items())}
    while sum(quotas.values()) > size:
        largest = max(sorted(quotas), key=lambda split: quotas[split])
        quotas[largest] -= 1
    chosen = [identity for split, ids in sorted(by_split.items())
              for identity in rng.sample(ids, min(quotas[split], len(ids)))]
    rest = [identity for identity in pool.figures if identity not in chosen]
    chosen += rng.sample(rest, size - len(chosen))
    rng.shuffle(chosen)
    return chosen


def plan_art_book(seed: int, book: int, pool: CharacterPool, cast_size: int, pages: int,
                  page_size: tuple[int, int]) -> ArtBookPlan:
    """Plan composed book number ``book``: its cast, the layout of every page and who is in each panel."""
    rng = random.Random(f"comicid-synth-art/{seed}/book/{book}")
    cast = _choose_book_cast(rng, pool, cast_size)
    return ArtBookPlan(name=f"b{book}", seed=seed, cast=tuple(cast),
                       pages=_plan_pages(rng, cast_size, pages, page_size), page_size=page_size)


# ---------------------------------------------------------------- cut-outs and placement


@dataclass(frozen=True)
class _Cutout:
    image: Image.Image  # RGBA, tight around the figure's opaque pixels
    face: FloatBox | None  # in cut-out pixels, inside the image


def _alpha(path: str, rgb: Image.Image) -> Image.Image:
    """The drawing's own alpha, or for an opaque drawing the complement of its border-connected paper.

    :func:`load_image` (the one decoder) composites transparency away, which is right for crops but
    not for pasting a figure over a background, so only the alpha channel is read here.
    """
    with Image.open(path) as opened:
        if opened.mode in ("RGBA", "LA", "PA") or (opened.mode == "P" and "transparency" in opened.info):
            return ImageOps.exif_transpose(opened).convert("RGBA").getchannel("A")
    paper = rgb.convert("L").point(lambda v: 255 if v >= _PAPER_LEVEL else 0)
    padded = ImageOps.expand(paper, border=1, fill=255)  # one paper ring: one fill reaches every border
    ImageDraw.floodfill(padded, (0, 0), 128)
    background = np.asarray(padded)[1:-1, 1:-1] == 128
    return Image.fromarray(np.where(background, 0, 255).astype(np.uint8), mode="L")


@lru_cache(maxsize=512)
def _cutout(figure: ArtFigure) -> _Cutout:
    rgb = load_image(figure.image)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(_alpha(figure.image, rgb))
    x0, y0, x1, y1 = figure.region or (0.0, 0.0, float(rgb.width), float(rgb.height))
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    region = rgba.crop((left, top, min(rgb.width, math.ceil(x1)), min(rgb.height, math.ceil(y1))))
    tight = region.getchannel("A").point(lambda v: 255 if v >= 64 else 0).getbbox() or (0, 0, *region.size)
    image = region.crop(tight)
    face = None
    if figure.face is not None:
        fx0, fy0, fx1, fy1 = figure.face
        dx, dy = left + tight[0], top + tight[1]
        face = (max(0.0, fx0 - dx), max(0.0, fy0 - dy), min(float(image.width), fx1 - dx),
                min(float(image.height), fy1 - dy))
        if face[2] - face[0] < 2 or face[3] - face[1] < 2:
            face = None
    return _Cutout(image=image, face=face)


@dataclass
class _Placed:
    identity: str
    face: Rect | None
    body: Rect | None
    head_top: tuple[float, float]
    source: str


def _place(rng: random.Random, canvas: Image.Image, identity: str, figure: ArtFigure, slot: tuple[float, float],
           count: int, shot: str) -> _Placed:
    """Scale, flip and paste one drawing into the panel; return its visible boxes in panel pixels.

    ``full``: the whole figure, feet near the bottom. ``medium``: larger than the panel, cut at its
    bottom. ``closeup``: the face fills a third of the panel height; only a face row is kept. A face
    is kept when 60% of it is inside the panel, a body when a third of it is (as in the procedural
    books).
    """
    width, height = canvas.size
    cut = _cutout(figure)
    if shot == "closeup" and cut.face is None:
        shot = "medium"  # a figure without a face box cannot be framed on its face
    if not figure.has_body:
        shot = "closeup"
    source_w, source_h = cut.image.size
    if shot == "closeup":
        assert cut.face is not None
        scale = height * rng.uniform(0.3, 0.45) / max(1.0, cut.face[3] - cut.face[1])
    elif shot == "medium":
        scale = height * rng.uniform(1.05, 1.45) / source_h
    else:
        scale = height * rng.uniform(0.55, 0.88) / source_h
    scale = min(scale, width / count * (1.5 if shot == "closeup" else 1.1) / source_w)
    size = (max(1, round(source_w * scale)), max(1, round(source_h * scale)))
    pixel_art = max(source_w, source_h) < _PIXEL_ART_SIDE
    sprite = cut.image.resize(size, Image.Resampling.NEAREST if pixel_art else Image.Resampling.BICUBIC)
    face = None if cut.face is None else tuple(value * scale for value in cut.face)
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        face = None if face is None else (size[0] - face[2], face[1], size[0] - face[0], face[3])
    centre_x = rng.uniform(*slot)
    if shot == "closeup":
        assert face is not None
        ox = centre_x - (face[0] + face[2]) / 2
        oy = height * rng.uniform(0.42, 0.58) - (face[1] + face[3]) / 2
    elif shot == "medium":
        ox, oy = centre_x - size[0] / 2, height * rng.uniform(0.04, 0.2)
    else:
        ox, oy = centre_x - size[0] / 2, height * rng.uniform(0.92, 1.08) - size[1]
    if face is not None:  # borders may cut bodies, not faces
        face_w, face_h = face[2] - face[0], face[3] - face[1]
        ox = min(max(ox, 2 - face[0]), width - 2 - face[2]) if face_w < width - 4 else ox
        oy = max(oy, 2 - face[1]) if face_h < height - 4 else oy
    ox, oy = round(ox), round(oy)
    canvas.paste(sprite, (ox, oy), sprite)
    body_box = (ox, oy, ox + size[0], oy + size[1])
    face_box_ = None if face is None else (round(face[0]) + ox, round(face[1]) + oy, round(face[2]) + ox,
                                           round(face[3]) + oy)
    visible_body = _clip(body_box, canvas.size)
    keep_body = figure.has_body and shot != "closeup" and _area(visible_body) >= 0.33 * _area(body_box)
    keep_face = face_box_ is not None and _area(_clip(face_box_, canvas.size)) >= 0.6 * _area(face_box_)
    head = face_box_ if face_box_ is not None else body_box
    return _Placed(identity=identity, face=_clip(face_box_, canvas.size) if keep_face and face_box_ else None,
                   body=visible_body if keep_body else None, head_top=((head[0] + head[2]) / 2, max(0, head[1])),
                   source=figure.source)


# ---------------------------------------------------------------- rendering


def _display_name(identity: str) -> str:
    return identity.replace("_", " ").upper()[:16]


def _line(rng: random.Random, speaker: str, others: list[str]) -> str:
    if rng.random() < 0.3:  # each identity has its own catchphrase, fixed by its name
        return _CATCHPHRASES[zlib.crc32(speaker.encode("utf-8")) % len(_CATCHPHRASES)]
    other = _display_name(rng.choice(others)) if others else _display_name(speaker)
    return rng.choice(_LINES).format(name=_display_name(speaker), other=other)


def _sample_style(rng: random.Random, styles: Sequence[str]) -> str:
    weights = [STYLE_WEIGHTS[STYLES.index(style)] for style in styles]
    return rng.choices(list(styles), weights=weights)[0]


def _render_page(book: ArtBookPlan, pool: CharacterPool, page_index: int, image_path: Path,
                 styles: Sequence[str], page_boxes: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
    """Draw one composed page and return its manifest rows; ``page_boxes`` receives its panel and balloon boxes."""
    page = book.pages[page_index]
    rng = random.Random(f"comicid-synth-art/{book.seed}/{book.name}/{page.name}")
    width, height = book.page_size
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(9, round(width * 0.017)))
    page_style = _sample_style(rng, styles) if rng.random() < PAGE_STYLE_RATE else None
    image = str(image_path.resolve())
    rows: list[dict[str, object]] = []
    for panel in page.panels:
        style = page_style or _sample_style(rng, styles)
        x0, y0, x1, y1 = panel.rect
        canvas = _background(rng, (x1 - x0, y1 - y0))
        cast = [book.cast[index] for index in panel.cast]
        slots = _slots(rng, canvas.size[0], len(cast))
        wide = canvas.size[0] > 1.6 * canvas.size[1]
        shot = "closeup" if panel.closeup else "medium" if rng.random() < (0.6 if wide else 0.3) else "full"
        order = list(range(len(cast)))
        rng.shuffle(order)  # who stands in front varies, so occlusions vary
        placed: dict[int, _Placed] = {}
        for index in order:
            figure = rng.choice(pool.figures[cast[index]])
            placed[index] = _place(rng, canvas, cast[index], figure, slots[index], len(cast), shot)
        canvas = apply_style(canvas, style, rng)
        texts: dict[str, str] = {}
        balloons: list[Rect] = []
        for index, identity in enumerate(cast):
            if rng.random() < SPEAK_RATE:
                texts[identity] = _line(rng, identity, [other for other in cast if other != identity] or list(book.cast))
                _draw_balloon(canvas, texts[identity], placed[index].head_top, balloons, font)
        if page_boxes is not None:
            where = {"image": image, "book": book.name, "page": page.name, "panel": panel.key}
            page_boxes.append({**where, "kind": "panel", "x0": float(x0), "y0": float(y0), "x1": float(x1),
                               "y1": float(y1)})
            page_boxes.extend({**where, "kind": "text", "x0": float(b[0] + x0), "y0": float(b[1] + y0),
                               "x1": float(b[2] + x0), "y1": float(b[3] + y0)} for b in balloons)
        sheet.paste(canvas, (x0, y0))
        draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=INK, width=3)
        for number in range(len(cast)):
            figure_placed = placed[number]
            common = {"identity": figure_placed.identity, "instance": f"{panel.key}-i{number}", "book": book.name,
                      "page": page.name, "panel": panel.key, "sequence": panel.sequence,
                      "text": texts.get(figure_placed.identity, ""), "role": "", "source": figure_placed.source,
                      "split": pool.splits[figure_placed.identity], "style": style}
            for kind, box in (("face", figure_placed.face), ("body", figure_placed.body)):
                if box is not None and _area(box) > 0:
                    rows.append({"image": image, "x0": float(box[0] + x0), "y0": float(box[1] + y0),
                                 "x1": float(box[2] + x0), "y1": float(box[3] + y0), "kind": kind, **common})
    with atomic_write(image_path, "wb") as handle:
        sheet.save(handle, format="PNG", compress_level=3)
    return rows


def generate_art_books(out_dir: Path, characters: str | Path, books: int = 2, cast: int = DEFAULT_CAST,
                       pages: int = 4, seed: int = 0, page_size: tuple[int, int] = DEFAULT_PAGE_SIZE,
                       styles: Sequence[str] = STYLES, progress: bool = True) -> Path:
    """Compose ``books`` books of ``pages`` pages from the drawings of the ``characters`` manifest.

    Each book has ``cast`` identities of the manifest (both splits in proportion); identities keep
    their names and splits, so one identity may recur across books, as a character does across the
    volumes of a series. Writes ``out_dir/pages/b{i}/p{j:03d}.png`` and ``out_dir/manifest.csv``
    (boxes, ``instance``, ``panel``, ``sequence``, ``book``, ``split``, ``source``, ``style``).

    Raises:
        ConfigError: a bad argument (cast larger than the manifest's identities, an unknown style...).
        ManifestError: the character manifest is unreadable.
    """
    width, height = _validate(books, 2, pages, seed, page_size)  # the cast is checked against the pool below
    unknown = [style for style in styles if style not in STYLES]
    if unknown or not styles:
        raise ConfigError(f"styles must be a non-empty subset of {', '.join(STYLES)}, got {', '.join(styles) or 'none'}")
    pool = read_character_pool(characters)
    if isinstance(cast, bool) or not isinstance(cast, int) or not 2 <= cast <= min(len(pool.figures), MAX_CHARACTERS):
        raise ConfigError(f"cast must be between 2 and the {len(pool.figures)} identities of '{characters}', "
                          f"got {cast!r}")
    out_dir = Path(out_dir)
    plans = [plan_art_book(seed, book, pool, cast, pages, (width, height)) for book in range(books)]
    records: list[dict[str, object]] = []
    page_boxes: list[dict[str, object]] = []
    with tqdm(total=books * pages, desc="composed pages", unit="page", disable=not progress) as bar:
        for plan in plans:
            for index, page in enumerate(plan.pages):
                records.extend(_render_page(plan, pool, index, out_dir / "pages" / plan.name / f"{page.name}.png",
                                            tuple(styles), page_boxes))
                bar.update(1)
    frame = from_records(records, source="synth --characters")
    path = write_manifest(frame, out_dir / "manifest.csv")
    write_page_boxes(page_boxes, out_dir)
    return path
