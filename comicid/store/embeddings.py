"""Embeddings of a collection's instances: part features from the cache, fused per instance.

The unit of retrieval and clustering is the *instance*: the face row and the body row of one
character instance are embedded separately by one shared model and fused as
``normalise(head(sum_i normalise(part_i)))`` (see :func:`comicid.models.embed.fuse_parts`). Part
features are cached per (crop, model id) under ``COLLECTION/embeddings/``, so a second `embed` with the
same model costs nothing and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from comicid.models.embed import FeatureCache, embed_crops, fuse_parts
from comicid.errors import ConfigError
from comicid.models.embedding_model import EmbeddingModel
from comicid.models.ensemble import Ensemble
from comicid.store.collection import Collection

#: Columns of the instance table: one row per instance, labels taken from its parts.
INSTANCE_COLUMNS = ("instance_key", "book", "instance", "page", "panel", "sequence", "identity", "split",
                    "role", "source", "text", "parts")


@dataclass
class InstanceEmbeddings:
    """Instances of a collection and their embeddings, row for row.

    ``table`` has :data:`INSTANCE_COLUMNS` (``parts`` is e.g. ``"face+body"``); ``vectors`` is
    ``(N, D)`` float32, L2-normalised; ``model_id`` names the model that made them. ``views``, when
    computed, holds ``(V, N, D)`` embeddings of augmented views of each instance (the adaptive method
    learns from them).
    """

    table: pd.DataFrame
    vectors: np.ndarray
    model_id: str
    views: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.table)

    def subset(self, mask: np.ndarray) -> InstanceEmbeddings:
        views = None if self.views is None else self.views[:, mask]
        return InstanceEmbeddings(self.table[mask].reset_index(drop=True), self.vectors[mask], self.model_id, views)


def _first_non_empty(values: pd.Series) -> str:
    for value in values:
        if value:
            return str(value)
    return ""


def instance_table(parts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per instance (first-seen order) and the instance index of every part row."""
    codes, uniques = pd.factorize(parts["instance_key"], sort=False)
    grouped = parts.assign(_instance=codes).groupby("_instance", sort=True)
    table = pd.DataFrame({"instance_key": uniques.astype(str)})
    for column in INSTANCE_COLUMNS[1:-1]:
        table[column] = grouped[column].agg(_first_non_empty).to_numpy() if column in parts else ""
    table["parts"] = grouped["kind"].agg(lambda kinds: "+".join(sorted(kinds))).to_numpy()
    return table, codes.astype(np.int64)


def embed_collection(collection: Collection, model: EmbeddingModel | Ensemble, device: str = "cpu",
                     batch_size: int = 64, progress: bool = True, num_workers: int | None = None,
                     n_views: int = 0) -> InstanceEmbeddings:
    """Embed every part of ``collection`` (cached, resumable) and fuse parts into instances.

    With ``n_views > 0`` also embeds that many seeded augmented views of every crop (not cached: they
    are cheap next to what they feed, and reproducible from their seeds) and fuses each view. An
    :class:`~comicid.models.ensemble.Ensemble` embeds with each member (each cached under its own id)
    and combines the instance embeddings.
    """
    if isinstance(model, Ensemble):
        if n_views > 0:
            raise ConfigError("augmented views (--method adaptive) need a single --model, not an ensemble")
        members = [embed_collection(collection, member, device=device, batch_size=batch_size, progress=progress,
                                    num_workers=num_workers) for member in model.members]
        return InstanceEmbeddings(members[0].table, model.combine([m.vectors for m in members]), model.model_id)
    parts = collection.instances()
    cache = FeatureCache(collection.features_dir, model.model_id)
    crop_paths = [collection.crop_path(key) for key in parts["crop_hash"]]
    features = embed_crops(crop_paths, model, batch_size=batch_size, device=device, progress=progress,
                           cache=cache, num_workers=num_workers, keys=parts["crop_hash"].tolist())
    table, instance_index = instance_table(parts)
    head = model.head.to("cpu").eval()
    vectors = fuse_parts(features, instance_index, len(table), head=head)
    collection.record_embedding_model(model.model_id, dim=int(vectors.shape[1]), crops=len(cache))
    views = None
    if n_views > 0:
        from comicid.training.adapt import embed_views

        part_views = embed_views(crop_paths, model, n_views=n_views, batch_size=batch_size, progress=progress)
        views = np.stack([fuse_parts(view, instance_index, len(table), head=head) for view in part_views])
    return InstanceEmbeddings(table, vectors, model.model_id, views)
