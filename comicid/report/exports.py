"""Exports of the corrected collection (machine assignment with every edit applied).

* the **roster**: one row per identity with name, aliases, attributes, counts and first appearance,
  as JSON or CSV (what translation and text-to-speech tools need);
* the **labels** as a manifest v1 whose ``identity`` column holds the identity id (re-importable with
  `comicid import`; ``character_name`` carries the roster name);
* **COCO** JSON (one annotation per face/body box, ``character_id`` and ``character_name`` as extra
  annotation fields, and a ``characters`` list);
* the **edit log** as JSON lines (every decision with who and when);
* **Manga109-style XML**, one file per book (``<characters>`` then ``<pages>`` with ``face``/``body``
  boxes whose ``character`` attribute is the identity id), as the Manga109 tools read it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from comicid.data.manifest import BOX_COLUMNS, COLUMNS, has_box, write_manifest
from comicid.errors import ConfigError
from comicid.identity.curation import Curator, EditState, slug
from comicid.atomic import atomic_write_text, write_table
from comicid.store.collection import Collection
from comicid.store.edits import EditLog

FORMATS = ("roster-json", "roster-csv", "labels", "coco", "manga109", "edits")


def corrected_parts(collection: Collection, state: EditState | None = None) -> pd.DataFrame:
    """The parts table with ``identity_id`` (current view) and ``character_name`` (roster) per row.

    ``state`` is the collection's current edit state when the caller has it already (replaying the edit
    log and reading the assignments again would give the same)."""
    parts = collection.instances()
    state = state if state is not None else Curator(collection).state()
    parts["identity_id"] = parts["instance_key"].map(state.labels).fillna("").astype(str)
    names = {identity: entry.name for identity, entry in state.roster.items()}
    parts["character_name"] = [names.get(identity, "") for identity in parts["identity_id"]]
    return parts


def roster(collection: Collection) -> list[dict[str, Any]]:
    """One record per identity in the current view (or only named in the roster), by first appearance."""
    state = Curator(collection).state()
    parts = corrected_parts(collection, state)
    order = parts.drop_duplicates("instance_key")
    records = []
    for identity, rows in order[order["identity_id"] != ""].groupby("identity_id", sort=False):
        entry = state.roster.get(identity)
        first = rows.iloc[0]
        records.append({
            "identity_id": identity, "name": entry.name if entry else "",
            "aliases": list(entry.aliases) if entry else [], "attributes": dict(entry.attributes) if entry else {},
            "instances": int(len(rows)), "books": sorted(rows["book"].unique().tolist()),
            "first_appearance": {"book": str(first["book"]), "page": str(first["page"]), "panel": str(first["panel"])},
            "confirmed": int(sum(key in state.confirmed for key in rows["instance_key"])),
        })
    return records


def write_roster(collection: Collection, path: str | Path, fmt: str = "json") -> Path:
    records = roster(collection)
    if fmt == "json":
        atomic_write_text(path, json.dumps({"identities": records}, indent=2, ensure_ascii=False) + "\n")
        return Path(path)
    flat = pd.DataFrame([{**record, "aliases": ";".join(record["aliases"]),
                          "attributes": json.dumps(record["attributes"], ensure_ascii=False, sort_keys=True),
                          "books": ";".join(record["books"]),
                          "first_appearance": "/".join(record["first_appearance"].values())} for record in records],
                        columns=["identity_id", "name", "aliases", "attributes", "instances", "books",
                                 "first_appearance", "confirmed"])
    return write_table(flat, path)


def write_labels(collection: Collection, path: str | Path) -> Path:
    """A manifest v1 of every part with the current identity id as its ``identity`` (split cleared: these are
    predictions, not held-out truth)."""
    parts = corrected_parts(collection)
    out = parts[[column for column in COLUMNS if column in parts.columns]].copy()
    out["identity"] = parts["identity_id"]
    out["split"] = ""
    out["character_name"] = parts["character_name"]
    return write_manifest(out, path)


def _page_sizes(images: list[str]) -> dict[str, tuple[int, int]]:
    sizes = {}
    for image in images:
        try:
            with Image.open(image) as handle:
                sizes[image] = handle.size
        except OSError:
            sizes[image] = (0, 0)  # recorded as unknown rather than dropped; COCO readers accept 0
    return sizes


def write_coco(collection: Collection, path: str | Path) -> Path:
    parts = corrected_parts(collection)
    parts = parts[has_box(parts)].reset_index(drop=True)
    images = sorted(parts["image"].unique().tolist())
    sizes = _page_sizes(images)
    image_ids = {image: number for number, image in enumerate(images, start=1)}
    kinds = sorted(parts["kind"].unique().tolist())
    characters = sorted(i for i in parts["identity_id"].unique() if i)
    names = dict(zip(parts["identity_id"], parts["character_name"]))
    annotations = []
    for number, row in enumerate(parts.itertuples(index=False), start=1):
        x0, y0, x1, y1 = (float(getattr(row, c)) for c in BOX_COLUMNS)
        annotations.append({"id": number, "image_id": image_ids[row.image], "category_id": kinds.index(row.kind) + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                            "character_id": row.identity_id, "character_name": row.character_name,
                            "instance": row.instance, "book": row.book, "page": row.page, "panel": row.panel})
    document = {
        "info": {"description": f"comicid export of {collection.root.name}"},
        "images": [{"id": image_ids[i], "file_name": i, "width": sizes[i][0], "height": sizes[i][1]} for i in images],
        "categories": [{"id": n, "name": kind} for n, kind in enumerate(kinds, start=1)],
        "characters": [{"id": c, "name": names.get(c, "")} for c in characters],
        "annotations": annotations,
    }
    atomic_write_text(path, json.dumps(document, ensure_ascii=False) + "\n")
    return Path(path)


def write_manga109(collection: Collection, folder: str | Path) -> list[Path]:
    """``folder/<book>.xml`` per book; face/body boxes only (Manga109 has no other part kinds)."""
    parts = corrected_parts(collection)
    parts = parts[has_box(parts) & parts["kind"].isin(["face", "body"])].reset_index(drop=True)
    written = []
    for book, rows in parts.groupby("book", sort=True):
        root = ET.Element("book", title=str(book))
        characters = ET.SubElement(root, "characters")
        for identity in sorted(i for i in rows["identity_id"].unique() if i):
            name = rows.loc[rows["identity_id"] == identity, "character_name"].iloc[0]
            ET.SubElement(characters, "character", id=identity, name=name or identity)
        pages = ET.SubElement(root, "pages")
        images = list(dict.fromkeys(rows["image"]))
        sizes = _page_sizes(images)
        for index, image in enumerate(images):
            page = ET.SubElement(pages, "page", index=str(index), width=str(sizes[image][0]),
                                 height=str(sizes[image][1]))
            for number, row in enumerate(rows[rows["image"] == image].itertuples(index=False)):
                box = {c: str(int(round(float(getattr(row, c))))) for c in BOX_COLUMNS}
                ET.SubElement(page, row.kind, id=f"{slug(row.instance)}-{row.kind}-{number}",
                              xmin=box["x0"], ymin=box["y0"], xmax=box["x1"], ymax=box["y1"],
                              character=row.identity_id or "unknown")
        ET.indent(root)
        target = Path(folder) / f"{slug(str(book))}.xml"
        atomic_write_text(target, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
        written.append(target)
    return written


def export(collection: Collection, fmt: str, out: str | Path) -> list[Path]:
    """Write ``fmt`` (one of :data:`FORMATS`) to ``out`` (a folder for ``manga109``)."""
    if fmt == "roster-json":
        return [write_roster(collection, out, "json")]
    if fmt == "roster-csv":
        return [write_roster(collection, out, "csv")]
    if fmt == "labels":
        return [write_labels(collection, out)]
    if fmt == "coco":
        return [write_coco(collection, out)]
    if fmt == "manga109":
        return write_manga109(collection, out)
    if fmt == "edits":
        return [EditLog(collection.root).export(out)]
    raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "corrected_parts", "export", "roster", "write_coco", "write_labels", "write_manga109",
           "write_roster"]
