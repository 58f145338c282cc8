"""Synthetic characters: identity traits, per-appearance nuisances, and drawing one figure.

An :class:`Identity` is what stays fixed across a character's appearances, and it is carried mostly
by *shape and pattern* (hair style, face and eye shape, nose, accessories, shirt pattern, build),
because the styles of :mod:`comicid.data.synth.styles` remove or shift colour: a model that only
learns colour fails on grayscale, halftone and line-art panels. An :class:`Appearance` is what
changes every time (expression, arm pose, stance, flip, small rotation, facing away), so that two
crops of one identity are never pixel-identical.

Figures are drawn at :data:`SUPERSAMPLE` times their final size and reduced, which gives smooth
outlines without any anti-aliasing support in ``ImageDraw``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
BoxInt = tuple[int, int, int, int]
Point = tuple[float, float]

SUPERSAMPLE = 2
INK: RGB = (20, 20, 24)

HAIR_STYLES: tuple[str, ...] = ("short", "spiky", "bob", "long", "bun", "bald", "mohawk", "curly", "ponytail")
FACE_SHAPES: tuple[str, ...] = ("round", "oval", "square", "pointed")
EYE_SHAPES: tuple[str, ...] = ("dot", "round", "narrow", "lashes")
NOSES: tuple[str, ...] = ("none", "dot", "hook")
ACCESSORIES: tuple[str, ...] = ("glasses", "hat", "headband", "scarf", "earrings", "scar", "beard")
HAT_STYLES: tuple[str, ...] = ("cap", "tophat", "beanie")
SHIRT_PATTERNS: tuple[str, ...] = ("plain", "stripes", "dots", "star", "vstripe", "twotone")
#: name -> (shoulder width, leg length, torso length, hip/shoulder ratio)
BUILDS: dict[str, tuple[float, float, float, float]] = {
    "average": (1.0, 1.0, 1.0, 0.85),
    "thin": (0.72, 1.08, 1.0, 0.9),
    "wide": (1.45, 0.9, 1.05, 1.05),
    "tall": (0.92, 1.4, 1.12, 0.85),
    "short": (1.05, 0.62, 0.85, 0.9),
    "muscular": (1.35, 1.0, 1.0, 0.62),
}
MOUTHS: tuple[str, ...] = ("smile", "open", "flat", "frown", "o")
BROWS: tuple[str, ...] = ("neutral", "angry", "raised", "sad")
#: (upper-arm angle, elbow bend) per arm in degrees; 0 = hanging down, positive = away from the body.
ARM_POSES: tuple[tuple[float, float], ...] = ((12, 0), (18, -15), (40, -95), (85, 0), (150, 10), (60, 60))

# Small palettes on purpose: characters of one book often share a hair, skin or shirt colour.
HAIR_COLOURS: tuple[RGB, ...] = ((35, 32, 38), (105, 66, 38), (232, 200, 105), (190, 62, 40),
                                 (175, 175, 182), (60, 92, 190), (236, 132, 172), (80, 160, 92))
SKIN_COLOURS: tuple[RGB, ...] = ((255, 226, 200), (242, 196, 160), (214, 160, 120), (165, 112, 78), (112, 74, 52))
CLOTH_COLOURS: tuple[RGB, ...] = ((214, 58, 52), (52, 96, 200), (60, 160, 84), (240, 200, 60), (140, 80, 180),
                                  (240, 140, 50), (40, 160, 170), (245, 245, 240), (60, 60, 66), (150, 150, 156))
PANTS_COLOURS: tuple[RGB, ...] = ((40, 50, 90), (100, 70, 50), (40, 40, 44), (130, 130, 136), (190, 170, 120),
                                  (70, 110, 170))
SHOE_COLOURS: tuple[RGB, ...] = ((30, 30, 30), (110, 60, 30), (200, 40, 40), (240, 240, 240))


@dataclass(frozen=True)
class Identity:
    """Everything that makes a character recognisable; fixed for all its appearances."""

    id: str
    name: str
    hair_style: str
    face_shape: str
    eye_shape: str
    nose: str
    accessories: frozenset[str]
    hat_style: str
    shirt_pattern: str
    build: str
    hair: RGB
    skin: RGB
    shirt: RGB
    shirt_second: RGB
    pants: RGB
    shoes: RGB
    accent: RGB
    catchphrase: str = field(default="", compare=False)

    def shape_signature(self) -> tuple[str, ...]:
        """The colour-free traits, used to keep identities of one book apart."""
        return (self.hair_style, self.face_shape, self.eye_shape, self.nose, self.shirt_pattern, self.build,
                ",".join(sorted(self.accessories)))


@dataclass(frozen=True)
class Appearance:
    """What varies between two appearances of one identity (the nuisances)."""

    mouth: str = "smile"
    brows: str = "neutral"
    blink: bool = False
    left_arm: tuple[float, float] = (12.0, 0.0)
    right_arm: tuple[float, float] = (12.0, 0.0)
    stance: float = 6.0
    flip: bool = False
    rotation: float = 0.0
    facing_away: bool = False


@dataclass(frozen=True)
class Figure:
    """A drawn character: RGBA sprite and its boxes in sprite pixels (``x1``/``y1`` exclusive).

    ``face`` is the tight box of the head (the skin shape, without hair spikes or hat); ``body`` is
    the whole figure including the head, following the re-ID convention that a body box covers the
    full character.
    """

    image: Image.Image
    face: BoxInt
    body: BoxInt


def _distance(a: Identity, b: Identity) -> int:
    sa, sb = a.shape_signature(), b.shape_signature()
    return sum(x != y for x, y in zip(sa, sb, strict=True)) + len(a.accessories ^ b.accessories)


def _sample_accessories(rng: random.Random) -> frozenset[str]:
    count = rng.choices((0, 1, 2), weights=(0.3, 0.45, 0.25))[0]
    chosen = set(rng.sample(ACCESSORIES, count))
    if {"hat", "headband"} <= chosen:
        chosen.discard("headband")
    return frozenset(chosen)


def _sample_identity(rng: random.Random, identity_id: str, name: str, catchphrase: str) -> Identity:
    shirt, second = rng.sample(CLOTH_COLOURS, 2)
    return Identity(
        id=identity_id, name=name, hair_style=rng.choice(HAIR_STYLES), face_shape=rng.choice(FACE_SHAPES),
        eye_shape=rng.choice(EYE_SHAPES), nose=rng.choice(NOSES), accessories=_sample_accessories(rng),
        hat_style=rng.choice(HAT_STYLES), shirt_pattern=rng.choice(SHIRT_PATTERNS), build=rng.choice(tuple(BUILDS)),
        hair=rng.choice(HAIR_COLOURS), skin=rng.choice(SKIN_COLOURS), shirt=shirt, shirt_second=second,
        pants=rng.choice(PANTS_COLOURS), shoes=rng.choice(SHOE_COLOURS), accent=rng.choice(CLOTH_COLOURS),
        catchphrase=catchphrase,
    )


def sample_identities(rng: random.Random, prefix: str, count: int, names: list[str],
                      catchphrases: list[str]) -> list[Identity]:
    """``count`` identities with ids ``{prefix}-c{i}``, pairwise different in several shape traits.

    Rejection sampling asks for a shape distance of at least 4 and relaxes it only when a large cast
    cannot be separated that well, so small casts are always clearly distinct.
    """
    identities: list[Identity] = []
    needed = 4
    while len(identities) < count:
        index = len(identities)
        for _ in range(200):
            candidate = _sample_identity(rng, f"{prefix}-c{index}", names[index], catchphrases[index])
            if all(_distance(candidate, other) >= needed for other in identities):
                identities.append(candidate)
                break
        else:
            needed -= 1
    return identities


def sample_appearance(rng: random.Random, facing_away: bool = False) -> Appearance:
    """Random expression, pose, flip and tilt for one appearance."""
    def arm() -> tuple[float, float]:
        angle, bend = rng.choice(ARM_POSES)
        return angle + rng.uniform(-8, 8), bend + rng.uniform(-10, 10)

    return Appearance(
        mouth=rng.choice(MOUTHS), brows=rng.choice(BROWS), blink=rng.random() < 0.1,
        left_arm=arm(), right_arm=arm(), stance=rng.uniform(2, 16), flip=rng.random() < 0.5,
        rotation=rng.uniform(-7, 7), facing_away=facing_away,
    )


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Frame:
    """Body landmarks in supersampled sprite pixels."""

    r: float          # head half-width, the unit of every other length
    ow: int           # outline width
    cx: float
    head_cy: float
    ry: float         # head half-height
    shoulder_y: float
    shoulder_w: float  # half-width
    hip_y: float
    hip_w: float
    limb: float       # limb thickness
    arm_len: float
    leg_len: float
    width: int
    height: int


_HEAD_ASPECT = {"round": 1.0, "oval": 1.18, "square": 1.05, "pointed": 1.12}
_HEAD_WIDTH = {"round": 1.0, "oval": 0.9, "square": 1.0, "pointed": 0.95}


def _frame(identity: Identity, head_radius: float) -> _Frame:
    shoulders, legs, torso, hips = BUILDS[identity.build]
    r = head_radius * SUPERSAMPLE
    rx = r * _HEAD_WIDTH[identity.face_shape]
    ry = rx * _HEAD_ASPECT[identity.face_shape]
    limb = r * 0.42 * math.sqrt(shoulders)
    arm_len = r * 2.3 * legs ** 0.3
    leg_len = r * 2.7 * legs
    top = r * 1.6  # room for spikes, buns, hats and raised arms
    head_cy = top + ry
    shoulder_y = head_cy + ry + r * 0.22
    hip_y = shoulder_y + r * 2.2 * torso
    shoulder_w = r * 1.15 * shoulders
    height = int(hip_y + leg_len + r * 0.6)
    half = max(shoulder_w + arm_len + limb, r * 2.0) + r * 0.3
    return _Frame(r=r, ow=max(2, round(r * 0.09)), cx=half, head_cy=head_cy, ry=ry, shoulder_y=shoulder_y,
                  shoulder_w=shoulder_w, hip_y=hip_y, hip_w=shoulder_w * hips, limb=limb, arm_len=arm_len,
                  leg_len=leg_len, width=int(2 * half), height=height)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> list[Point]:
    """Points on an ellipse from ``start`` to ``end`` degrees (0 = +x, 90 = +y, i.e. downwards)."""
    step = (end - start) / (n - 1)
    return [(cx + rx * math.cos(math.radians(start + i * step)), cy + ry * math.sin(math.radians(start + i * step)))
            for i in range(n)]


def _darker(colour: RGB, factor: float = 0.6) -> RGB:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


def _limb(draw: ImageDraw.ImageDraw, points: list[Point], width: float, colour: RGB, ow: int) -> None:
    """A thick polyline with round joints and an ink outline (outline pass first, fill on top)."""
    for w, fill in ((width + 2 * ow, INK), (width, colour)):
        draw.line(points, fill=fill, width=max(1, round(w)))
        for x, y in points:
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=fill)


# ---------------------------------------------------------------- body


def _arm_points(f: _Frame, side: int, pose: tuple[float, float]) -> list[Point]:
    angle, bend = pose
    sx, sy = f.cx + side * (f.shoulder_w - f.limb * 0.4), f.shoulder_y + f.limb * 0.5
    upper = f.arm_len * 0.5
    a1 = math.radians(angle)
    ex, ey = sx + side * upper * math.sin(a1), sy + upper * math.cos(a1)
    a2 = math.radians(angle + bend)
    hx, hy = ex + side * upper * math.sin(a2), ey + upper * math.cos(a2)
    return [(sx, sy), (ex, ey), (hx, hy)]


def _draw_arm(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, side: int, pose: tuple[float, float]) -> None:
    points = _arm_points(f, side, pose)
    _limb(draw, points, f.limb, ident.shirt, f.ow)
    hx, hy = points[-1]
    h = f.limb * 0.62
    draw.ellipse((hx - h, hy - h, hx + h, hy + h), fill=ident.skin, outline=INK, width=f.ow)


def _draw_legs(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, stance: float) -> None:
    for side in (-1, 1):
        hx = f.cx + side * f.hip_w * 0.5
        a = math.radians(stance)
        fx, fy = hx + side * f.leg_len * math.sin(a), f.hip_y + f.leg_len * math.cos(a)
        _limb(draw, [(hx, f.hip_y - f.limb * 0.3), (fx, fy)], f.limb * 1.15, ident.pants, f.ow)
        sw, sh = f.limb * 1.0, f.limb * 0.5
        toe = fx + side * sw * 0.5
        draw.ellipse((toe - sw, fy - sh, toe + sw, fy + sh), fill=ident.shoes, outline=INK, width=f.ow)


def _torso_polygon(f: _Frame) -> list[Point]:
    return [(f.cx - f.shoulder_w, f.shoulder_y), (f.cx + f.shoulder_w, f.shoulder_y),
            (f.cx + f.hip_w, f.hip_y), (f.cx - f.hip_w, f.hip_y)]


def _star(cx: float, cy: float, radius: float) -> list[Point]:
    points = []
    for i in range(10):
        rad = radius if i % 2 == 0 else radius * 0.45
        a = math.radians(-90 + i * 36)
        points.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return points


def _draw_pattern(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, front: bool) -> None:
    """The shirt pattern, drawn over the whole torso box; the caller masks it to the torso."""
    x0, x1, y0, y1 = f.cx - f.shoulder_w - 2, f.cx + f.shoulder_w + 2, f.shoulder_y, f.hip_y
    draw.rectangle((x0, y0, x1, y1), fill=ident.shirt)
    second, r = ident.shirt_second, f.r
    if ident.shirt_pattern == "stripes":
        band = r * 0.36
        y = y0 + band
        while y < y1:
            draw.rectangle((x0, y, x1, y + band), fill=second)
            y += 2 * band
    elif ident.shirt_pattern == "dots":
        step, dot = r * 0.6, r * 0.13
        for row, y in enumerate(_frange(y0 + step / 2, y1, step)):
            for x in _frange(x0 + (step / 2 if row % 2 else 0), x1, step):
                draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=second)
    elif ident.shirt_pattern == "star" and front:
        draw.polygon(_star(f.cx, y0 + (y1 - y0) * 0.42, r * 0.62), fill=second, outline=INK, width=f.ow)
    elif ident.shirt_pattern == "vstripe":
        draw.rectangle((f.cx - r * 0.22, y0, f.cx + r * 0.22, y1), fill=second)
        draw.line(((f.cx, y0), (f.cx, y1)), fill=INK, width=f.ow)
    elif ident.shirt_pattern == "twotone":
        draw.polygon(((x0, y1), (x1, y0 + (y1 - y0) * 0.35), (x1, y1)), fill=second)


def _frange(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(max(0, math.ceil((stop - start) / step)))]


def _draw_torso(image: Image.Image, f: _Frame, ident: Identity, front: bool) -> None:
    polygon = _torso_polygon(f)
    pattern = Image.new("RGB", image.size, ident.shirt)
    _draw_pattern(ImageDraw.Draw(pattern), f, ident, front)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    image.paste(pattern, (0, 0), mask)
    ImageDraw.Draw(image).polygon(polygon, outline=INK, width=f.ow)


def _draw_scarf(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity) -> None:
    r = f.r
    y = f.shoulder_y - r * 0.15
    draw.rounded_rectangle((f.cx - r * 0.85, y - r * 0.2, f.cx + r * 0.85, y + r * 0.3), radius=r * 0.2,
                           fill=ident.accent, outline=INK, width=f.ow)
    draw.polygon(((f.cx + r * 0.25, y + r * 0.2), (f.cx + r * 0.65, y + r * 0.2), (f.cx + r * 0.75, y + r * 1.5),
                  (f.cx + r * 0.35, y + r * 1.45)), fill=ident.accent, outline=INK, width=f.ow)


# ---------------------------------------------------------------- head


def _head_polygon(f: _Frame, ident: Identity) -> list[Point]:
    rx, ry, cx, cy = f.ry / _HEAD_ASPECT[ident.face_shape], f.ry, f.cx, f.head_cy
    if ident.face_shape == "pointed":
        return _ellipse_points(cx, cy, rx, ry, 180, 360) + [(cx + rx * 0.85, cy + ry * 0.45), (cx, cy + ry),
                                                          (cx - rx * 0.85, cy + ry * 0.45)]
    if ident.face_shape == "square":
        corners = []
        for sx, sy, start in ((1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)):
            corners += _ellipse_points(cx + sx * rx * 0.6, cy + sy * ry * 0.6, rx * 0.4, ry * 0.4, start, start + 90, 6)
        return corners
    return _ellipse_points(cx, cy, rx, ry, 0, 360, 40)


def _hair_cap(f: _Frame, rx: float, fringe: float) -> list[Point]:
    """A cap over the top of the head whose lower edge sits ``fringe`` head-heights above the centre."""
    cx, cy, ry = f.cx, f.head_cy, f.ry
    arc = _ellipse_points(cx, cy, rx * 1.08, ry * 1.1, 180, 360)
    edge = cy - fringe * ry
    return [(cx - rx * 1.08, cy + ry * 0.15)] + arc + [(cx + rx * 1.08, cy + ry * 0.15), (cx + rx * 0.8, edge),
                                                      (cx + rx * 0.3, edge + ry * 0.12), (cx - rx * 0.2, edge),
                                                      (cx - rx * 0.8, edge + ry * 0.1)]


def _draw_hair_back(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity) -> None:
    rx, cx, cy, ry, ow = f.ry / _HEAD_ASPECT[ident.face_shape], f.cx, f.head_cy, f.ry, f.ow
    style, colour = ident.hair_style, ident.hair
    if style == "long":
        draw.rounded_rectangle((cx - rx * 1.2, cy - ry * 1.05, cx + rx * 1.2, cy + ry * 2.6), radius=rx * 0.8,
                               fill=colour, outline=INK, width=ow)
    elif style == "bob":
        draw.rounded_rectangle((cx - rx * 1.22, cy - ry * 1.1, cx + rx * 1.22, cy + ry * 0.85), radius=rx * 0.6,
                               fill=colour, outline=INK, width=ow)
    elif style == "ponytail":
        draw.ellipse((cx + rx * 0.7, cy - ry * 0.2, cx + rx * 1.45, cy + ry * 1.9), fill=colour, outline=INK, width=ow)


def _draw_hair_front(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity) -> None:
    rx, cx, cy, ry, ow = f.ry / _HEAD_ASPECT[ident.face_shape], f.cx, f.head_cy, f.ry, f.ow
    style, colour = ident.hair_style, ident.hair
    if style == "bald":
        draw.arc((cx - rx * 0.6, cy - ry * 0.85, cx - rx * 0.1, cy - ry * 0.4), 200, 260, fill=(255, 255, 255),
                 width=ow * 2)
        return
    if style == "spiky":
        spikes: list[Point] = []
        for i, (x, y) in enumerate(_ellipse_points(cx, cy, rx * 1.05, ry * 1.05, 170, 370, 13)):
            scale = 1.65 if i % 2 else 1.0
            spikes.append((cx + (x - cx) * scale, cy + (y - cy) * scale))
        draw.polygon(spikes, fill=colour, outline=INK, width=ow)
    elif style == "mohawk":
        draw.polygon([(cx - rx * 0.22, cy - ry * 0.8), (cx - rx * 0.3, cy - ry * 1.75), (cx, cy - ry * 1.5),
                      (cx + rx * 0.3, cy - ry * 1.75), (cx + rx * 0.22, cy - ry * 0.8)], fill=colour, outline=INK,
                     width=ow)
        return
    elif style == "curly":
        for x, y in _ellipse_points(cx, cy, rx * 1.02, ry * 1.02, 165, 375, 11):
            c = rx * 0.32
            draw.ellipse((x - c, y - c, x + c, y + c), fill=colour, outline=INK, width=ow)
    elif style == "bun":
        b = rx * 0.42
        draw.ellipse((cx - b, cy - ry * 1.05 - 1.6 * b, cx + b, cy - ry * 1.05 + 0.2 * b), fill=colour, outline=INK,
                     width=ow)
    fringe = {"bob": 0.35, "long": 0.45, "curly": 0.55}.get(style, 0.5)
    draw.polygon(_hair_cap(f, rx, fringe), fill=colour, outline=INK, width=ow)


def _draw_hat(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity) -> None:
    rx, cx, cy, ry, ow, colour = f.ry / _HEAD_ASPECT[ident.face_shape], f.cx, f.head_cy, f.ry, f.ow, ident.accent
    top = cy - ry * 0.55
    if ident.hat_style == "tophat":
        draw.rectangle((cx - rx * 0.75, top - ry * 1.5, cx + rx * 0.75, top), fill=colour, outline=INK, width=ow)
        draw.rectangle((cx - rx * 0.75, top - ry * 0.4, cx + rx * 0.75, top - ry * 0.2), fill=INK)
        draw.rounded_rectangle((cx - rx * 1.4, top - ry * 0.12, cx + rx * 1.4, top + ry * 0.1), radius=ry * 0.1,
                               fill=colour, outline=INK, width=ow)
        return
    draw.chord((cx - rx * 1.12, cy - ry * 1.25, cx + rx * 1.12, cy + ry * 0.1), 180, 360, fill=colour, outline=INK,
               width=ow)
    if ident.hat_style == "cap":
        draw.rounded_rectangle((cx - rx * 0.2, top - ry * 0.05, cx + rx * 1.7, top + ry * 0.15), radius=ry * 0.1,
                               fill=_darker(colour, 0.75), outline=INK, width=ow)
    else:  # beanie: a band and a pom-pom
        draw.rectangle((cx - rx * 1.12, top - ry * 0.15, cx + rx * 1.12, top + ry * 0.12), fill=_darker(colour, 0.75),
                       outline=INK, width=ow)
        p = rx * 0.25
        draw.ellipse((cx - p, cy - ry * 1.2 - 2 * p, cx + p, cy - ry * 1.2), fill=(245, 245, 245), outline=INK,
                     width=ow)


def _draw_eyes(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, app: Appearance, rx: float) -> list[Point]:
    cx, ey, ow = f.cx, f.head_cy + f.ry * 0.08, f.ow
    centres = [(cx - rx * 0.4, ey), (cx + rx * 0.4, ey)]
    for x, y in centres:
        if app.blink or ident.eye_shape == "narrow":
            w = rx * 0.2
            curve = (y - rx * 0.08, y + rx * 0.12) if app.blink else (y - rx * 0.04, y + rx * 0.04)
            draw.arc((x - w, curve[0], x + w, curve[1]), 0 if app.blink else 180, 180 if app.blink else 360,
                     fill=INK, width=ow * 2)
        elif ident.eye_shape == "dot":
            d = rx * 0.1
            draw.ellipse((x - d, y - d * 1.3, x + d, y + d * 1.3), fill=INK)
        else:
            w, h = rx * 0.19, rx * 0.25
            draw.ellipse((x - w, y - h, x + w, y + h), fill=(255, 255, 255), outline=INK, width=ow)
            p = rx * 0.11
            draw.ellipse((x - p, y - p * 0.6, x + p, y + p * 1.4), fill=INK)
            draw.ellipse((x - p * 0.5, y - p * 0.3, x, y + p * 0.2), fill=(255, 255, 255))
            if ident.eye_shape == "lashes":
                outer = 1 if x > cx else -1
                for k in range(3):
                    a = math.radians(-100 + outer * (25 + 25 * k))
                    draw.line(((x + w * math.cos(a), y + h * math.sin(a)),
                               (x + 1.6 * w * math.cos(a), y + 1.5 * h * math.sin(a))), fill=INK, width=ow)
    return centres


def _draw_brows(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, app: Appearance, eyes: list[Point],
                rx: float) -> None:
    colour = INK if ident.hair_style == "bald" else _darker(ident.hair, 0.5)
    tilt = {"neutral": 0.0, "angry": 0.14, "raised": -0.05, "sad": -0.14}[app.brows]
    lift = 0.4 if app.brows == "raised" else 0.3
    for x, y in eyes:
        inner = 1 if x < f.cx else -1  # direction towards the nose
        y0 = y - rx * lift
        draw.line(((x - inner * rx * 0.2, y0 - tilt * rx), (x + inner * rx * 0.2, y0 + tilt * rx)), fill=colour,
                  width=max(2, round(f.ow * 1.6)))


def _draw_mouth(draw: ImageDraw.ImageDraw, f: _Frame, app: Appearance, rx: float) -> None:
    cx, my, ow = f.cx, f.head_cy + f.ry * 0.55, f.ow
    w = rx * 0.3
    if app.mouth == "smile":
        draw.arc((cx - w, my - w * 0.8, cx + w, my + w * 0.5), 20, 160, fill=INK, width=ow * 2)
    elif app.mouth == "frown":
        draw.arc((cx - w, my, cx + w, my + w * 0.9), 200, 340, fill=INK, width=ow * 2)
    elif app.mouth == "open":
        draw.chord((cx - w, my - w * 0.5, cx + w, my + w * 0.7), 0, 180, fill=(120, 30, 40), outline=INK, width=ow)
    elif app.mouth == "o":
        o = rx * 0.1
        draw.ellipse((cx - o, my - o * 1.2, cx + o, my + o * 1.2), fill=(120, 30, 40), outline=INK, width=ow)
    else:
        draw.line(((cx - w * 0.7, my), (cx + w * 0.7, my)), fill=INK, width=ow * 2)


def _draw_face_details(draw: ImageDraw.ImageDraw, f: _Frame, ident: Identity, app: Appearance) -> None:
    rx, cx, cy, ry, ow = f.ry / _HEAD_ASPECT[ident.face_shape], f.cx, f.head_cy, f.ry, f.ow
    if "beard" in ident.accessories:
        draw.chord((cx - rx * 0.92, cy - ry * 0.05, cx + rx * 0.92, cy + ry * 1.05), 15, 165,
                   fill=_darker(ident.hair, 0.8), outline=INK, width=ow)
    eyes = _draw_eyes(draw, f, ident, app, rx)
    _draw_brows(draw, f, ident, app, eyes, rx)
    ny = cy + ry * 0.3
    if ident.nose == "dot":
        n = rx * 0.05
        draw.ellipse((cx - n, ny - n, cx + n, ny + n), fill=_darker(ident.skin, 0.55))
    elif ident.nose == "hook":
        draw.line(((cx, ny - ry * 0.18), (cx + rx * 0.12, ny + ry * 0.05), (cx - rx * 0.02, ny + ry * 0.08)),
                  fill=INK, width=ow, joint="curve")
    _draw_mouth(draw, f, app, rx)
    if "scar" in ident.accessories:
        sx, sy = cx - rx * 0.45, cy + ry * 0.1
        draw.line(((sx - rx * 0.1, sy - ry * 0.45), (sx + rx * 0.12, sy + ry * 0.4)), fill=(150, 40, 40), width=ow * 2)
        for t in (0.3, 0.5, 0.7):
            px, py = sx - rx * 0.1 + rx * 0.22 * t, sy - ry * 0.45 + ry * 0.85 * t
            draw.line(((px - rx * 0.09, py), (px + rx * 0.09, py)), fill=(150, 40, 40), width=ow)
    if "glasses" in ident.accessories:
        g = rx * 0.27
        for x, y in eyes:
            draw.rectangle((x - g, y - g * 0.8, x + g, y + g * 0.8), outline=INK, width=ow)
        draw.line(((eyes[0][0] + g, eyes[0][1]), (eyes[1][0] - g, eyes[1][1])), fill=INK, width=ow)


def _draw_head(image: Image.Image, f: _Frame, ident: Identity, app: Appearance) -> None:
    draw = ImageDraw.Draw(image)
    rx, cx, cy, ry, ow = f.ry / _HEAD_ASPECT[ident.face_shape], f.cx, f.head_cy, f.ry, f.ow
    neck = rx * 0.32
    draw.rectangle((cx - neck, cy + ry * 0.6, cx + neck, f.shoulder_y + f.r * 0.1), fill=ident.skin, outline=INK,
                   width=ow)
    for side in (-1, 1):
        ex = cx + side * rx * 0.98
        draw.ellipse((ex - rx * 0.18, cy - ry * 0.1, ex + rx * 0.18, cy + ry * 0.3), fill=ident.skin, outline=INK,
                     width=ow)
    back_of_head = app.facing_away and ident.hair_style != "bald"
    head_colour = ident.hair if back_of_head else ident.skin
    draw.polygon(_head_polygon(f, ident), fill=head_colour, outline=INK, width=ow)
    if app.facing_away:
        _draw_hair_back(draw, f, ident)  # seen from behind, long hair and bobs cover the head
    else:
        _draw_face_details(draw, f, ident, app)
    if not back_of_head or ident.hair_style in ("spiky", "mohawk", "curly", "bun"):
        _draw_hair_front(draw, f, ident)
    if "headband" in ident.accessories:
        draw.rectangle((cx - rx * 1.02, cy - ry * 0.62, cx + rx * 1.02, cy - ry * 0.42), fill=ident.accent,
                       outline=INK, width=ow)
    if "hat" in ident.accessories:
        _draw_hat(draw, f, ident)
    if "earrings" in ident.accessories:
        for side in (-1, 1):
            ex, ey, e = cx + side * rx * 0.98, cy + ry * 0.42, rx * 0.1
            draw.ellipse((ex - e, ey - e, ex + e, ey + e), fill=(240, 200, 40), outline=INK, width=ow)


def draw_figure(identity: Identity, appearance: Appearance, head_radius: float) -> Figure:
    """Draw one full figure whose head is ``head_radius`` pixels wide on each side of its centre.

    The figure height follows from the build (a tall character is taller than a short one at the
    same head size). Flip and rotation are applied to the sprite and to the head mask together, so
    the face box stays exact.
    """
    f = _frame(identity, head_radius)
    image = Image.new("RGBA", (f.width, f.height), (255, 255, 255, 0))
    draw = ImageDraw.Draw(image)
    front = not appearance.facing_away
    if front:
        _draw_hair_back(draw, f, identity)  # behind the body; seen from behind it is drawn over the head
    _draw_legs(draw, f, identity, appearance.stance)
    _draw_torso(image, f, identity, front)
    if "scarf" in identity.accessories:
        _draw_scarf(draw, f, identity)
    _draw_head(image, f, identity, appearance)
    _draw_arm(draw, f, identity, -1, appearance.left_arm)
    _draw_arm(draw, f, identity, 1, appearance.right_arm)
    face_mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(face_mask).polygon(_head_polygon(f, identity), fill=255)
    return _finish(image, face_mask, appearance)


def _finish(image: Image.Image, face_mask: Image.Image, appearance: Appearance) -> Figure:
    if appearance.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        face_mask = face_mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.convert("RGBa").reduce(SUPERSAMPLE)
    face_mask = face_mask.reduce(SUPERSAMPLE)
    if appearance.rotation:  # after the reduction: a quarter of the pixels, and rotation dominated the cost
        image = image.rotate(appearance.rotation, resample=Image.Resampling.BILINEAR, expand=True)
        face_mask = face_mask.rotate(appearance.rotation, resample=Image.Resampling.BILINEAR, expand=True)
    image = image.convert("RGBA")
    face_mask = face_mask.point(lambda v: 255 if v >= 128 else 0)
    alpha = image.getchannel("A").point(lambda v: 255 if v >= 64 else 0)
    body, face = alpha.getbbox(), face_mask.getbbox()
    assert body is not None and face is not None  # a figure always has a head and a body
    return Figure(image=image, face=face, body=body)
