"""The fused instance vectors of the last clustering, kept beside the assignment.

The viewer's click-to-search and the character bank need one vector per instance without loading a
model; ``comicid cluster`` keeps them here (``COLLECTION/vectors/instances.npy`` float32 ``(N, D)``,
L2-normalised, and ``keys.parquet`` naming the instance of each row). Written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comicid.errors import CollectionError
from comicid.atomic import atomic_write
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings

VECTORS_DIR = "vectors"


def _paths(collection: Collection) -> tuple[Path, Path]:
    folder = collection.root / VECTORS_DIR
    return folder / "instances.npy", folder / "keys.parquet"


def save_instance_vectors(collection: Collection, embedded: InstanceEmbeddings) -> None:
    """Keep the vectors of ``embedded`` (``(N, D)``, one per row of its table) as the collection's instance vectors."""
    keys, vectors = embedded.table["instance_key"].astype(str).tolist(), embedded.vectors
    if len(keys) != len(vectors):
        raise CollectionError(f"{len(keys)} instance keys but {len(vectors)} vectors")
    array_path, keys_path = _paths(collection)
    with atomic_write(array_path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))
    with atomic_write(keys_path, "wb") as handle:
        pd.DataFrame({"instance_key": keys, "model": embedded.model_id}).to_parquet(handle, index=False)


def load_instance_vectors(collection: Collection) -> tuple[list[str], np.ndarray]:
    """The keys and ``(N, D)`` vectors kept by the last ``comicid cluster`` (memory-mapped)."""
    array_path, keys_path = _paths(collection)
    if not array_path.is_file() or not keys_path.is_file():
        raise CollectionError(f"'{collection.root}' keeps no instance vectors; run `comicid cluster` first")
    keys = pd.read_parquet(keys_path)["instance_key"].astype(str).tolist()
    vectors = np.load(array_path, mmap_mode="r")
    if len(keys) != len(vectors):
        raise CollectionError(f"'{array_path}' does not match '{keys_path}'; run `comicid cluster` again")
    return keys, vectors


def vectors_model(collection: Collection) -> str:
    """The embedding model id of the kept instance vectors."""
    _, keys_path = _paths(collection)
    if not keys_path.is_file():
        raise CollectionError(f"'{collection.root}' keeps no instance vectors; run `comicid cluster` first")
    models = pd.read_parquet(keys_path, columns=["model"])["model"]
    return str(models.iloc[0]) if len(models) else ""
