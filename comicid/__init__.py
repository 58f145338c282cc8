"""comicid: who is who in comics.

The public API (see :mod:`comicid.api` and the README's library example)::

    import comicid
    model = comicid.load_model("default")
    vectors = model.embed_images(["a.png", "b.png"])      # (N, D), L2-normalised
    collection = comicid.import_source("pages.csv", "my-collection")
    assignment = comicid.cluster(collection, model=model)
"""

from comicid._version import __version__
from comicid.api import cluster, embed, evaluate, import_source, load_model, open_collection, search
from comicid.errors import ComicidError
from comicid.identity import (
    CLUSTERERS,
    SCOPES,
    AdaptiveClusterer,
    AgglomerativeClusterer,
    ConstrainedClusterer,
    Constraints,
    GraphClusterer,
    HDBSCANClusterer,
    MiningClusterer,
    UmapHDBSCANClusterer,
    create_clusterer,
)
from comicid.models.embedding_model import EmbeddingModel
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.cluster import Assignment

__all__ = [
    "CLUSTERERS", "SCOPES", "AdaptiveClusterer", "AgglomerativeClusterer", "Assignment", "ComicidError",
    "Collection", "ConstrainedClusterer", "Constraints", "EmbeddingModel", "GraphClusterer", "HDBSCANClusterer", "InstanceEmbeddings", "MiningClusterer", "UmapHDBSCANClusterer",
    "__version__",
    "cluster", "create_clusterer", "embed", "evaluate", "import_source", "load_model", "open_collection", "search",
]
