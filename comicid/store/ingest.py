"""Put manifest rows into a collection: cut crops, cache them by content, upsert the parts table.

Import is a true upsert keyed by stable ids. Each row's ``row_key`` hashes its instance key and kind:
``book/instance`` for rows with an instance id (so a corrected box or label replaces the row instead
of adding a second face), and the part's locator (image, box, kind) for rows without one; a key never
depends on a row's position. Re-importing a row with the same key updates its labels and reuses its
crop when its pixels (image file, box) are unchanged; rows with new keys are added; rows that an
earlier import of the *same source* brought and that the source no longer has are removed and
listed in :attr:`IngestReport.removed`; rows of other sources stay. After the merge no instance may
have two faces, two bodies or two identities, whichever sources its rows came from.

Pages are decoded once per import however many boxes they carry. Each box is checked against its page
before it is cut (:func:`check_box_fits`), so a tiny file cannot ask for a gigapixel crop. The whole
import runs under the collection's writer lock (:mod:`comicid.store.lock`), and the parts table is
replaced atomically at the end, so an interrupted import leaves the previous collection intact; the
only trace it can leave is content-addressed crops that a later import reuses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from comicid.data.crops import Box, check_box_fits, crop_part
from comicid.data.images import file_stamp, load_image
from comicid.data.manifest import BOX_COLUMNS, display_key, has_box, instance_keys, part_locators
from comicid.errors import CollectionError, ImageReadError, ManifestError
from comicid.store.collection import Collection


@dataclass
class IngestReport:
    """What an import did; every row is accounted for in exactly one of added/updated/reused/skipped."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    reused: int = 0  # crop reused from the cache; labels are refreshed from the manifest
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number from 1, reason)
    tiny_boxes: list[int] = field(default_factory=list)  # row numbers from 1, kept but reported
    removed: list[str] = field(default_factory=list)  # parts (book/instance kind) gone from the source

    def summary(self) -> str:
        text = (f"{self.rows} rows: {self.added} added, {self.updated} re-cut, {self.reused} reused, "
                f"{len(self.skipped)} skipped")
        if self.removed:
            text += f"; {len(self.removed)} parts removed (no longer in the source)"
        if self.tiny_boxes:
            text += f"; {len(self.tiny_boxes)} tiny boxes (< 4 px) kept"
        return text


def row_keys(frame: pd.DataFrame, keys: pd.Series | None = None) -> pd.Series:
    """Stable key of each row: its instance key and kind (one instance has at most one part per kind)."""
    keys = instance_keys(frame) if keys is None else keys
    joined = (key + "\x1f" + kind for key, kind in zip(keys, frame["kind"], strict=True))
    return pd.Series([hashlib.sha1(text.encode()).hexdigest()[:20] for text in joined], index=frame.index,
                     dtype=object)


def _box_of(row: pd.Series) -> Box | None:
    if any(pd.isna(row[c]) for c in BOX_COLUMNS):
        return None
    return Box(*(float(row[c]) for c in BOX_COLUMNS))


@dataclass(frozen=True)
class PageJob:
    """One page to decode and the rows to cut from it (row numbers from 0 in the import's frame)."""

    image: str
    rows: tuple[int, ...]
    kinds: tuple[str, ...]
    boxes: tuple[Box | None, ...]


@dataclass
class PageCut:
    """What cutting one page gave, row for row: the crop's hash, or why the box was not cut
    (``problems``, "" where cut), and whether it is tiny; ``error`` when the page could not be read."""

    rows: tuple[int, ...]
    hashes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tiny: list[bool] = field(default_factory=list)
    error: str = ""


#: Cuts the pages of an import: ``(jobs, collection, progress)`` to one :class:`PageCut` per job, in any
#: order. :func:`cut_here` on this machine; :mod:`comicid.workflows.ray_import` on a Ray cluster.
Cutter = Callable[[list[PageJob], Collection, bool], Iterable[PageCut]]


