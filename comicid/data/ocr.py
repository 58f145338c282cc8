"""Text for pages without transcripts: OCR, then each text block assigned to the instances of its panel.

``comicid import SRC --out C --ocr`` runs this on every page of the source before the crops are cut.
Reading goes through RapidOCR (``rapidocr-onnxruntime``), whose wheel ships the PP-OCRv4 detection,
direction and recognition ONNX models, so nothing is downloaded: it reads Chinese and English (Latin
letters, digits, punctuation). For Japanese manga install a Japanese recogniser whose weights you have
locally (e.g. ``manga-ocr`` with its model folder) and put its output in the manifest's ``text``
column instead; see docs/MULTIMODAL.md.

Assignment (the manifest has panel ids, not panel rectangles, so proximity decides):

1. recognised lines are grouped into blocks (a balloon or caption) when they overlap horizontally and
   the vertical gap is under one line height;
2. a block goes to the nearest character instance on the same page, by the distance from the block's
   bottom centre to the instance's head (the face box centre, else the top of the body box), with
   blocks below a head counted twice as far (balloons sit above their speakers and their tails point
   down); that instance's ``speech`` is the block's text;
3. every instance of that instance's panel gets the block in its ``text`` (blocks in reading order),
   as Manga-MMTL attaches the texts of a frame to all characters of the frame.

Only rows whose ``text`` is empty are filled: transcripts given by the source win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from comicid.data.images import load_image
from comicid.data.manifest import instance_keys
from comicid.errors import ConfigError

OCR_REQUIREMENT = "rapidocr-onnxruntime==1.4.4"
#: Lines recognised with less confidence than this are dropped (PP-OCR scores noise on drawings low).
MIN_SCORE = 0.5
#: A block below a head is this many times farther than the same distance above it.
BELOW_PENALTY = 2.0

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TextBlock:
    """A balloon or caption: its lines joined top to bottom, the union box, the mean line score."""

    text: str
    box: Box
    score: float


#: ``reader(RGB uint8 array (H, W, 3)) -> [(box, text, score)]``, boxes as (x0, y0, x1, y1).
LineReader = Callable[[np.ndarray], list[tuple[Box, str, float]]]


def rapidocr_reader() -> LineReader:
    """RapidOCR's PP-OCRv4 pipeline (models shipped in its wheel) as a :data:`LineReader`.

    Raises:
        ConfigError: the package is not installed (the message says what to install).
    """
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as error:
        raise ConfigError(f"--ocr needs the package '{OCR_REQUIREMENT}' ({error}); install it with "
                          f"`pip install --no-deps {OCR_REQUIREMENT}` beside opencv-python-headless "
                          "(`make install` does)") from None
    engine = RapidOCR()

    def read(pixels: np.ndarray) -> list[tuple[Box, str, float]]:
        result, _ = engine(pixels)
        lines = []
        for points, text, score in result or []:
            xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
            lines.append(((min(xs), min(ys), max(xs), max(ys)), str(text).strip(), float(score)))
        return lines

    return read


def group_lines(lines: Sequence[tuple[Box, str, float]], min_score: float = MIN_SCORE) -> list[TextBlock]:
    """Lines -> blocks (hand-written: balloon grouping is a layout rule no OCR package offers).

    Two lines join when their horizontal extents overlap and the vertical gap between them is under
    the taller line's height; blocks come out in reading order (top to bottom, then left to right).
    """
    kept = sorted(((box, text, score) for box, text, score in lines if text and score >= min_score),
                  key=lambda line: (line[0][1], line[0][0]))
    groups: list[list[tuple[Box, str, float]]] = []
    for line in kept:
        box = line[0]
        for group in groups:
            last = group[-1][0]
            height = max(box[3] - box[1], last[3] - last[1])
            overlap = min(box[2], last[2]) - max(box[0], last[0])
            if overlap > 0 and 0 <= box[1] - last[3] < height:
                group.append(line)
                break
        else:
            groups.append([line])
    blocks = []
    for group in groups:
        boxes = np.array([line[0] for line in group])
        blocks.append(TextBlock(text=" ".join(line[1] for line in group),
                                box=(float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                                     float(boxes[:, 2].max()), float(boxes[:, 3].max())),
                                score=float(np.mean([line[2] for line in group]))))
    return sorted(blocks, key=lambda block: (block.box[1], block.box[0]))


def instance_heads(page: pd.DataFrame, keys: pd.Series) -> dict[str, tuple[float, float]]:
    """Instance key -> head point: the face box centre, else 10 % down the body box."""
    heads: dict[str, tuple[float, float]] = {}
    for index, row in page.iterrows():
        if any(math.isnan(row[c]) for c in ("x0", "y0", "x1", "y1")):
            continue
        key = keys[index]
        if row["kind"] == "face":
            heads[key] = ((row["x0"] + row["x1"]) / 2, (row["y0"] + row["y1"]) / 2)
        else:
            heads.setdefault(key, ((row["x0"] + row["x1"]) / 2, row["y0"] + 0.1 * (row["y1"] - row["y0"])))
    return heads


def nearest_instance(block: TextBlock, heads: dict[str, tuple[float, float]]) -> str | None:
    """The instance key whose head is nearest the block's bottom centre (below counts double)."""
    bx, by = (block.box[0] + block.box[2]) / 2, block.box[3]
    best, best_distance = None, math.inf
    for key in sorted(heads):  # sorted: ties resolve the same way in every run
        hx, hy = heads[key]
        distance = math.hypot(hx - bx, hy - by) * (BELOW_PENALTY if hy < by else 1.0)
        if distance < best_distance:
            best, best_distance = key, distance
    return best


