"""Pages of a synthetic book: planning (layout, who appears where), rendering, and manifest rows.

A book is planned first from its own random stream (panel layout of every page, the cast of every
panel, the dev/test split), then each page is rendered from a stream of its own. Planning the whole
book up front is what lets every identity appear at least three times and every sequence hold exactly
four panels; separate streams keep pages independent of each other's random draws.

Nuisances decided here (the per-figure ones live in :mod:`.characters`):

* scale and depth (full, medium and close-up shots; head size varies per figure), 1-3 figures per panel, random
  overlap order, so figures occlude each other;
* panel borders cutting off feet or one side of a figure (never the face of a visible face);
* close-up panels where only the head and shoulders fit: a face without a body row;
* figures seen from behind: a body without a face row;
* speech balloons over the top of the panel, sometimes over a head;
* backgrounds (sky, city, room, speed lines) that change the pixels around every body crop.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from comicid.data.synth.characters import INK, Identity, draw_figure, sample_appearance, sample_identities
from comicid.data.synth.speech import NARRATION_RATE, SFX_RATE, BookWorld, narration, sound_effect, speech_line
from comicid.data.synth.styles import apply_style, sample_style
from comicid.atomic import atomic_write

Rect = tuple[int, int, int, int]

MIN_APPEARANCES = 3
#: Probability that a panel is a close-up of one head (face-only row) and that a figure faces away
#: (body-only row); together they give about 10% of each.
CLOSEUP_RATE = 0.16
FACING_AWAY_RATE = 0.11
#: Probability that a whole page shares one style (a grayscale chapter) instead of one per panel.
PAGE_STYLE_RATE = 0.35
SPEAK_RATE = 0.6
SEQUENCE_LENGTH = 4
MAX_PANELS_PER_PAGE = 8

_SYLLABLES = ("ka", "mi", "to", "ra", "ne", "zu", "lo", "bi", "sa", "ren", "jo", "ta", "vi", "ko", "mu", "el")
_CATCHPHRASES = ("GREAT GEARS!", "BY THE MOON!", "HOLY RIVETS!", "EASY PEASY.", "NOT AGAIN...", "SUPERB!",
                 "OH BROTHER.", "YIPPEE!", "CALM DOWN.", "ROGER THAT.", "WHATEVER.", "HOT SOUP!",
                 "JUMPING JACKS!", "SO TIRED...", "BOOYAH!", "GOOD GRIEF.")
_LINES = ("WHERE IS {other}?", "{other}, LOOK OUT!", "I KNEW IT!", "WE HAVE TO HURRY.", "THAT'S NOT FAIR!",
          "HA HA HA!", "WAIT FOR ME, {other}!", "DID YOU HEAR THAT?", "I'M {name}. NICE TO MEET YOU.",
          "THIS WAY!", "HMM...", "NO WAY!", "{other} WAS RIGHT.", "LET'S GO HOME.", "WHAT IS THAT THING?",
          "I'M HUNGRY.", "TRUST ME.", "IT'S TOO QUIET HERE.", "{other}, YOU'RE LATE!", "ONE MORE TIME!")
_PASTELS = ((250, 240, 220), (220, 236, 250), (232, 250, 226), (250, 226, 236), (240, 236, 250),
            (255, 250, 210), (230, 230, 230))


@dataclass(frozen=True)
class PanelPlan:
    """One panel: its key (``p003-k2``), rectangle in page pixels, cast (identity indices) and kind."""

    key: str
    rect: Rect
    cast: tuple[int, ...]
    closeup: bool
    sequence: str


@dataclass(frozen=True)
class PagePlan:
    name: str
    panels: tuple[PanelPlan, ...]


@dataclass(frozen=True)
class BookPlan:
    """Everything decided before drawing a book."""

    name: str
    seed: int
    identities: tuple[Identity, ...]
    splits: dict[str, str]
    pages: tuple[PagePlan, ...]
    page_size: tuple[int, int]
    #: ``None``: balloons say catchphrases and stock lines (the original synth); else manga-like speech.
    world: BookWorld | None = None


@dataclass(frozen=True)
class Lettering:
    """One piece of text drawn in a panel: ``kind`` is speech, narration or sfx; ``rect`` in panel
    pixels; ``speaker`` the identity id of a balloon's speaker ("" for narration and sound effects)."""

    kind: str
    text: str
    rect: Rect
    speaker: str = ""
    tail: tuple[float, float] | None = None


