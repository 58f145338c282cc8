"""Every labelled set the page and cast-size benchmarks score, and their part features per model (cached).

The development manifests of ../shared/datasets (old sprite sets and the cross-style sets), the
composed real-art pages (``comicid synth --characters comicgen/face_body.csv``, a fixed seed) and the
held-out synthetic books of ``benchmarks/run.py``. Collections live under ``build/benchmarks/sets`` so a
second run only fuses and clusters.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


from common import CROSS_STYLE_SETS, DATASETS, DEV_SETS, ROOT

from comicid.data.manifest import read_manifest
from comicid.data.synth import generate_books
from comicid.data.synth.real_art import generate_art_books
from comicid.models.embed import FeatureCache, embed_crops, fuse_parts
from comicid.models.embedding_model import EmbeddingModel
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, instance_table
from comicid.store.ingest import ingest

CACHE = ROOT / "build" / "benchmarks" / "sets"
#: Composed real-art pages: comicgen's face+body drawings in synthetic panels (seed never trained on).
COMPOSED = {"books": 4, "cast": 6, "pages": 8, "seed": 7}
COMPOSED_NAME = "composed pages (comicgen)"
#: The held-out synthetic books of benchmarks/run.py.
SYNTH = {"books": 4, "characters": 12, "pages": 10, "seed": 101}
SYNTH_NAME = "synthetic books (seed 101)"


@dataclass
class PartData:
    """One set embedded by one model: instances, and part features with their kinds."""

    name: str
    table: pd.DataFrame  # one row per instance (store.embeddings.INSTANCE_COLUMNS)
    features: np.ndarray  # (P, part_dim) raw part features
    kinds: np.ndarray  # (P,) face | body | character
    instance_index: np.ndarray  # (P,) instance of each part
    model: EmbeddingModel
    crop_paths: list[Path]  # (P,) each part's crop in the cached collection

    def fused(self, face_weight: float | None = None) -> np.ndarray:
        """Instance embeddings; ``face_weight`` w gives faces w and bodies 1 - w (None: the model's own)."""
        weights = self.model.part_weight_array(self.kinds)
        if face_weight is not None:
            w = float(np.clip(face_weight, 1e-4, 1 - 1e-4))  # a lone part keeps its instance alive
            weights = np.where(self.kinds == "face", w, 1 - w)
        return fuse_parts(self.features, self.instance_index, len(self.table), head=self.model.head.to("cpu").eval(),
                          part_weights=weights)

    def embedded(self, vectors: np.ndarray | None = None) -> InstanceEmbeddings:
        """The instances with ``vectors`` (default: :meth:`fused`) and the model's label-free rule, as
        ``comicid embed`` would hand them to ``comicid cluster``."""
        return InstanceEmbeddings(self.table, self.fused() if vectors is None else vectors, self.model.model_id,
                                  label_free_thresholds=dict(self.model.label_free_thresholds),
                                  label_free_params={m: dict(p) for m, p in self.model.label_free_params.items()})


def composed_pages() -> Path | None:
    source = DATASETS / "comicgen" / "face_body.csv"
    if not source.is_file():
        print(f"skipping {COMPOSED_NAME}: {source} not found", file=sys.stderr)
        return None
    manifest = CACHE / "composed" / "manifest.csv"
    if not manifest.is_file():
        generate_art_books(manifest.parent, source, progress=False, **COMPOSED)
    return manifest


def synthetic_books() -> Path:
    manifest = CACHE / "synth" / "manifest.csv"
    if not manifest.is_file():
        generate_books(manifest.parent, progress=False, **SYNTH)
    return manifest


def all_sets(include_generated: bool = True) -> list[tuple[str, Path]]:
    """(name, manifest) of every set present; missing ones are skipped with a message."""
    found = []
    for name, relative in [(d.name, str(d.manifest)) for d in (*DEV_SETS, *CROSS_STYLE_SETS)]:
        path = DATASETS / relative
        if path.is_file():
            found.append((name, path))
        else:
            print(f"skipping {name}: {path} not found (set COMICID_DATASETS)", file=sys.stderr)
    if include_generated:
        pages = composed_pages()
        if pages is not None:
            found.append((COMPOSED_NAME, pages))
        found.append((SYNTH_NAME, synthetic_books()))
    return found


def part_data(name: str, manifest: Path, model: EmbeddingModel) -> PartData:
    """Import ``manifest`` once into its cached collection and embed its parts with ``model`` (cached)."""
    root = CACHE / "collections" / re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    collection = Collection.create(root)  # opens it when it exists
    if not collection.has_instances():
        ingest(read_manifest(manifest), collection, progress=False)
    parts = collection.instances()
    cache = FeatureCache(collection.features_dir, model.model_id)
    crop_paths = [collection.crop_path(key) for key in parts["crop_hash"]]
    features = embed_crops(crop_paths, model, cache=cache, keys=parts["crop_hash"].tolist(), progress=False)
    table, index = instance_table(parts)
    return PartData(name, table, features, parts["kind"].to_numpy(), index, model, crop_paths)
