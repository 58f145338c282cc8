"""Page-level boxes for the detector: what is on each page (panels, bodies, faces, text balloons).

Ground truth comes from a synthetic book folder (``comicid synth``): face and body rows of its
``manifest.csv`` plus panel and balloon rows of its ``page_boxes.csv``. The same table, with a
``score`` column, is what the detector predicts, so training, evaluation and COCO export read one
shape: ``image`` (absolute path), ``kind`` (one of :data:`DETECTION_KINDS`), ``x0 y0 x1 y1`` in page
pixels, and optionally ``score``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from comicid.data.manifest import read_manifest
from comicid.data.synth import PAGE_BOXES_FILE
from comicid.errors import ManifestError

#: Classes of the page detector, in label order.
DETECTION_KINDS: tuple[str, ...] = ("panel", "body", "face", "text")
PAGE_BOX_COLUMNS = ["image", "kind", "x0", "y0", "x1", "y1"]


def read_page_boxes(manifest: str | Path) -> pd.DataFrame:
    """Every ground-truth box of the pages of a synth folder's ``manifest``, one row per box.

    Raises:
        ManifestError: the manifest is unreadable or has no ``page_boxes.csv`` beside it (books drawn
            before panels and balloons were recorded: draw them again with ``comicid synth``).
    """
    manifest = Path(manifest)
    frame = read_manifest(manifest, check_files=False, allow_outside=True)
    people = frame.loc[frame["kind"].isin(["face", "body"]) & frame["x0"].notna(), PAGE_BOX_COLUMNS]
    extra_path = manifest.parent / PAGE_BOXES_FILE
    if not extra_path.is_file():
        raise ManifestError([f"'{extra_path}' not found: panel and balloon boxes are written by comicid synth "
                             "beside its manifest; draw the books again"])
    extra = pd.read_csv(extra_path, dtype={"image": str, "kind": str}, keep_default_na=False)
    extra["image"] = [str((manifest.parent / image).resolve()) for image in extra["image"]]
    table = pd.concat([people, extra[PAGE_BOX_COLUMNS]], ignore_index=True)
    table[["x0", "y0", "x1", "y1"]] = table[["x0", "y0", "x1", "y1"]].astype("float64")
    keep = (table["x1"] > table["x0"]) & (table["y1"] > table["y0"]) & table["kind"].isin(DETECTION_KINDS)
    return table.loc[keep].reset_index(drop=True)


def pages_of(boxes: pd.DataFrame) -> list[str]:
    """The distinct page images of a box table, in first-seen order."""
    return list(dict.fromkeys(boxes["image"]))
