"""The ANN index stored with a collection: built by `comicid index`, after `embed` above a size, kept
up to date incrementally, used by `search`.

Layout: ``COLLECTION/index/<model id>/`` holds ``index.faiss.npy`` (the faiss HNSW index, see
:mod:`comicid.search.ann`), ``keys.npy`` (the instance key of each index row) and ``index.json``
(search effort, measured recall@10, sizes). One index per
embedding model, since vectors of two models are not comparable.

Staying current: instances imported after the index was built are *added* (their rows appended; the
trained centroids kept). The index is rebuilt from scratch instead when an indexed instance is gone or
its vector changed (e.g. a part added to it); an IVF index (``--kind ivf``) also when the collection
has grown past :data:`REBUILD_GROWTH` times the size its centroids were trained on.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from comicid.errors import CollectionError
from comicid.search.ann import AnnIndex, Recall
from comicid.atomic import atomic_write, atomic_write_text
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings

#: `comicid embed` builds or updates the index by itself from this many instances on; `search` uses a
#: stored index whenever one exists, and exact search otherwise.
INDEX_MIN_INSTANCES = 20_000
#: Rebuild (re-train centroids) once the collection holds this many times the trained size.
REBUILD_GROWTH = 4.0
#: A stored vector counts as changed when it moved more than this (cosine units).
VECTOR_TOLERANCE = 1e-5


@dataclass
class IndexInfo:
    """What a build or update did, and what the stored index measures."""

    model_id: str
    instances: int
    added: int
    rebuilt: bool
    kind: str
    nlist: int
    effort: int
    recall_at_10: float
    trained_on: int
    seconds: float


def index_folder(collection: Collection, model_id: str) -> Path:
    return collection.root / "index" / re.sub(r"[^A-Za-z0-9._@-]", "_", model_id)


def load_collection_index(collection: Collection, model_id: str) -> tuple[AnnIndex, np.ndarray, dict] | None:
    """``(index, keys, info)`` of the stored index of ``model_id``, or None when there is none."""
    folder = index_folder(collection, model_id)
    if not (folder / "index.json").is_file():
        return None
    try:
        info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        keys = np.load(folder / "keys.npy", allow_pickle=False)
        index = AnnIndex.deserialise(np.load(folder / "index.faiss.npy", allow_pickle=False), info["effort"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise CollectionError(f"cannot read the index in '{folder}' ({error}); rebuild it with "
                              "`comicid index --rebuild`") from None
    if len(keys) != len(index):
        raise CollectionError(f"the index in '{folder}' has {len(index)} rows but {len(keys)} keys; rebuild it "
                              "with `comicid index --rebuild`")
    return index, keys.astype(str), info


def _save(collection: Collection, model_id: str, index: AnnIndex, keys: np.ndarray, info: IndexInfo) -> None:
    folder = index_folder(collection, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    # Index first, keys second, metadata last: a reader trusts index.json only once all three agree.
    with atomic_write(folder / "index.faiss.npy", "wb") as handle:
        np.save(handle, index.serialise())
    with atomic_write(folder / "keys.npy", "wb") as handle:
        np.save(handle, np.asarray(keys, dtype=str))
    atomic_write_text(folder / "index.json", json.dumps(asdict(info), indent=2, sort_keys=True) + "\n")


def update_collection_index(collection: Collection, embedded: InstanceEmbeddings, rebuild: bool = False,
                            nlist: int | None = None, kind: str = "hnsw") -> tuple[IndexInfo, AnnIndex, np.ndarray]:
    """Build the index of ``embedded`` (the collection's instances under one model) or bring it up to date.

    Returns what was done, the index and the instance key of each of its rows.
    Instances without evidence (zero vectors) are indexed too, so index rows and instance keys stay one
    to one; a zero vector scores 0 against every query and never ranks above a real match.
    """
    started = time.perf_counter()
    keys = embedded.table["instance_key"].astype(str).to_numpy()
    vectors = np.ascontiguousarray(embedded.vectors, dtype=np.float32)
    stored = None if rebuild else load_collection_index(collection, embedded.model_id)
    if stored is not None and nlist is None and stored[0].kind == kind:
        index, stored_keys, info = stored
        position = {key: row for row, key in enumerate(keys)}
        rows = np.array([position.get(key, -1) for key in stored_keys], dtype=np.int64)
        unchanged = (rows >= 0).all() and (
            len(rows) == 0 or np.abs(index.vectors() - vectors[rows]).max() <= VECTOR_TOLERANCE)
        grown = index.kind == "ivf" and len(keys) > REBUILD_GROWTH * max(1, int(info.get("trained_on", len(stored_keys))))
        if unchanged and not grown:
            new = np.setdiff1d(np.arange(len(keys)), rows, assume_unique=True)
            if len(new):
                index.add(vectors[new])
                recall = index.tune(np.concatenate([vectors[rows], vectors[new]]))
            else:
                recall = Recall(k=10, recall=float(info["recall_at_10"]), effort=index.effort, queries=0)
            result = IndexInfo(model_id=embedded.model_id, instances=len(index), added=len(new), rebuilt=False,
                               kind=index.kind, nlist=index.nlist, effort=index.effort, recall_at_10=recall.recall,
                               trained_on=int(info.get("trained_on", len(stored_keys))),
                               seconds=time.perf_counter() - started)
            all_keys = np.concatenate([stored_keys, keys[new]])
            if len(new):
                _save(collection, embedded.model_id, index, all_keys, result)
            return result, index, all_keys
    if len(keys) == 0:
        raise CollectionError(f"'{collection.root}' holds no instances to index")
    index = AnnIndex.build(vectors, kind=kind, nlist=nlist)
    assert index.recall is not None
    result = IndexInfo(model_id=embedded.model_id, instances=len(index), added=len(keys), rebuilt=True,
                       kind=index.kind, nlist=index.nlist, effort=index.effort, recall_at_10=index.recall.recall,
                       trained_on=len(keys), seconds=time.perf_counter() - started)
    _save(collection, embedded.model_id, index, keys, result)
    return result, index, keys


def rows_of_keys(embedded: InstanceEmbeddings, keys: np.ndarray) -> np.ndarray:
    """Row in ``embedded`` of each index key (-1 where the instance is gone)."""
    position = {key: row for row, key in enumerate(embedded.table["instance_key"].astype(str))}
    return np.array([position.get(str(key), -1) for key in keys], dtype=np.int64)
