"""Search a collection: rank its instances by cosine similarity to an image or to one of its instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comicid.data.images import load_image
from comicid.data.manifest import display_key
from comicid.errors import ConfigError
from comicid.identity.adaptive.clusterer import load_adapter
from comicid.workflows.cluster import learnt_state_paths
from comicid.identity.rerank import KReciprocalReranker, average_query_expansion
from comicid.models.embed import embed_crops, fuse_parts
from comicid.models.embedding_model import EmbeddingModel
from comicid.models.ensemble import Ensemble
from comicid.search.index import create_index
from comicid.store.collection import Collection
from comicid.store.index import index_folder, rows_of_keys, update_collection_index
from comicid.training.adapt import apply_adapter
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection


def find_instance(embedded: InstanceEmbeddings, wanted: str) -> int:
    """Row of the instance named ``book/instance`` or, when unambiguous, just ``instance``."""
    shown = embedded.table["instance_key"].map(display_key)
    hits = np.flatnonzero((shown == wanted).to_numpy())
    if not len(hits):
        hits = np.flatnonzero((embedded.table["instance"] == wanted).to_numpy())
    if len(hits) == 1:
        return int(hits[0])
    if len(hits) > 1:
        books = ", ".join(sorted(embedded.table["book"].iloc[hits]))
        raise ConfigError(f"instance '{wanted}' exists in several books ({books}); write it as BOOK/{wanted}")
    raise ConfigError(f"no instance '{wanted}' in the collection (instances are named BOOK/INSTANCE, "
                      f"e.g. '{shown.iloc[0] if len(shown) else '...'}')")


def embed_query_image(path: str | Path, model: EmbeddingModel | Ensemble, device: str = "cpu") -> np.ndarray:
    """Embedding ``(1, D)`` of a query image taken as one whole-character part."""
    if isinstance(model, Ensemble):
        return model.combine([embed_query_image(path, member, device) for member in model.members])
    if not isinstance(model, EmbeddingModel):  # a multimodal model needs the instance's text too
        raise ConfigError("a multimodal model embeds instances with their text, not a lone image; search with "
                          "--instance BOOK/ID, or use an image model")
    features = embed_crops([load_image(path)], model, device=device, num_workers=0, progress=False)
    return fuse_parts(features, np.zeros(1, dtype=np.int64), 1, head=model.head.to("cpu").eval())


def adapted_space(collection: Collection, embedded: InstanceEmbeddings) -> dict[str, tuple[object, np.ndarray]]:
    """Per book, the adapter and centre learnt by adaptive clustering, when they fit ``embedded``.

    They apply only when the collection's last assignment learnt a metric per book (the folder holds
    only the last run's state) with the same model (an adapter is a metric on that model's embeddings);
    otherwise the mapping is empty. No method is named here: any method that learns state applies.
    """
    info = collection.meta().get("assignments") or {}
    if info.get("scope") != "book" or info.get("model") != embedded.model_id:
        return {}
    spaces = {}
    for book in sorted(set(embedded.table["book"])):
        adapter_path, centre_path = learnt_state_paths(collection.adapters_dir, book)
        if adapter_path.is_file() and centre_path.is_file():
            spaces[book] = (load_adapter(adapter_path), np.load(centre_path))
    return spaces


def _adapted_scores(query: np.ndarray, embedded: InstanceEmbeddings,
                    spaces: dict[str, tuple[object, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Similarity of ``query (1, D)`` to every instance, in its book's learnt metric where there is one."""
    def learnt(adapter: object, centre: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        moved = apply_adapter(adapter, vectors) - centre  # type: ignore[arg-type]
        return moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)

    scores = (embedded.vectors @ query[0]).astype(np.float64)
    adapted = np.zeros(len(embedded), dtype=bool)
    books = embedded.table["book"].to_numpy()
    for book, (adapter, centre) in spaces.items():
        rows = np.flatnonzero(books == book)
        scores[rows] = learnt(adapter, centre, embedded.vectors[rows]) @ learnt(adapter, centre, query)[0]
        adapted[rows] = True
    return scores, adapted


#: ``search --index`` choices: ``auto`` uses the collection's stored ANN index when it has one for the
#: model (see :mod:`comicid.store.index`) and exact search otherwise; ``ann`` builds the
#: index when missing; ``exact`` and ``faiss`` rank every instance exactly.
SEARCH_BACKENDS = ("auto", "ann", "exact", "faiss")