# ---------------------------------------------------------------- planning


def _names(rng: random.Random, count: int) -> list[str]:
    pool = sorted({(a + b).upper() for a in _SYLLABLES for b in _SYLLABLES if a != b})
    return rng.sample(pool, count)


def _catchphrases(rng: random.Random, count: int) -> list[str]:
    phrases = list(_CATCHPHRASES)
    rng.shuffle(phrases)
    return [phrases[i % len(phrases)] for i in range(count)]


def _panel_counts(rng: random.Random, pages: int) -> list[int]:
    """Panels per page (4-8), adjusted so the book splits into whole sequences of four."""
    counts = [rng.choice((4, 5, 5, 6, 6, 7)) for _ in range(pages)]
    missing = -sum(counts) % SEQUENCE_LENGTH
    for index in range(pages - 1, -1, -1):
        add = min(missing, MAX_PANELS_PER_PAGE - counts[index])
        counts[index] += add
        missing -= add
    return counts


def _row_sizes(rng: random.Random, panels: int) -> list[int]:
    low, high = max(2, math.ceil(panels / 3)), min(4, panels)
    rows = rng.randint(low, max(low, high))
    sizes = [1] * rows
    for _ in range(panels - rows):
        sizes[rng.choice([i for i, size in enumerate(sizes) if size < 3])] += 1
    return sizes


def _layout(rng: random.Random, panels: int, page_size: tuple[int, int]) -> list[Rect]:
    """Rows of panels with gutters, in reading order (left to right, top to bottom)."""
    width, height = page_size
    margin, gutter = round(width * 0.04), round(width * 0.018)
    sizes = _row_sizes(rng, panels)
    heights = [rng.uniform(0.8, 1.25) for _ in sizes]
    usable_h = height - 2 * margin - gutter * (len(sizes) - 1)
    rects: list[Rect] = []
    y = float(margin)
    for size, weight in zip(sizes, heights, strict=True):
        row_h = usable_h * weight / sum(heights)
        widths = [rng.uniform(0.7, 1.4) for _ in range(size)]
        usable_w = width - 2 * margin - gutter * (size - 1)
        x = float(margin)
        for w in widths:
            panel_w = usable_w * w / sum(widths)
            rects.append((round(x), round(y), round(x + panel_w), round(y + row_h)))
            x += panel_w + gutter
        y += row_h + gutter
    return rects


def _max_cast(rect: Rect) -> int:
    ratio = (rect[2] - rect[0]) / (rect[3] - rect[1])
    return 1 if ratio < 0.55 else 2 if ratio < 0.95 else 3


def _choose_cast(rng: random.Random, counts: list[int], weights: list[float], size: int) -> tuple[int, ...]:
    """The ``size`` identities that most need an appearance: first those below the minimum, then by
    frequency weight (main characters appear more often), with jitter so the cast mixes."""
    def need(index: int) -> tuple[bool, float]:
        return counts[index] >= MIN_APPEARANCES, counts[index] / weights[index] + rng.uniform(0, 1.5)

    chosen = sorted(range(len(counts)), key=need)[:size]
    for index in chosen:
        counts[index] += 1
    rng.shuffle(chosen)
    return tuple(chosen)


def plan_book(seed: int, book: int, characters: int, pages: int, page_size: tuple[int, int]) -> BookPlan:
    """Plan book number ``book``: identities ``b{book}-c{i}``, layouts, casts, sequences and splits."""
    rng = random.Random(f"comicid-synth/{seed}/book/{book}")
    name = f"b{book}"
    identities = sample_identities(rng, name, characters, _names(rng, characters), _catchphrases(rng, characters))
    order = [identity.id for identity in identities]
    rng.shuffle(order)
    half = math.ceil(characters / 2)
    splits = {identity_id: ("dev" if rank < half else "test") for rank, identity_id in enumerate(order)}
    return BookPlan(name=name, seed=seed, identities=tuple(identities), splits=splits,
                    pages=_plan_pages(rng, characters, pages, page_size), page_size=page_size)