def cut_page(job: PageJob, collection: Collection) -> PageCut:
    """Decode one page once and store the crop of each of its rows (content addressed, so a crop already
    in the collection is not written again). Boxes that do not fit the page are reported, not cut."""
    try:
        page = load_image(job.image)
    except ImageReadError as error:
        return PageCut(job.rows, error=str(error))
    done = PageCut(job.rows)
    for kind, box in zip(job.kinds, job.boxes, strict=True):
        problem = check_box_fits(kind, box, page.size) if box is not None else None
        crop: Image.Image | None = None if problem else crop_part(page, kind, box)
        done.hashes.append(collection.store_crop(crop) if crop is not None else "")
        done.problems.append(problem or "")
        done.tiny.append(bool(box is not None and not problem and box.is_tiny))
    return done


def cut_here(jobs: list[PageJob], collection: Collection, progress: bool) -> Iterator[PageCut]:
    """The single-machine cutter: pages one after another, with a progress bar."""
    for job in tqdm(jobs, desc="cutting crops", unit="image", disable=not progress or not jobs):
        yield cut_page(job, collection)


def _pages(frame: pd.DataFrame, todo: np.ndarray) -> Iterator[tuple[str, list[int]]]:
    """Rows to cut, grouped by image so that each page is decoded once (first-seen order)."""
    groups: dict[str, list[int]] = {}
    for index in np.flatnonzero(todo):
        groups.setdefault(frame["image"].iat[index], []).append(int(index))
    yield from groups.items()


def _upgraded(previous: pd.DataFrame) -> pd.DataFrame:
    """A parts table written before stable keys: recompute its keys, mark its rows as of no source."""
    if "origin" in previous.columns and "locator" in previous.columns:
        return previous
    previous = previous.copy()
    previous["instance_key"] = instance_keys(previous)
    previous["row_key"] = row_keys(previous, previous["instance_key"])
    previous["locator"] = part_locators(previous)
    previous["origin"] = ""
    return previous.drop_duplicates("row_key", keep="last").reset_index(drop=True)


def _merge_problems(parts: pd.DataFrame) -> list[str]:
    """Instances that the merged table gives two faces, two bodies or two identities (from several sources)."""
    keys = parts["instance_key"]
    repeated = parts.duplicated(["instance_key", "kind"], keep=False)
    mixed = parts["kind"].eq("character").groupby(keys).transform("any") & (keys.map(keys.value_counts()) > 1)
    labelled = parts[parts["identity"] != ""]
    identity_counts = labelled.groupby("instance_key")["identity"].nunique()
    bad = set(keys[repeated | mixed]) | set(identity_counts.index[identity_counts > 1])
    problems: list[str] = []
    for key in sorted(bad):  # vectorised above: a collection of 100k parts is checked in well under a second
        group = parts[keys == key]
        kinds = group["kind"].tolist()
        identities = sorted({value for value in group["identity"] if value})
        origins = ", ".join(sorted({value or "(no source)" for value in group["origin"]}))
        problems.append(f"instance '{display_key(str(key))}' would get parts {sorted(kinds)} and identities "
                        f"{identities} from the sources {origins}")
    return problems


def ingest(frame: pd.DataFrame, collection: Collection, skip_bad: bool = False,
           progress: bool = True, source: str | None = None, cutter: Cutter | None = None) -> IngestReport:
    """Import a validated manifest into ``collection`` (under its writer lock).

    ``source`` names where the rows come from (the CLI passes the resolved SRC path): rows that an
    earlier import of the same source brought and that ``frame`` no longer has are removed and
    listed in ``report.removed``. Without ``source`` nothing is removed. ``cutter`` decodes the pages and
    cuts the crops (default :func:`cut_here`, this machine); the parts table is written here either way.

    Raises:
        ImageReadError: an image is missing or unreadable and ``skip_bad`` is false; the message
            names the first row that uses it. With ``skip_bad`` such rows are skipped and counted.
        ManifestError: two rows locate the same part, or a box does not fit its page (skipped and
            counted with ``skip_bad``).
        CollectionError: the collection is busy (another writer), or the merge would give an
            instance two faces, two bodies or two identities.
    """
    with collection.writer("import"):
        return _ingest(frame, collection, skip_bad, progress, source, cutter)