def _ranked(collection: Collection, embedded: InstanceEmbeddings, query: np.ndarray, k: int,
            backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores and rows of ``embedded`` of the ``k`` best matches of ``query (1, D)``."""
    if backend not in SEARCH_BACKENDS:
        raise ConfigError(f"unknown search backend {backend!r}; choose one of {', '.join(SEARCH_BACKENDS)}")
    stored = (index_folder(collection, embedded.model_id) / "index.json").is_file()
    if backend == "ann" or (backend == "auto" and stored):
        _, index, keys = update_collection_index(collection, embedded)  # adds instances imported since
        scores, positions = index.search(query, k)
        rows = np.where(positions >= 0, rows_of_keys(embedded, keys)[np.maximum(positions, 0)], -1)
        return scores, rows
    return create_index(embedded.vectors, "exact" if backend == "auto" else backend).search(query, k)


def _reranked(vectors: np.ndarray, query: np.ndarray, exclude: int, top: int, rerank: bool,
              aqe: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and rows of the ``top`` best instances after query expansion and/or k-reciprocal re-ranking.

    An image query joins the instances as one more row; the score is ``1 - re-ranked distance`` (or the
    cosine of the expanded query without ``rerank``), higher = closer.
    """
    n = len(vectors)
    points = vectors if exclude >= 0 else np.vstack([vectors, query])
    row = exclude if exclude >= 0 else n
    points = average_query_expansion(points, np.array([row]), aqe, gallery_rows=np.arange(n))
    if rerank:
        distance, rows = KReciprocalReranker().fit(points).top(np.array([row]), top, np.arange(n))
        return 1.0 - distance[0], rows[0]
    similarity = points[:n] @ points[row]
    order = np.lexsort((np.arange(n), -similarity))
    order = order[order != row][:top]
    return similarity[order], order


def search_collection(collection: Collection, model: EmbeddingModel | Ensemble, image: str | Path | None = None,
                      instance: str | None = None, top: int = 10, backend: str = "auto", device: str = "cpu",
                      progress: bool = False, rerank: bool = False, aqe: int = 0) -> pd.DataFrame:
    """The ``top`` nearest instances, best first, with their labels and predicted identities.

    Ranking is by cosine similarity; after ``cluster --method adaptive`` each book's instances are
    compared in the metric learnt for that book (column ``space`` says which was used). ``rerank``
    applies k-reciprocal re-ranking over the whole collection and ``aqe`` > 0 expands the query with
    its ``aqe`` nearest instances (see :mod:`comicid.identity.rerank`); both work on the model's own
    cosine space (``space`` = ``reranked``/``expanded``).
    """
    if (image is None) == (instance is None):
        raise ConfigError("give either a query IMAGE or --instance ID, not both or neither")
    embedded = embed_collection(collection, model, device=device, progress=progress)
    exclude = -1
    if image is not None:
        query = embed_query_image(image, model, device)
    else:
        exclude = find_instance(embedded, str(instance))
        query = embedded.vectors[exclude:exclude + 1]
    spaces = adapted_space(collection, embedded)
    if rerank or aqe:
        scores, rows = _reranked(embedded.vectors, query, exclude, top, rerank, aqe)
        space = np.full(len(rows), "reranked" if rerank else "expanded")
    elif spaces:  # each book ranked in its own learnt metric: exact scores, no shared index
        all_scores, adapted = _adapted_scores(query, embedded, spaces)
        order = np.lexsort((np.arange(len(all_scores)), -all_scores))
        order = order[order != exclude][:top]
        scores, rows, space = all_scores[order], order, np.where(adapted[order], "adapted", "cosine")
    else:
        scores, rows = _ranked(collection, embedded, query, min(top + (exclude >= 0), len(embedded)), backend)
        keep = (rows[0] != exclude) & (rows[0] >= 0)
        scores, rows = scores[0][keep][:top], rows[0][keep][:top]
        space = np.full(len(rows), "cosine")
    table = embedded.table.iloc[rows]
    result = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "instance": table["instance_key"].map(display_key),
                           "score": np.round(scores.astype(float), 4), "identity": table["identity"].to_numpy(),
                           "book": table["book"].to_numpy(), "page": table["page"].to_numpy(),
                           "panel": table["panel"].to_numpy(), "space": space})
    if collection.assignments_path.is_file():
        predicted = collection.assignments().set_index("instance_key")["identity_id"]
        result["predicted"] = table["instance_key"].map(predicted).fillna("").to_numpy()
    return result.reset_index(drop=True)