def _plan_pages(rng: random.Random, characters: int, pages: int, page_size: tuple[int, int]) -> tuple[PagePlan, ...]:
    """Layouts, closeups, casts (indices into a cast of ``characters``) and sequences of a book's pages.

    Shared by the drawn and the real-art planners so both books are laid out the same way.
    """
    weights = [1.0 / (1.0 + 0.25 * i) for i in range(characters)]  # main characters appear more often
    counts = [0] * characters
    page_plans, panel_number = [], 0
    for page, panels in enumerate(_panel_counts(rng, pages)):
        page_name = f"p{page:03d}"
        plans = []
        for k, rect in enumerate(_layout(rng, panels, page_size)):
            closeup = rng.random() < CLOSEUP_RATE
            limit = 1 if closeup else min(_max_cast(rect), characters)
            size = rng.choices((1, 2, 3)[:limit], weights=(0.3, 0.45, 0.25)[:limit])[0]
            plans.append(PanelPlan(key=f"{page_name}-k{k}", rect=rect, cast=_choose_cast(rng, counts, weights, size),
                                   closeup=closeup, sequence=f"s{panel_number // SEQUENCE_LENGTH:04d}"))
            panel_number += 1
        page_plans.append(PagePlan(name=page_name, panels=tuple(plans)))
    return tuple(page_plans)


# ---------------------------------------------------------------- backgrounds and balloons


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    kind = rng.choices(("plain", "tint", "sky", "city", "room", "speed"), weights=(0.3, 0.15, 0.15, 0.15, 0.15, 0.1))[0]
    image = Image.new("RGB", size, (255, 255, 255) if kind in ("plain", "speed") else rng.choice(_PASTELS))
    draw = ImageDraw.Draw(image)
    horizon = round(height * rng.uniform(0.55, 0.8))
    if kind == "sky":
        for y in range(horizon):
            t = y / max(1, horizon)
            draw.line(((0, y), (width, y)), fill=(int(150 + 100 * t), int(200 + 50 * t), 255))
        draw.rectangle((0, horizon, width, height), fill=rng.choice(((170, 210, 140), (220, 200, 160))))
        draw.line(((0, horizon), (width, horizon)), fill=INK, width=2)
    elif kind == "city":
        x = -rng.randint(0, 30)
        while x < width:
            w, top = rng.randint(40, 90), round(height * rng.uniform(0.1, 0.5))
            tone = rng.randint(170, 215)
            draw.rectangle((x, top, x + w, horizon), fill=(tone, tone, tone + 10), outline=INK, width=2)
            for wy in range(top + 10, horizon - 12, 22):
                for wx in range(x + 8, x + w - 12, 18):
                    draw.rectangle((wx, wy, wx + 8, wy + 10), fill=(250, 240, 170))
            x += w + rng.randint(0, 15)
        draw.line(((0, horizon), (width, horizon)), fill=INK, width=2)
    elif kind == "room":
        draw.rectangle((0, horizon, width, height), fill=rng.choice(((200, 170, 130), (190, 190, 200))))
        draw.line(((0, horizon), (width, horizon)), fill=INK, width=2)
        wx = rng.randint(0, max(1, width - 90))
        draw.rectangle((wx, round(height * 0.12), wx + 80, round(height * 0.42)), fill=(200, 230, 255), outline=INK,
                       width=3)
    elif kind == "speed":
        cx, cy = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.6)
        for i in range(48):
            a = 2 * math.pi * i / 48 + rng.uniform(-0.03, 0.03)
            reach = max(width, height)
            draw.line(((cx + 0.45 * reach * math.cos(a), cy + 0.45 * reach * math.sin(a)),
                       (cx + reach * math.cos(a), cy + reach * math.sin(a))), fill=(150, 150, 150), width=2)
    return image


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= max_width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_balloon(image: Image.Image, text: str, target: tuple[float, float], placed: list[Rect],
                  font: ImageFont.FreeTypeFont) -> Rect:
    """An oval balloon near the top of the panel with a tail pointing at ``target`` (the speaker's head)."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    wrapped = _wrap(text, font, min(width * 0.55, 190))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), wrapped, font=font, align="center")
    a = min((right - left) * 0.68 + 8, width / 2 - 3)
    b = (bottom - top) * 0.72 + 8
    cx = min(max(target[0], a + 3), width - a - 3)
    y = min(max(4.0, target[1] - 2 * b - height * 0.08), height * 0.3)  # close above the head when there is room
    rect = (round(cx - a), round(y), round(cx + a), round(y + 2 * b))
    while any(_overlaps(rect, other) for other in placed) and y < height * 0.45:
        y += 6
        rect = (round(cx - a), round(y), round(cx + a), round(y + 2 * b))
    placed.append(rect)
    cy = y + b
    tx, ty = target
    if ty > cy + b:
        draw.polygon(((cx - a * 0.25, cy + b * 0.6), (cx + a * 0.05, cy + b * 0.6), (tx, ty)), fill=(255, 255, 255),
                     outline=INK, width=2)
    draw.ellipse(rect, fill=(255, 255, 255), outline=INK, width=2)
    if ty > cy + b:  # hide the tail's outline inside the balloon
        draw.polygon(((cx - a * 0.25 + 2, cy + b * 0.6), (cx + a * 0.05 - 2, cy + b * 0.6), (cx - a * 0.1, cy + b)),
                     fill=(255, 255, 255))
    draw.multiline_text((cx - (right - left) / 2 - left, cy - (bottom - top) / 2 - top), wrapped, fill=INK, font=font,
                        align="center")
    return rect


def _draw_narration(image: Image.Image, text: str, font: ImageFont.FreeTypeFont) -> Rect:
    """A rectangular caption box in the panel's bottom-left corner (narration has no tail, no speaker)."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    wrapped = _wrap(text, font, min(width * 0.6, 200))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), wrapped, font=font)
    rect = (3, round(height - (bottom - top) - 14), round(min(width - 3, (right - left) + 15)), height - 3)
    draw.rectangle(rect, fill=(255, 250, 205), outline=INK, width=2)
    draw.multiline_text((rect[0] + 6 - left, rect[1] + 5 - top), wrapped, fill=INK, font=font)
    return rect


