"""Embed a collection: every part through the model (cached per crop and model, resumable), fused per
instance; optionally augmented views of every crop for methods that learn from them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comicid.data.manifest import display_key
from comicid.errors import CollectionError, ConfigError
from comicid.models.embed import FeatureCache, check_finite, embed_crops, fuse_parts, sum_parts
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model
from comicid.models.ensemble import Ensemble
from comicid.models.multimodal import MultimodalEmbedder
from comicid.models.text import create_text_encoder
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, instance_table
from comicid.training.adapt import embed_views


class _Names(Sequence[str]):
    """Names of rows for error messages, made only when one is read: an embed whose crops are all cached
    and sound reads none, so it does not format a name for every part of a large collection."""

    def __init__(self, count: int, name: Callable[[int], str]) -> None:
        self._count, self._name = count, name

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]  # integer positions only, as error messages use
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return self._name(index % self._count)

@dataclass(frozen=True)
class PartFeatures:
    """A collection's parts through one model, before fusion: what the head is applied to."""

    table: pd.DataFrame  # one row per instance (store.embeddings.INSTANCE_COLUMNS)
    features: np.ndarray  # (P, part_dim) raw part features
    instance_index: np.ndarray  # (P,) instance of each part
    weights: np.ndarray | None  # (P,) the model's fusion weight of each part, None for the plain sum
    crop_paths: list[Path]
    cached: int  # crops in the model's feature cache afterwards

    def head_inputs(self) -> np.ndarray:
        """``sum_parts``: the head's input per instance."""
        return sum_parts(self.features, self.instance_index, len(self.table), self.weights)


def embed_parts(collection: Collection, model: EmbeddingModel, device: str = "cpu", batch_size: int = 64,
                progress: bool = True, num_workers: int | None = None) -> PartFeatures:
    """Every part of ``collection`` through ``model`` (cached per crop, resumable), not yet fused.

    The caller holds the collection's writer lock (the cache is written). A crop neither cached nor on
    disk is a :class:`~comicid.errors.CollectionError` naming the first such instance.
    """
    parts = collection.instances()
    cache = FeatureCache(collection.features_dir, model.model_id)
    crop_paths = [collection.crop_path(key) for key in parts["crop_hash"]]
    part_keys, kinds = parts["instance_key"].to_numpy(), parts["kind"].to_numpy()
    names = _Names(len(parts), lambda i: f"instance '{display_key(part_keys[i])}' ({kinds[i]})")
    missing = [index for index, (key, path) in enumerate(zip(parts["crop_hash"], crop_paths, strict=True))
               if key not in cache and not path.is_file()]
    if missing:
        raise CollectionError(f"{len(missing)} crops of '{collection.root}' are missing from its crops/ "
                              f"folder (first: {names[missing[0]]}, '{crop_paths[missing[0]]}'); run "
                              "`comicid import` of its sources again to cut them again")
    features = embed_crops(crop_paths, model, batch_size=batch_size, device=device, progress=progress,
                           cache=cache, num_workers=num_workers, keys=parts["crop_hash"].tolist(), names=names)
    table, instance_index = instance_table(parts)
    return PartFeatures(table, features, instance_index, model.part_weight_array(kinds), crop_paths, len(cache))


def embed_collection(collection: Collection, model: EmbeddingModel | Ensemble | MultimodalEmbedder, device: str = "cpu",
                     batch_size: int = 64, progress: bool = True, num_workers: int | None = None,
                     n_views: int = 0) -> InstanceEmbeddings:
    """Embed every part of ``collection`` (cached, resumable) and fuse parts into instances.

    With ``n_views > 0`` also embeds that many seeded augmented views of every crop (not cached: they
    are cheap next to what they feed, and reproducible from their seeds) and fuses each view.
    A :class:`~comicid.models.multimodal.MultimodalEmbedder` embeds with its image model first, then
    combines those vectors with the text features of each instance's ``text``; an
    :class:`~comicid.models.ensemble.Ensemble` embeds with each member and combines the instance embeddings.
    """
    if isinstance(model, MultimodalEmbedder):
        return _embed_multimodal(collection, model, device, batch_size, progress, num_workers, n_views)
    if isinstance(model, Ensemble):  # each member cached under its own id, instance embeddings combined
        if n_views > 0:
            raise ConfigError("augmented views (--method adaptive) need a single --model, not an ensemble")
        members = [embed_collection(collection, member, device=device, batch_size=batch_size, progress=progress,
                                    num_workers=num_workers) for member in model.members]
        return InstanceEmbeddings(members[0].table, model.combine([m.vectors for m in members]), model.model_id)
    with collection.writer("embed"):
        embedded = embed_parts(collection, model, device, batch_size, progress, num_workers)
        table, instance_index, weights = embedded.table, embedded.instance_index, embedded.weights
        head = model.head.to("cpu").eval()
        vectors = fuse_parts(embedded.features, instance_index, len(table), head=head, part_weights=weights)
        instance_keys = table["instance_key"].to_numpy()
        instance_names = _Names(len(table), lambda i: f"instance '{display_key(instance_keys[i])}'")
        check_finite(vectors, range(len(table)), instance_names, model.model_id)
        collection.record_embedding_model(model.model_id, dim=int(vectors.shape[1]), crops=embedded.cached)
    views = None
    if n_views > 0:
        part_views = embed_views(embedded.crop_paths, model, n_views=n_views, batch_size=batch_size, progress=progress,
                                 device=device)
        views = np.stack([fuse_parts(view, instance_index, len(table), head=head, part_weights=weights)
                          for view in part_views])
    return InstanceEmbeddings(table, vectors, model.model_id, views, dict(model.label_free_thresholds),
                              {method: dict(params) for method, params in model.label_free_params.items()})


def _embed_multimodal(collection: Collection, model: MultimodalEmbedder, device: str, batch_size: int,
                      progress: bool, num_workers: int | None, n_views: int) -> InstanceEmbeddings:
    if n_views > 0:
        raise ConfigError("this clustering method learns from augmented image views; a multimodal model has "
                          "none: use another --method, or an image model")
    image_model = load_embedding_model(model.image_model, device=device)
    image = embed_collection(collection, image_model, device=device, batch_size=batch_size, progress=progress,
                             num_workers=num_workers)
    text = create_text_encoder(model.text_model, device=device).encode(image.table["text"].tolist())
    vectors = model.encode(image.vectors, text)
    collection.record_embedding_model(model.model_id, dim=int(vectors.shape[1]), crops=len(collection.instances()))
    return InstanceEmbeddings(image.table, vectors, model.model_id)
