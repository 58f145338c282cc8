"""Synthetic comics: the embedded default data of the demo and the tests.

``generate_books`` draws books of pages with panels in which recurring characters appear with
varied expression, pose, scale, flip, occlusion and drawing style, and writes the pages plus a
manifest-v1 with face and body boxes, instances, panels, sequences of four panels and balloon text.
Everything is drawn procedurally with PIL, so it needs no download, and it is deterministic: the same
arguments give the same manifest and page bytes. See ``docs/SYNTH.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from comicid.data.manifest import from_records, write_manifest
from comicid.data.synth.pages import plan_book, render_page
from comicid.data.synth.speech import plan_world
from comicid.errors import ConfigError
from comicid.atomic import write_table

__all__ = ["DEFAULT_PAGE_SIZE", "LETTERING_FILE", "MAX_CHARACTERS", "PAGE_BOXES_COLUMNS", "PAGE_BOXES_FILE",
           "SPEECH_MODES", "generate_books", "write_page_boxes"]

#: Width and height in pixels: small enough that a 2-book, 8-page demo draws in a few seconds.
DEFAULT_PAGE_SIZE: tuple[int, int] = (800, 1100)
#: Identities per book; beyond this they can no longer be kept apart by shape traits and names.
MAX_CHARACTERS = 64
MIN_PAGE_SIDE = 300
#: ``catchphrase``: the original balloons (a speaker's catchphrase or a stock line, the speaker's own
#: line as ``text``); ``manga``: book worlds and character voices (:mod:`.speech`), every instance's
#: ``text`` = all text of its panel, its own line in ``speech``.
SPEECH_MODES = ("catchphrase", "manga")
#: Ground truth of every piece of text drawn (OCR and text-assignment checks), beside the manifest.
LETTERING_FILE = "lettering.csv"
#: Boxes of things that are not instances, beside the manifest: every panel (``kind`` = ``panel``) and
#: every speech balloon or narration box (``kind`` = ``text``), in page pixels: the ground truth of the
#: page detector (docs/DETECTION.md). A file of its own, so the manifest and lettering stay as they were.
PAGE_BOXES_FILE = "page_boxes.csv"
PAGE_BOXES_COLUMNS = ["image", "book", "page", "panel", "kind", "x0", "y0", "x1", "y1"]
#: Lettering kinds that are drawn in a balloon or box (a sound effect is free lettering, not a text region).
_TEXT_REGION_KINDS = ("speech", "narration")


def write_page_boxes(rows: list[dict[str, object]], out_dir: Path) -> Path:
    """Write ``out_dir/page_boxes.csv`` (image paths relative to ``out_dir``) from rows with absolute paths."""
    table = pd.DataFrame(rows, columns=PAGE_BOXES_COLUMNS)
    table["image"] = [str(Path(image).resolve().relative_to(out_dir.resolve())) for image in table["image"]]
    return write_table(table, out_dir / PAGE_BOXES_FILE)


def _validate(books: int, characters: int, pages: int, seed: int, page_size: tuple[int, int]) -> tuple[int, int]:
    def whole(name: str, value: object, low: int, high: int | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {bound}, got {value}")

    whole("books", books, 1)
    whole("characters", characters, 2, MAX_CHARACTERS)
    whole("pages", pages, 1)
    whole("seed", seed, -(2**63))
    try:
        width, height = page_size
    except (TypeError, ValueError):
        raise ConfigError(f"page_size must be (width, height), got {page_size!r}") from None
    whole("page width", width, MIN_PAGE_SIDE)
    whole("page height", height, MIN_PAGE_SIDE)
    return width, height


def generate_books(out_dir: Path, books: int = 2, characters: int = 8, pages: int = 4, seed: int = 0,
                   page_size: tuple[int, int] = DEFAULT_PAGE_SIZE, progress: bool = True,
                   speech: str = "catchphrase") -> Path:
    """Draw ``books`` books of ``pages`` pages with ``characters`` identities each; return the manifest path.

    Pages are written to ``out_dir/pages/b{i}/p{j:03d}.png`` and the manifest to
    ``out_dir/manifest.csv`` (image paths relative to it). Identities are ``b{i}-c{k}`` and never
    recur across books; each gets at least three appearances per book when the pages have room.

    ``speech`` (:data:`SPEECH_MODES`) decides what balloons say; pictures are the same in both
    modes except for the lettering itself (balloon text, and in ``manga`` mode narration boxes and
    sound effects), because words come from random streams of their own. Every piece of text drawn is
    listed in ``out_dir/lettering.csv`` with its box and speaker instance.

    Raises:
        ConfigError: an argument is out of range (fewer than 2 characters, no pages, a tiny page...).
    """
    size = _validate(books, characters, pages, seed, page_size)
    if speech not in SPEECH_MODES:
        raise ConfigError(f"speech must be one of {', '.join(SPEECH_MODES)}, got {speech!r}")
    out_dir = Path(out_dir)
    plans = [plan_book(seed, book, characters, pages, size) for book in range(books)]
    if speech == "manga":
        plans = [dataclasses.replace(plan, world=plan_world(seed, plan.name, [i.id for i in plan.identities]))
                 for plan in plans]
    records: list[dict[str, object]] = []
    lettering: list[dict[str, object]] = []
    page_boxes: list[dict[str, object]] = []
    with tqdm(total=books * pages, desc="synth pages", unit="page", disable=not progress) as bar:
        for plan in plans:
            for index, page in enumerate(plan.pages):
                image = out_dir / "pages" / plan.name / f"{page.name}.png"
                start = len(lettering)
                records.extend(render_page(plan, index, image, lettering))
                page_boxes.extend({"image": str(image.resolve()), "book": plan.name, "page": page.name,
                                   "panel": panel.key, "kind": "panel", "x0": float(panel.rect[0]),
                                   "y0": float(panel.rect[1]), "x1": float(panel.rect[2]), "y1": float(panel.rect[3])}
                                  for panel in page.panels)
                page_boxes.extend({**{key: row[key] for key in PAGE_BOXES_COLUMNS if key != "kind"}, "kind": "text"}
                                  for row in lettering[start:] if row["kind"] in _TEXT_REGION_KINDS)
                bar.update(1)
    frame = from_records(records, source="synth")
    path = write_manifest(frame, out_dir / "manifest.csv")
    table = pd.DataFrame(lettering, columns=["image", "book", "page", "panel", "kind", "text", "x0", "y0", "x1",
                                             "y1", "instance", "identity", "tail_x", "tail_y"])
    table["image"] = [str(Path(image).resolve().relative_to(out_dir.resolve())) for image in table["image"]]
    write_table(table, out_dir / LETTERING_FILE)
    write_page_boxes(page_boxes, out_dir)
    return path
