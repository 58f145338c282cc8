"""Search a collection: rank its instances by cosine similarity to an image or to one of its instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comicid.data.images import load_image
from comicid.data.manifest import display_key
from comicid.errors import ConfigError
from comicid.models.embed import embed_crops, fuse_parts
from comicid.models.embedding_model import EmbeddingModel
from comicid.search.index import create_index
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, embed_collection


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


def embed_query_image(path: str | Path, model: EmbeddingModel, device: str = "cpu") -> np.ndarray:
    """Embedding ``(1, D)`` of a query image taken as one whole-character part."""
    features = embed_crops([load_image(path)], model, device=device, num_workers=0, progress=False)
    return fuse_parts(features, np.zeros(1, dtype=np.int64), 1, head=model.head.to("cpu").eval())


def search_collection(collection: Collection, model: EmbeddingModel, image: str | Path | None = None,
                      instance: str | None = None, top: int = 10, backend: str = "exact", device: str = "cpu",
                      progress: bool = False) -> pd.DataFrame:
    """The ``top`` nearest instances, best first, with their labels and predicted identities."""
    if (image is None) == (instance is None):
        raise ConfigError("give either a query IMAGE or --instance ID, not both or neither")
    embedded = embed_collection(collection, model, device=device, progress=progress)
    exclude = -1
    if image is not None:
        query = embed_query_image(image, model, device)
    else:
        exclude = find_instance(embedded, str(instance))
        query = embedded.vectors[exclude:exclude + 1]
    index = create_index(embedded.vectors, backend)
    scores, rows = index.search(query, min(top + (exclude >= 0), len(embedded)))
    keep = rows[0] != exclude
    scores, rows = scores[0][keep][:top], rows[0][keep][:top]
    table = embedded.table.iloc[rows]
    result = pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "instance": table["instance_key"].map(display_key),
                           "score": np.round(scores.astype(float), 4), "identity": table["identity"].to_numpy(),
                           "book": table["book"].to_numpy(), "page": table["page"].to_numpy(),
                           "panel": table["panel"].to_numpy()})
    if collection.assignments_path.is_file():
        predicted = collection.assignments().set_index("instance_key")["identity_id"]
        result["predicted"] = table["instance_key"].map(predicted).fillna("").to_numpy()
    return result.reset_index(drop=True)
