"""Boxes a person adds or deletes: edit-log events written through into the collection's parts table.

A box edit is an ``add_box`` or ``delete_box`` event in the edit log (who, when, undoable like every
edit). Its ``row`` holds the whole parts-table row it adds or removes, so :func:`sync_boxes` can bring
the table (``instances.parquet``) in line with the log at any time: active adds present, active deletes
absent, and undone ones reversed. The table is what ``embed``, ``cluster`` and the viewer read, so a
deleted box stays deleted and an added box is a real part across re-clustering. A later
``comicid import`` re-syncs the table after its upsert, so re-importing a source does not bring a
deleted box back (the log is the record; the table follows it).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pandas as pd

from comicid.data.crops import Box, check_box_fits, crop_part
from comicid.data.images import load_image
from comicid.data.manifest import BOX_COLUMNS, instance_keys, part_locators
from comicid.errors import ImageReadError
from comicid.identity.curation import Curator, EditError, active_edits
from comicid.store.collection import Collection
from comicid.store.edits import EditEvent, EditLog
from comicid.store.ingest import row_keys

BOX_KINDS = ("face", "body")
#: The ``origin`` of parts drawn in the viewer (an import never removes rows of another origin).
ORIGIN = "viewer"
MIN_SIDE = 4.0


def _record(row: pd.Series) -> dict[str, Any]:
    """One parts-table row as JSON (NaN -> null), to be stored in an event and restored from it."""
    return json.loads(pd.DataFrame([row]).to_json(orient="records"))[0]


def delete_box(curator: Curator, instance_key: str, kind: str, who: str | None = None) -> EditEvent:
    """Delete the ``kind`` part of an instance (e.g. a false detection); one undoable event."""
    with curator.collection.writer("edit"):  # busy collection: refused before anything is logged
        parts = curator.collection.instances()
        match = parts[(parts["instance_key"] == instance_key) & (parts["kind"] == kind)]
        if match.empty:
            raise EditError(f"instance {instance_key!r} has no {kind!r} part")
        event = curator.log.append("delete_box", {"instance": instance_key, "kind": kind,
                                                  "row": _record(match.iloc[0])}, who)
        sync_boxes(curator.collection)
    return event


def add_box(curator: Curator, book: str, page: str, kind: str, box: list[float],
            identity: str | None = None, who: str | None = None) -> EditEvent:
    """Draw a new ``kind`` box on a page (pixels x0, y0, x1, y1, inside the page), optionally as ``identity``.

    The crop is cut with the collection's one crop rule (:func:`comicid.data.crops.crop_part`) and
    stored; the new instance is keyed ``book/viewer-<hex>``.
    """
    if kind not in BOX_KINDS:
        raise EditError(f"kind must be one of {', '.join(BOX_KINDS)}, got {kind!r}")
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        raise EditError("box must be four numbers: x0, y0, x1, y1 in page pixels")
    target = Box(*(float(v) for v in box))
    parts = curator.collection.instances()
    on_page = parts[(parts["book"] == book) & (parts["page"] == page)]
    if on_page.empty:
        raise EditError(f"no page {book}/{page}")
    if identity:
        state = curator.state()
        if identity not in state.members() and identity not in state.roster:
            raise EditError(f"no identity {identity!r}")
    template = on_page.iloc[0]
    try:
        image = load_image(str(template["image"]))
    except ImageReadError as error:
        raise EditError(f"cannot read the page image: {error}") from None
    width, height = image.size
    if not (0 <= target.x0 < target.x1 <= width and 0 <= target.y0 < target.y1 <= height):
        raise EditError(f"box {box} is not inside the {width}x{height} page (need 0 <= x0 < x1 <= width, "
                        "0 <= y0 < y1 <= height)")
    if target.width < MIN_SIDE or target.height < MIN_SIDE:
        raise EditError(f"box {box} is smaller than {MIN_SIDE:g} pixels on a side")
    problem = check_box_fits(kind, target, image.size)
    if problem:
        raise EditError(problem)
    crop = curator.collection.store_crop(crop_part(image, kind, target))
    row = template.copy()
    for column in row.index:
        if column in ("identity", "instance", "panel", "sequence", "text", "role", "source", "split") \
                and isinstance(row[column], str):
            row[column] = ""
    row["kind"], row["instance"], row["origin"] = kind, f"viewer-{uuid.uuid4().hex[:10]}", ORIGIN
    row["crop_hash"] = crop
    for column, value in zip(BOX_COLUMNS, (target.x0, target.y0, target.x1, target.y1), strict=True):
        row[column] = value
    frame = pd.DataFrame([row])
    frame["instance_key"] = instance_keys(frame)
    frame["row_key"] = row_keys(frame, frame["instance_key"])
    frame["locator"] = part_locators(frame)
    record = _record(frame.iloc[0])
    with curator.collection.writer("edit"):
        event = curator.log.append("add_box", {"instance": record["instance_key"], "kind": kind, "row": record,
                                               "identity": identity or ""}, who)
        sync_boxes(curator.collection)
    return event


def undo_or_redo(curator: Curator, kind: str, who: str | None = None) -> tuple[EditEvent, bool]:
    """``curator.undo`` or ``curator.redo``, and whether the parts table changed (a box edit was switched).

    Only switching a box edit takes the writer lock, so undoing a merge still works while a long
    ``comicid cluster`` holds it.
    """
    state = curator.state()
    target = state.undo_target if kind == "undo" else state.redo_target
    switch = curator.undo if kind == "undo" else curator.redo
    boxed = any(event.seq == target and event.type in ("add_box", "delete_box") for event in curator.log.events())
    if not boxed:
        return switch(who=who), False
    with curator.collection.writer("edit"):
        event = switch(who=who)
        return event, sync_boxes(curator.collection)


def sync_boxes(collection: Collection) -> bool:
    """Bring the parts table in line with the box events of the log (after an edit, undo, redo or import).

    Returns whether the table changed. Runs under the collection's writer lock.
    """
    events = EditLog(collection.root).events()
    boxes = [event for event in events if event.type in ("add_box", "delete_box")]
    if not boxes:
        return False
    active = {event.seq for event in active_edits(events)[0]}
    with collection.writer("edit"):
        parts = collection.instances()
        keys = set(parts["row_key"])
        present: dict[str, dict[str, Any]] = {}
        absent: set[str] = set()
        for event in boxes:
            row, key = event.data["row"], str(event.data["row"]["row_key"])
            keep = (event.type == "add_box") == (event.seq in active)
            if keep:
                present[key] = row
                absent.discard(key)
            else:
                absent.add(key)
                present.pop(key, None)
        missing = [row for key, row in present.items() if key not in keys]
        drop = parts["row_key"].isin(absent)
        if not missing and not drop.any():
            return False
        restored = pd.DataFrame(missing, columns=parts.columns).astype(parts.dtypes.to_dict(), errors="ignore")
        collection.write_instances(pd.concat([parts[~drop], restored], ignore_index=True))
    return True