def attach_ocr_text(frame: pd.DataFrame, reader: LineReader | None = None, progress: bool = True) -> pd.DataFrame:
    """Fill ``text`` (the panel's blocks) and ``speech`` (the instance's nearest blocks) by OCR of each page.

    Only pages with boxed rows are read, each once. Rows that already have text keep it. Returns a
    copy; ``attrs["ocr"]`` counts pages read, blocks found and blocks assigned.
    """
    reader = reader or rapidocr_reader()
    out = frame.copy()
    keys = instance_keys(out)
    if "speech" not in out.columns:
        out["speech"] = ""
    boxed = out[["x0", "y0", "x1", "y1"]].notna().all(axis=1)
    panel_of = {key: (book, page, panel) for key, book, page, panel
                in zip(keys, out["book"], out["page"], out["panel"], strict=True)}
    panel_texts: dict[tuple[str, str, str], list[str]] = {}
    speech: dict[str, list[str]] = {}
    counts = {"pages": 0, "blocks": 0, "assigned": 0}
    images = sorted(set(out.loc[boxed, "image"]))
    for image in tqdm(images, desc="ocr", unit="page", disable=not progress):
        page = out[(out["image"] == image) & boxed]
        heads = instance_heads(page, keys)
        blocks = group_lines(reader(np.asarray(load_image(image))))
        counts["pages"] += 1
        counts["blocks"] += len(blocks)
        for block in blocks:
            key = nearest_instance(block, heads)
            if key is None:
                continue
            counts["assigned"] += 1
            speech.setdefault(key, []).append(block.text)
            panel = panel_of[key]
            # an instance without a panel id is its own panel
            panel_texts.setdefault(panel if panel[2] else (panel[0], panel[1], key), []).append(block.text)
    for index in out.index:
        key = keys[index]
        book, page_id, panel = panel_of[key]
        text = " ".join(panel_texts.get((book, page_id, panel) if panel else (book, page_id, key), []))
        if not out.at[index, "text"]:
            out.at[index, "text"] = text
        if not out.at[index, "speech"]:
            out.at[index, "speech"] = " ".join(speech.get(key, []))
    out.attrs = dict(frame.attrs, ocr=counts)
    return out