def _draw_sfx(rng: random.Random, image: Image.Image, text: str, font: ImageFont.FreeTypeFont) -> Rect:
    """Free lettering (a sound effect) somewhere in the lower middle of the panel."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = rng.uniform(4, max(5.0, width - (right - left) - 4))
    y = rng.uniform(height * 0.45, max(height * 0.45 + 1, height - (bottom - top) - 20))
    draw.text((x - left, y - top), text, fill=(200, 30, 30), font=font, stroke_width=2, stroke_fill=(255, 255, 255))
    return round(x), round(y), round(x + right - left), round(y + bottom - top)


def _line(rng: random.Random, speaker: Identity, others: list[Identity]) -> str:
    if rng.random() < 0.3:
        return speaker.catchphrase
    template = rng.choice(_LINES)
    return template.format(name=speaker.name, other=rng.choice(others).name if others else speaker.name)


# ---------------------------------------------------------------- rendering


#: shot -> head radius range as a fraction of the panel height, and cap as a fraction of the width share.
_SHOTS: dict[str, tuple[float, float, float]] = {
    "full": (0.072, 0.1, 0.21), "medium": (0.11, 0.15, 0.22), "closeup": (0.15, 0.21, 0.3)}


@dataclass
class _Placed:
    """A figure placed in a panel, boxes in panel pixels (clipped to the panel)."""

    identity: Identity
    face: Rect | None
    body: Rect | None
    head_top: tuple[float, float]


def _clip(box: Rect, size: tuple[int, int]) -> Rect:
    return max(box[0], 0), max(box[1], 0), min(box[2], size[0]), min(box[3], size[1])


def _area(box: Rect) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _place(rng: random.Random, canvas: Image.Image, identity: Identity, slot: tuple[float, float], count: int,
           shot: str) -> _Placed:
    """Draw one figure into the panel canvas and return its visible boxes.

    ``slot`` is the horizontal range of the head centre, one of ``count`` in the panel. ``shot`` is
    ``full`` (feet near the bottom), ``medium`` (cut at the waist) or ``closeup`` (head and
    shoulders). A face is kept only when the figure faces the reader and at least 60% of the head is
    inside the panel; a body only when the figure is not a close-up and a third of it is inside.
    """
    width, height = canvas.size
    closeup = shot == "closeup"
    away = not closeup and rng.random() < FACING_AWAY_RATE
    appearance = sample_appearance(rng, facing_away=away)
    low, high, width_share = _SHOTS[shot]
    radius = min(height * rng.uniform(low, high), width / count * width_share)
    figure = draw_figure(identity, appearance, radius)
    fx0, fy0, fx1, fy1 = figure.face
    face_w, face_h = fx1 - fx0, fy1 - fy0
    head_x = rng.uniform(*slot)
    if shot == "full":
        feet = height * rng.uniform(0.92, 1.15)
        head_y = feet - (figure.body[3] - (fy0 + fy1) / 2)
    else:
        head_y = height * (rng.uniform(0.45, 0.62) if closeup else rng.uniform(0.3, 0.42))
    head_x = min(max(head_x, face_w / 2 + 2), width - face_w / 2 - 2)  # borders may cut bodies, not faces
    head_y = max(head_y, face_h / 2 + 2)
    ox, oy = round(head_x - (fx0 + fx1) / 2), round(head_y - (fy0 + fy1) / 2)
    canvas.paste(figure.image, (ox, oy), figure.image)
    face = (fx0 + ox, fy0 + oy, fx1 + ox, fy1 + oy)
    body = (figure.body[0] + ox, figure.body[1] + oy, figure.body[2] + ox, figure.body[3] + oy)
    visible_face, visible_body = _clip(face, canvas.size), _clip(body, canvas.size)
    keep_face = not away and _area(visible_face) >= 0.6 * _area(face)
    keep_body = not closeup and _area(visible_body) >= 0.33 * _area(body)
    return _Placed(identity=identity, face=visible_face if keep_face else None,
                   body=visible_body if keep_body else None, head_top=((face[0] + face[2]) / 2, face[1]))


def _slots(rng: random.Random, width: int, count: int) -> list[tuple[float, float]]:
    """Horizontal ranges for the head centres; neighbouring ranges touch, so figures may overlap."""
    step = width / count
    return [(step * (i + 0.35 - 0.1 * rng.random()), step * (i + 0.65 + 0.1 * rng.random())) for i in range(count)]


def _render_panel(rng: random.Random, book: BookPlan, panel: PanelPlan, style: str, font: ImageFont.FreeTypeFont,
                  speech_rng: random.Random | None = None,
                  ) -> tuple[Image.Image, list[_Placed], dict[str, str], list[Lettering]]:
    x0, y0, x1, y1 = panel.rect
    canvas = _background(rng, (x1 - x0, y1 - y0))
    cast = [book.identities[index] for index in panel.cast]
    slots = _slots(rng, canvas.size[0], len(cast))
    draw_order = list(range(len(cast)))
    rng.shuffle(draw_order)  # who stands in front varies, so occlusions vary
    placed: dict[int, _Placed] = {}
    wide = canvas.size[0] > 1.6 * canvas.size[1]
    shot = "closeup" if panel.closeup else "medium" if rng.random() < (0.6 if wide else 0.3) else "full"
    for index in draw_order:
        placed[index] = _place(rng, canvas, cast[index], slots[index], len(cast), shot)
    canvas = apply_style(canvas, style, rng)
    texts: dict[str, str] = {}
    balloons: list[Rect] = []
    lettering: list[Lettering] = []
    for index, identity in enumerate(cast):
        if rng.random() < SPEAK_RATE:
            # Drawn from the picture stream in both modes, so that manga speech leaves every other draw as it was.
            text = _line(rng, identity, [other for other in cast if other is not identity] or list(book.identities))
            if book.world is not None and speech_rng is not None:
                others = [other for other in cast if other is not identity] or \
                    [other for other in book.identities if other is not identity]
                text = speech_line(speech_rng, book.world, identity.id, [(o.id, o.name) for o in others])
            texts[identity.id] = text
            rect = _draw_balloon(canvas, text, placed[index].head_top, balloons, font)
            lettering.append(Lettering("speech", text, rect, identity.id, placed[index].head_top))
    if book.world is not None and speech_rng is not None:
        if speech_rng.random() < NARRATION_RATE:
            text = narration(speech_rng, book.world)
            lettering.append(Lettering("narration", text, _draw_narration(canvas, text, font)))
        if speech_rng.random() < SFX_RATE:
            text = sound_effect(speech_rng)
            lettering.append(Lettering("sfx", text, _draw_sfx(speech_rng, canvas, text, font)))
    return canvas, [placed[index] for index in range(len(cast))], texts, lettering


def _rows(book: BookPlan, page: PagePlan, panel: PanelPlan, image: Path, style: str, placed: list[_Placed],
          texts: dict[str, str], lettering: list[Lettering]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    px, py = panel.rect[0], panel.rect[1]
    panel_text = " ".join(item.text for item in lettering)
    for number, figure in enumerate(placed):
        common = {"identity": figure.identity.id, "instance": f"{panel.key}-i{number}", "book": book.name,
                  "page": page.name, "panel": panel.key, "sequence": panel.sequence,
                  "text": texts.get(figure.identity.id, ""), "role": "", "source": "",
                  "split": book.splits[figure.identity.id], "style": style}
        if book.world is not None:  # as Manga109 is read: every instance gets all the text of its panel
            common.update(text=panel_text, speech=texts.get(figure.identity.id, ""))
        for kind, box in (("face", figure.face), ("body", figure.body)):
            if box is not None:
                rows.append({"image": str(image), "x0": float(box[0] + px), "y0": float(box[1] + py),
                             "x1": float(box[2] + px), "y1": float(box[3] + py), "kind": kind, **common})
    return rows


def render_page(book: BookPlan, page_index: int, image_path: Path,
                lettering_rows: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
    """Draw one page, write it as PNG (atomically) and return its manifest rows (absolute image path).

    ``lettering_rows``, when given, receives one row per piece of text drawn (kind, text, box in page
    pixels, the speaker's instance): the ground truth of OCR and of text-to-instance assignment.
    """
    page = book.pages[page_index]
    rng = random.Random(f"comicid-synth/{book.seed}/{book.name}/{page.name}")
    speech_rng = random.Random(f"comicid-synth/{book.seed}/{book.name}/{page.name}/speech")
    width, height = book.page_size
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(9, round(width * 0.017)))
    page_style = sample_style(rng) if rng.random() < PAGE_STYLE_RATE else None
    image = image_path.resolve()
    rows: list[dict[str, object]] = []
    for panel in page.panels:
        style = page_style or sample_style(rng)
        canvas, placed, texts, lettering = _render_panel(rng, book, panel, style, font, speech_rng)
        sheet.paste(canvas, panel.rect[:2])
        draw.rectangle((panel.rect[0] - 1, panel.rect[1] - 1, panel.rect[2], panel.rect[3]), outline=INK, width=3)
        rows.extend(_rows(book, page, panel, image, style, placed, texts, lettering))
        if lettering_rows is not None:
            lettering_rows.extend(_lettering_rows(book, page, panel, image, placed, lettering))
    with atomic_write(image_path, "wb") as handle:
        sheet.save(handle, format="PNG", compress_level=3)
    return rows


def _lettering_rows(book: BookPlan, page: PagePlan, panel: PanelPlan, image: Path, placed: list[_Placed],
                    lettering: list[Lettering]) -> list[dict[str, object]]:
    px, py = panel.rect[0], panel.rect[1]
    instance_of = {figure.identity.id: f"{panel.key}-i{number}" for number, figure in enumerate(placed)}
    return [{"image": str(image), "book": book.name, "page": page.name, "panel": panel.key, "kind": item.kind,
             "text": item.text, "x0": float(item.rect[0] + px), "y0": float(item.rect[1] + py),
             "x1": float(item.rect[2] + px), "y1": float(item.rect[3] + py),
             "instance": instance_of.get(item.speaker, ""), "identity": item.speaker,
             "tail_x": float(item.tail[0] + px) if item.tail else float("nan"),
             "tail_y": float(item.tail[1] + py) if item.tail else float("nan")}
            for item in lettering]
