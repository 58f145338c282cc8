"""Put manifest rows into a collection: cut crops, cache them by content, upsert the parts table.

Import is idempotent and incremental. Each row gets a ``row_key`` from what locates its pixels and its
place (book, image, box, kind, instance); re-importing a row with the same key updates its labels and
reuses its crop, rows with new keys are added, rows of other sources stay. Pages are decoded once per
import however many boxes they carry, and a row whose image file has not changed (same size and
modification time) is not cut again.

The parts table is replaced atomically at the end, so an interrupted import leaves the previous
collection intact; the only trace it can leave is content-addressed crops that a later import reuses.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from comicid.data.crops import Box, crop_part
from comicid.data.images import load_image
from comicid.data.manifest import BOX_COLUMNS, has_box, instance_keys
from comicid.errors import ImageReadError, ManifestError
from comicid.store.collection import Collection


@dataclass
class IngestReport:
    """What an import did; every row is accounted for in exactly one of the counters."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    reused: int = 0  # crop reused from the cache; labels are refreshed from the manifest
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number from 1, reason)
    tiny_boxes: list[int] = field(default_factory=list)  # row numbers from 1, kept but reported

    def summary(self) -> str:
        text = (f"{self.rows} rows: {self.added} added, {self.updated} re-cut, {self.reused} reused, "
                f"{len(self.skipped)} skipped")
        if self.tiny_boxes:
            text += f"; {len(self.tiny_boxes)} tiny boxes (< 4 px) kept"
        return text


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """Stable key of each row: what locates its pixels and its place, never its labels."""
    parts = [frame["book"], frame["image"], *(frame[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
                                               for c in BOX_COLUMNS), frame["kind"], frame["instance"]]
    joined = pd.Series(["\x1f".join(values) for values in zip(*parts, strict=True)], index=frame.index)
    return joined.map(lambda text: hashlib.sha1(text.encode()).hexdigest()[:20])


def _file_stamp(path: str) -> str:
    try:
        status = os.stat(path)
    except OSError:
        return ""
    return f"{status.st_size}:{status.st_mtime_ns}"


def _box_of(row: pd.Series) -> Box | None:
    if any(pd.isna(row[c]) for c in BOX_COLUMNS):
        return None
    return Box(*(float(row[c]) for c in BOX_COLUMNS))


def _pages(frame: pd.DataFrame, todo: np.ndarray) -> Iterator[tuple[str, list[int]]]:
    """Rows to cut, grouped by image so that each page is decoded once (first-seen order)."""
    groups: dict[str, list[int]] = {}
    for index in np.flatnonzero(todo):
        groups.setdefault(frame["image"].iat[index], []).append(int(index))
    yield from groups.items()


def ingest(frame: pd.DataFrame, collection: Collection, skip_bad: bool = False,
           progress: bool = True, source: str | None = None) -> IngestReport:
    """Import a validated manifest into ``collection``.

    Raises:
        ImageReadError: an image is missing or unreadable and ``skip_bad`` is false; the message
            names the first row that uses it. With ``skip_bad`` such rows are skipped and counted.
        ManifestError: two rows locate the same part.
    """
    frame = frame.reset_index(drop=True).copy()
    report = IngestReport(rows=len(frame))
    frame["row_key"] = row_keys(frame)
    duplicated = frame["row_key"].duplicated(keep="first")
    if duplicated.any():
        first = frame.index[frame["row_key"].isin(frame.loc[duplicated, "row_key"])]
        raise ManifestError([f"row {i + 1}: same image, box, kind and instance as another row" for i in first])
    frame["instance_key"] = instance_keys(frame)
    frame["file_stamp"] = frame["image"].map(_file_stamp)

    previous = collection.instances() if collection.has_instances() else None
    known: dict[str, tuple[str, str]] = {}
    if previous is not None:
        known = dict(zip(previous["row_key"], zip(previous["crop_hash"], previous["file_stamp"], strict=True),
                         strict=True))
    frame["crop_hash"] = ""
    reusable = np.zeros(len(frame), dtype=bool)
    for index, (key, stamp) in enumerate(zip(frame["row_key"], frame["file_stamp"], strict=True)):
        cached = known.get(key)
        if cached and cached[1] == stamp and stamp and collection.crop_path(cached[0]).is_file():
            frame.at[index, "crop_hash"] = cached[0]
            reusable[index] = True

    boxed = has_box(frame)
    pages = list(_pages(frame, ~reusable))
    bar = tqdm(pages, desc="cutting crops", unit="image", disable=not progress or not pages)
    skipped_rows: set[int] = set()
    for image_path, rows in bar:
        try:
            page = load_image(image_path)
        except ImageReadError as error:
            if not skip_bad:
                raise ImageReadError(f"row {rows[0] + 1}: {error}") from None
            report.skipped.extend((row + 1, str(error)) for row in rows)
            skipped_rows.update(rows)
            continue
        for row in rows:
            box = _box_of(frame.iloc[row]) if boxed[row] else None
            if box is not None and box.is_tiny:
                report.tiny_boxes.append(row + 1)
            crop: Image.Image = crop_part(page, frame["kind"].iat[row], box)
            frame.at[row, "crop_hash"] = collection.store_crop(crop)

    kept = frame.drop(index=sorted(skipped_rows))
    previous_keys = set(previous["row_key"]) if previous is not None else set()
    for key, is_reused in zip(kept["row_key"], reusable[kept.index], strict=True):
        if key not in previous_keys:
            report.added += 1
        elif is_reused:
            report.reused += 1
        else:
            report.updated += 1

    if previous is not None:
        others = previous[~previous["row_key"].isin(kept["row_key"])]
        kept = pd.concat([others, kept], ignore_index=True)
    collection.write_instances(kept)
    meta = collection.meta()
    sources = list(meta.get("sources") or [])
    if source and source not in sources:
        sources.append(source)
    collection.update_meta(sources=sources)
    return report
