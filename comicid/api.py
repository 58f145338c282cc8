"""The public library API, re-exported by ``comicid/__init__.py``: what a notebook user and the CLI call.

    import comicid
    model = comicid.load_model("default")                # or a registry name or a checkpoint path
    vectors = model.embed_images(["a.png", "b.png"])      # (N, D) float32, L2-normalised
    collection = comicid.import_source("pages.csv", "my-collection")
    embedded = comicid.embed(collection, model)
    assignment = comicid.cluster(collection, model=model)  # embed, cluster, keep the result
    hits = comicid.search(collection, "query.png", model=model, top=5)
    result = comicid.evaluate("labelled.csv")

Each call is a thin, typed wrapper over one workflow (:mod:`comicid.workflows`); errors a user can cause
raise :class:`comicid.errors.ComicidError` subclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from comicid.errors import ConfigError
from comicid.models.embedding_model import EmbeddingModel
from comicid.models.ensemble import Ensemble
from comicid.models.ensemble import load_model as load_any_model
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.cluster import Assignment, assign_identities
from comicid.workflows.cluster_collection import cluster_collection
from comicid.workflows.embed import embed_collection
from comicid.workflows.evaluate import EvaluationOptions, evaluate_manifest
from comicid.workflows.imports import import_source as _import_source
from comicid.workflows.search import search_collection

ModelLike = str | Path | EmbeddingModel | Ensemble
CollectionLike = str | Path | Collection


def load_model(name_or_path: str | Path = "default", device: str = "cpu",
               precision: str = "auto") -> EmbeddingModel | Ensemble:
    """An embedding model: ``"default"`` (the shipped model), a backbone registry name, or a checkpoint;
    or an ensemble: ``"A,B"``, ``"A=0.7,B=0.3"`` or an ensemble YAML file (docs/SEARCH.md).

    ``precision="auto"`` runs the checkpoint's int8 graph on the CPU when it has one (the shipped model
    does), ``"fp32"`` the exact torch model. Every model has ``embed_images(images) -> (N, D)``.
    """
    return load_any_model(name_or_path, device=device, precision=precision)


def open_collection(path: str | Path) -> Collection:
    """An existing collection folder (raises :class:`~comicid.errors.CollectionError` when it is not one)."""
    return Collection.open(path)


def import_source(src: str | Path, collection: CollectionLike, format: str = "auto", skip_bad: bool = False,
                  progress: bool = False, **options: Any) -> Collection:
    """Import ``src`` (manifest, folder, COCO, COMICS or Manga109; ``format="auto"`` detects it) into
    ``collection`` (a folder, created if needed), cutting and caching every crop; returns the collection.
    Rows skipped with ``skip_bad`` are listed in ``collection.meta()``. ``detect=True`` reads ``src`` as
    pages without boxes and finds the characters with the page detector (``min_score``, ``detector``;
    docs/DETECTION.md)."""
    return _import_source(src, collection, format=format, skip_bad=skip_bad, progress=progress, **options).collection


def _model(model: ModelLike, device: str, precision: str) -> EmbeddingModel | Ensemble:
    if isinstance(model, (EmbeddingModel, Ensemble)):
        return model
    return load_model(model, device=device, precision=precision)


def _collection(collection: CollectionLike) -> Collection:
    return collection if isinstance(collection, Collection) else open_collection(collection)


def embed(collection: CollectionLike, model: ModelLike = "default", device: str = "cpu", precision: str = "auto",
          batch_size: int = 64, progress: bool = False) -> InstanceEmbeddings:
    """Instance embeddings of ``collection`` (parts cached per crop and model, resumable)."""
    return embed_collection(_collection(collection), _model(model, device, precision), device=device,
                            batch_size=batch_size, progress=progress)


def cluster(data: InstanceEmbeddings | CollectionLike, method: str = "agglomerative", scope: str = "book",
            threshold: str | float | None = "auto", model: ModelLike = "default", device: str = "cpu",
            precision: str = "auto", progress: bool = False, **params: Any) -> Assignment:
    """Identities of instances: ``method`` in :data:`comicid.CLUSTERERS`, per ``scope``, never merging
    two instances of one panel; ``threshold="auto"`` is calibrated on ``split=dev`` labels when there are
    enough, else the method's documented default. ``params`` are the method's other hyper-parameters.

    Given :class:`InstanceEmbeddings`, returns the assignment and writes nothing (``adaptive`` then needs
    embeddings with views). Given a collection, runs `comicid cluster`: embeds with ``model``, clusters,
    and saves the assignment and what the method learnt into the collection.
    """
    if isinstance(data, InstanceEmbeddings):
        return assign_identities(data, method=method, scope=scope, threshold=threshold, params=params,
                                 progress=progress)
    return cluster_collection(_collection(data), _model(model, device, precision), method=method, scope=scope,
                              threshold=threshold, params=params, device=device, progress=progress)


def search(collection: CollectionLike, query: str | Path, model: ModelLike = "default", top: int = 10,
           backend: str = "exact", device: str = "cpu", precision: str = "auto",
           progress: bool = False) -> pd.DataFrame:
    """The ``top`` instances of ``collection`` nearest to ``query``, best first (one row each, with labels
    and predicted identities). ``query`` is an image file (a :class:`~pathlib.Path`, or a string naming
    an existing file) or an instance of the collection named ``BOOK/INSTANCE``."""
    is_image = isinstance(query, Path) or Path(query).is_file()
    if not is_image and not str(query):
        raise ConfigError("search needs a query image or an instance name")
    return search_collection(_collection(collection), _model(model, device, precision),
                             image=Path(query) if is_image else None, instance=None if is_image else str(query),
                             top=top, backend=backend, device=device, progress=progress)


def evaluate(manifest: str | Path, model: ModelLike = "default", method: str = "agglomerative", scope: str = "book",
             threshold: str | float = "auto", split: str = "auto", protocol: str = "standard",
             device: str = "cpu", precision: str = "auto", batch_size: int = 64, skip_bad: bool = False,
             collection: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Import, embed, cluster and score a labelled manifest, as `comicid evaluate`; returns the JSON-ready
    result (docs/EVALUATION.md). ``collection`` keeps the collection there (default: a temporary one)."""
    options = EvaluationOptions(model=str(model) if not isinstance(model, EmbeddingModel) else "default",
                                method=method, scope=scope, threshold=threshold, split=split, protocol=protocol,
                                device=device, precision=precision, batch_size=batch_size, skip_bad=skip_bad,
                                progress=progress)
    given = model if isinstance(model, EmbeddingModel) else None
    return evaluate_manifest(manifest, options, model=given, workdir=collection)
