"""What the viewer shows, computed from a collection: pages, identities, instances, nearest neighbours.

The web app (:mod:`comicid.web.app`) is a thin shell over this class; a notebook can use it too. Tables
are indexed once at start-up (one row per instance, positions by key, rows by page) so that each request
touches only the rows it returns: at 100,000 instances a gallery page or a page of boxes costs a few
milliseconds. Identity summaries are recomputed only when the edit log or the assignment changes.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.data.manifest import BOX_COLUMNS, display_key
from comicid.errors import CollectionError, ConfigError
from comicid.identity.curation import Curator, EditState
from comicid.search.index import ExactIndex
from comicid.store.collection import Collection
from comicid.store.vectors import load_instance_vectors

MAX_LIMIT = 500
_HASH = re.compile(r"[0-9a-f]{64}")
_PART_ORDER = {"face": 0, "character": 1, "body": 2}


class NotFound(ConfigError):
    """A book, page, identity, instance or crop the collection does not have."""


@dataclass
class _Summary:
    state: EditState
    identities: pd.DataFrame  # identity_id, name, count, books, cover, confirmed, mean_confidence
    labels: np.ndarray  # identity per instance row ("" unknown)


class ViewerData:
    """Read-side queries and edits of one collection for the viewer."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.curator = Curator(collection)
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """(Re)index the parts table: at start-up and after a box was added or deleted."""
        collection = self.collection
        parts = collection.instances()
        parts = parts.assign(_order=parts["kind"].map(_PART_ORDER).fillna(3))
        first = parts.sort_values(["_order"], kind="stable").drop_duplicates("instance_key")
        order = pd.unique(parts["instance_key"])
        instances = first.set_index("instance_key").loc[order].reset_index()
        self.instances = instances[["instance_key", "book", "page", "panel", "image", "text", "crop_hash"]].copy()
        self.instances["key"] = self.instances["instance_key"].map(display_key)
        self.row_of = {key: i for i, key in enumerate(self.instances["key"])}
        self.parts = parts[["instance_key", "kind", "crop_hash", "image", *BOX_COLUMNS]].reset_index(drop=True)
        self.parts_of = self.parts.groupby("instance_key", sort=False).indices
        pages = self.instances.groupby(["book", "page"], sort=True)
        self.page_rows = {key: rows for key, rows in pages.indices.items()}
        self.page_images = {key: str(self.instances["image"].iat[rows[0]]) for key, rows in self.page_rows.items()}
        self.books = sorted(self.instances["book"].unique().tolist())
        self.pages_of: dict[str, list[str]] = {}
        for book, page in sorted(self.page_rows):
            self.pages_of.setdefault(book, []).append(page)
        self.crop_hashes = set(self.parts["crop_hash"].tolist())
        try:
            confidence = collection.assignments().set_index("instance_key")["confidence"]
            self.confidence = confidence.reindex(self.instances["instance_key"]).fillna(0.0).to_numpy()
        except CollectionError:
            self.confidence = np.zeros(len(self.instances))
        self._summary: _Summary | None = None
        self._index: tuple[ExactIndex, np.ndarray] | None = None

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> EditState:
        return self.curator.state()

    def summary(self) -> _Summary:
        with self._lock:
            state = self.state()
            if self._summary is None or self._summary.state is not state:
                labels = self.instances["instance_key"].map(state.labels).fillna("").to_numpy(dtype=object)
                confirmed = self.instances["instance_key"].isin(state.confirmed.keys()).to_numpy()
                frame = pd.DataFrame({"identity_id": labels, "book": self.instances["book"].to_numpy(),
                                      "row": np.arange(len(labels)), "confirmed": confirmed,
                                      "confidence": self.confidence})
                frame = frame[frame["identity_id"] != ""]
                grouped = frame.groupby("identity_id", sort=False)
                books: dict[str, list[str]] = {}  # a plain loop: a per-group pandas function costs seconds at 30k groups
                for identity, book in frame[["identity_id", "book"]].drop_duplicates().sort_values("book").itertuples(
                        index=False):
                    books.setdefault(identity, []).append(book)
                table = pd.DataFrame({
                    "count": grouped.size(), "cover": grouped["row"].first(),
                    "confirmed": grouped["confirmed"].sum(), "mean_confidence": grouped["confidence"].mean(),
                }).reset_index()
                table["books"] = table["identity_id"].map(books)
                table["name"] = table["identity_id"].map(lambda i: state.roster[i].name if i in state.roster else "")
                table = table.sort_values(["count", "identity_id"], ascending=[False, True], kind="stable")
                self._summary = _Summary(state, table.reset_index(drop=True), labels)
            return self._summary

    # -- reads ----------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        summary, state = self.summary(), self.state()
        return {"collection": self.collection.root.name, "instances": int(len(self.instances)),
                "identities": int(len(summary.identities)), "unknown": int((summary.labels == "").sum()),
                "books": [{"book": book, "pages": self.pages_of[book]} for book in self.books],
                "edits": len(state.active), "can_undo": state.undo_target is not None,
                "can_redo": state.redo_target is not None, "search": self._has_vectors()}

    def identities(self, book: str = "", query: str = "", offset: int = 0, limit: int = 60) -> dict[str, Any]:
        summary = self.summary()
        table = summary.identities
        if book:
            table = table[table["books"].map(lambda books: book in books)]
        if query:
            needle = query.lower()
            aliased = {identity for identity, entry in self.state().roster.items()
                       if any(needle in alias.lower() for alias in entry.aliases)}
            table = table[table["identity_id"].str.lower().str.contains(needle, regex=False)
                          | table["name"].str.lower().str.contains(needle, regex=False)
                          | table["identity_id"].isin(aliased)]
        offset, limit = _page(offset, limit)
        rows = table.iloc[offset:offset + limit]
        return {"total": int(len(table)), "offset": offset, "items": [
            {"id": r.identity_id, "name": r.name, "count": int(r.count), "books": list(r.books),
             "confirmed": int(r.confirmed), "mean_confidence": round(float(r.mean_confidence), 3),
             "cover": self._instance_brief(int(r.cover), summary.labels)} for r in rows.itertuples()]}

    def identity(self, identity_id: str, offset: int = 0, limit: int = 60) -> dict[str, Any]:
        summary, state = self.summary(), self.state()
        rows = np.flatnonzero(summary.labels == identity_id)
        if not len(rows) and identity_id not in state.roster:
            raise NotFound(f"no identity {identity_id!r}")
        entry = state.roster.get(identity_id)
        offset, limit = _page(offset, limit)
        return {"id": identity_id, "name": entry.name if entry else "", "aliases": entry.aliases if entry else [],
                "attributes": entry.attributes if entry else {}, "total": int(len(rows)), "offset": offset,
                "items": [self._instance_brief(int(row), summary.labels) for row in rows[offset:offset + limit]]}

    def instance_list(self, book: str = "", identity: str = "", unknown: bool = False, max_confidence: float | None = None,
                      offset: int = 0, limit: int = 60) -> dict[str, Any]:
        summary = self.summary()
        labels = summary.labels
        mask = np.ones(len(labels), dtype=bool)
        if book:
            mask &= (self.instances["book"] == book).to_numpy()
        if identity:
            mask &= labels == identity
        if unknown:
            mask &= labels == ""
        if max_confidence is not None:
            mask &= (self.confidence < max_confidence) & (labels != "")
        rows = np.flatnonzero(mask)
        offset, limit = _page(offset, limit)
        return {"total": int(len(rows)), "offset": offset,
                "items": [self._instance_brief(int(row), summary.labels) for row in rows[offset:offset + limit]]}

    def page(self, book: str, page: str) -> dict[str, Any]:
        rows = self.page_rows.get((book, page))
        if rows is None:
            raise NotFound(f"no page {book}/{page}")
        pages = self.pages_of[book]
        at = pages.index(page)
        labels, state = self.summary().labels, self.state()
        boxes = []
        for row in rows:
            key = self.instances["instance_key"].iat[row]
            identity = str(labels[row])
            for part in self.parts_of[key]:
                box = self.parts.iloc[part]
                if pd.isna(box["x0"]):
                    continue
                boxes.append({"instance": self.instances["key"].iat[row], "kind": box["kind"],
                              "crop": f"/crops/{box['crop_hash']}.png",
                              "box": [float(box[c]) for c in BOX_COLUMNS], "identity": identity,
                              "name": state.roster[identity].name if identity in state.roster else ""})
        return {"book": book, "page": page, "image": f"/page-image?book={quote(book)}&page={quote(page)}",
                "previous": pages[at - 1] if at > 0 else None, "next": pages[at + 1] if at + 1 < len(pages) else None,
                "boxes": boxes}

    def instance(self, key: str) -> dict[str, Any]:
        row = self._row(key)
        record = self.instances.iloc[row]
        parts = {self.parts["kind"].iat[p]: f"/crops/{self.parts['crop_hash'].iat[p]}.png"
                 for p in self.parts_of[record["instance_key"]]}
        summary, state = self.summary(), self.state()
        identity = str(summary.labels[row])
        return {**self._instance_brief(row, summary.labels), "parts": parts, "text": str(record["text"]),
                "panel": str(record["panel"]), "confidence": round(float(self.confidence[row]), 3),
                "confirmed": record["instance_key"] in state.confirmed,
                "rejected": sorted(i for (k, i) in state.cannot if k == record["instance_key"]),
                "name": state.roster[identity].name if identity in state.roster else ""}

    def similar(self, key: str, k: int = 12) -> dict[str, Any]:
        row = self._row(key)
        index, rows_of_vectors = self._vector_index()
        position = rows_of_vectors[row]
        if position < 0:
            raise NotFound(f"instance {key!r} has no vector")
        k = max(1, min(int(k), 100))
        scores, found = index.search(np.asarray(index.vectors[position:position + 1]), k + 1)
        vector_rows = self._vector_rows
        labels = self.summary().labels
        items = [{**self._instance_brief(int(vector_rows[i]), labels), "score": round(float(s), 4)}
                 for s, i in zip(scores[0], found[0]) if int(i) != position][:k]
        return {"query": key, "items": items}

    def crop_path(self, name: str) -> Path:
        """The file of crop ``<hash>.png``; only hashes the collection holds, so no path can escape it."""
        stem = name[:-4] if name.endswith(".png") else ""
        if not _HASH.fullmatch(stem) or stem not in self.crop_hashes:
            raise NotFound(f"no crop {name!r}")
        return self.collection.crop_path(stem)

    def page_path(self, book: str, page: str) -> Path:
        """A page image recorded at import; looked up by id, never from a path the client sends."""
        image = self.page_images.get((book, page))
        if image is None or not Path(image).is_file():
            raise NotFound(f"no page image for {book}/{page}")
        return Path(image)

    # -- helpers --------------------------------------------------------------------------------
    def _row(self, key: str) -> int:
        if key not in self.row_of:
            raise NotFound(f"no instance {key!r}")
        return self.row_of[key]

    def _instance_brief(self, row: int, labels: np.ndarray) -> dict[str, Any]:
        record = self.instances.iloc[row]
        return {"key": record["key"], "book": str(record["book"]), "page": str(record["page"]),
                "identity": str(labels[row]), "crop": f"/crops/{record['crop_hash']}.png"}

    def _has_vectors(self) -> bool:
        return (self.collection.root / "vectors" / "instances.npy").is_file()

    def _vector_index(self) -> tuple[ExactIndex, np.ndarray]:
        if self._index is None:
            keys, vectors = load_instance_vectors(self.collection)
            by_key = {key: i for i, key in enumerate(self.instances["instance_key"])}
            rows_of_vectors = np.full(len(self.instances), -1, dtype=np.int64)
            vector_rows = np.full(len(keys), -1, dtype=np.int64)
            for position, key in enumerate(keys):
                if key in by_key:
                    rows_of_vectors[by_key[key]] = position
                    vector_rows[position] = by_key[key]
            self._vector_rows = vector_rows
            self._index = (ExactIndex(np.asarray(vectors)), rows_of_vectors)
        return self._index

    def instance_key(self, key: str) -> str:
        """The stored key of a displayed key (edits are written with stored keys)."""
        return str(self.instances["instance_key"].iat[self._row(key)])


def _page(offset: int, limit: int) -> tuple[int, int]:
    return max(0, int(offset)), max(1, min(int(limit), MAX_LIMIT))
