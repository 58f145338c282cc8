"""Small and large collections with synthetic embeddings, for tests, benchmarks and trying the viewer.

``toy_collection`` draws a few synthetic pages (:func:`comicid.data.synth.generate_books`), imports them
for real, and replaces the model by vectors made from the true identities plus noise, so everything
downstream (clustering, edits, the viewer, exports) runs in seconds without a network or a model.
``scaled_collection`` repeats a toy collection's rows up to any number of instances (the same crops and
pages, new instance keys) to measure the viewer at 100,000 instances. It lives in the top layer because it
combines synthesis, import and clustering.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comicid.data.manifest import read_manifest
from comicid.data.synth import generate_books
from comicid.workflows.cluster import assign_identities
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, instance_table
from comicid.store.ingest import ingest
from comicid.store.vectors import save_instance_vectors

TOY_MODEL = "toy-vectors"


def identity_vectors(identities: list[str], dim: int = 32, noise: float = 0.35, seed: int = 0) -> np.ndarray:
    """``(N, dim)`` unit vectors: one random centre per identity ("" gets its own per row) plus noise."""
    rng = np.random.default_rng(seed)
    names = sorted(set(identities))
    centres = {name: rng.normal(size=dim) for name in names}
    rows = np.stack([centres[name] if name else rng.normal(size=dim) for name in identities])
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True) + noise * rng.normal(size=rows.shape) / np.sqrt(dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def embed_toy(collection: Collection, dim: int = 32, noise: float = 0.35, seed: int = 0) -> InstanceEmbeddings:
    """Instances of ``collection`` with vectors made from their true identities (no model)."""
    table, _ = instance_table(collection.instances())
    vectors = identity_vectors(table["identity"].tolist(), dim=dim, noise=noise, seed=seed)
    return InstanceEmbeddings(table, vectors, TOY_MODEL)


def cluster_toy(collection: Collection, embedded: InstanceEmbeddings, threshold: float = 0.5) -> None:
    """Cluster per book, keep the assignment and the vectors as `comicid cluster` would."""
    assignment = assign_identities(embedded, threshold=threshold, progress=False)
    collection.write_assignments(assignment.table, assignment.info)
    save_instance_vectors(collection, embedded)


def toy_collection(root: str | Path, books: int = 2, characters: int = 4, pages: int = 2, seed: int = 0,
                   page_size: tuple[int, int] = (400, 550), noise: float = 0.35) -> Collection:
    """Draw, import, embed (synthetic vectors) and cluster a small collection under ``root/collection``."""
    root = Path(root)
    manifest = generate_books(root / "books", books=books, characters=characters, pages=pages, seed=seed,
                              page_size=page_size, progress=False)
    collection = Collection.create(root / "collection")
    ingest(read_manifest(manifest), collection, progress=False)
    cluster_toy(collection, embed_toy(collection, noise=noise, seed=seed))
    return collection


def scaled_collection(source: Collection, root: str | Path, instances: int, seed: int = 0) -> Collection:
    """A collection of ``instances`` instances that repeats ``source``'s rows as new books.

    Copy ``k`` of a book is book ``<book>~k``; crops are shared through the crop cache (same hashes),
    so the folder stays small while tables, assignments and vectors have the full size.
    """
    parts = source.instances()
    table, _ = instance_table(parts)
    copies = int(np.ceil(instances / len(table)))
    frames = []
    for copy in range(copies):
        frame = parts.copy()
        frame["book"] = frame["book"] + f"~{copy}"
        frame["instance_key"] = frame["book"] + "\x1f" + frame["instance_key"].str.split("\x1f").str[1]
        frame["row_key"] = frame["row_key"] + f"~{copy}"
        frame["identity"] = np.where(frame["identity"] != "", frame["identity"] + f"~{copy}", "")
        frames.append(frame)
    big = pd.concat(frames, ignore_index=True)
    keep = big["instance_key"].isin(pd.unique(big["instance_key"])[:instances])
    big = big[keep].reset_index(drop=True)
    collection = Collection.create(root)
    collection.write_instances(big)
    for key in pd.unique(big["crop_hash"]):
        target = collection.crop_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(source.crop_path(key).read_bytes())
    embedded = embed_toy(collection, seed=seed)
    table = pd.DataFrame({"instance_key": embedded.table["instance_key"], "book": embedded.table["book"],
                          "identity_id": [f"{b}/{i}" if i else "" for b, i in
                                          zip(embedded.table["book"], embedded.table["identity"])],
                          "confidence": 0.9})
    collection.write_assignments(table, {"method": "truth", "scope": "book", "instances": len(table)})
    save_instance_vectors(collection, embedded)
    return collection