def _ingest(frame: pd.DataFrame, collection: Collection, skip_bad: bool, progress: bool,
            source: str | None, cutter: Cutter | None) -> IngestReport:
    frame = frame.reset_index(drop=True).copy()
    report = IngestReport(rows=len(frame))
    frame["instance_key"] = instance_keys(frame)
    frame["row_key"] = row_keys(frame, frame["instance_key"])
    frame["locator"] = part_locators(frame)
    duplicated = frame["row_key"].duplicated(keep=False)
    if duplicated.any():
        raise ManifestError([f"row {i + 1}: same image, box and kind as another row without an instance id"
                             for i in np.flatnonzero(duplicated.to_numpy())])
    frame["file_stamp"] = frame["image"].map(file_stamp)
    frame["origin"] = source or ""

    previous = _upgraded(collection.instances()) if collection.has_instances() else None
    known: dict[str, tuple[str, str, str]] = {}
    if previous is not None:
        known = dict(zip(previous["row_key"], zip(previous["crop_hash"], previous["file_stamp"],
                                                  previous["locator"], strict=True), strict=True))
    frame["crop_hash"] = ""
    reusable = np.zeros(len(frame), dtype=bool)
    for index, (key, stamp, locator) in enumerate(zip(frame["row_key"], frame["file_stamp"], frame["locator"],
                                                      strict=True)):
        cached = known.get(key)
        if cached and cached[1] == stamp and stamp and cached[2] == locator \
                and collection.crop_path(cached[0]).is_file():
            frame.at[index, "crop_hash"] = cached[0]
            reusable[index] = True

    boxed = has_box(frame)
    jobs = [PageJob(image, tuple(rows), tuple(frame["kind"].iat[row] for row in rows),
                    tuple(_box_of(frame.iloc[row]) if boxed[row] else None for row in rows))
            for image, rows in _pages(frame, ~reusable)]
    skipped_rows: set[int] = set()
    bad_boxes: list[tuple[int, str]] = []
    for done in (cutter or cut_here)(jobs, collection, progress):
        if done.error:
            if not skip_bad:
                raise ImageReadError(f"row {done.rows[0] + 1}: {done.error}")
            report.skipped.extend((row + 1, done.error) for row in done.rows)
            skipped_rows.update(done.rows)
            continue
        for row, key, problem, tiny in zip(done.rows, done.hashes, done.problems, done.tiny, strict=True):
            if problem:
                bad_boxes.append((row + 1, problem))
                report.skipped.append((row + 1, problem))
                skipped_rows.add(row)
                continue
            if tiny:
                report.tiny_boxes.append(row + 1)
            frame.at[row, "crop_hash"] = key
    if bad_boxes and not skip_bad:
        raise ManifestError([f"row {number}: {problem}" for number, problem in sorted(bad_boxes)], source=source)
    report.tiny_boxes.sort()  # a cutter may finish pages in any order
    report.skipped.sort()

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
        if source:
            # Rows this source brought before and no longer has; rows it has but that were skipped
            # this time (unreadable image) stay, since the source still lists them.
            gone = (others["origin"] == source) & ~others["row_key"].isin(frame["row_key"])
            report.removed = [f"{display_key(key)} ({kind})" for key, kind in
                              zip(others.loc[gone, "instance_key"], others.loc[gone, "kind"], strict=True)]
            others = others[~gone]
        kept = pd.concat([others, kept], ignore_index=True)
    problems = _merge_problems(kept)
    if problems:
        raise CollectionError("importing would corrupt instances: " + "; ".join(problems[:5])
                              + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
                              + "; give the instances distinct ids or books")
    collection.write_instances(kept)
    meta = collection.meta()
    sources = list(meta.get("sources") or [])
    if source and source not in sources:
        sources.append(source)
    collection.update_meta(sources=sources)
    return report
