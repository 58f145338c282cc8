"""Embedding a collection on a Ray cluster: crops sharded across workers, one torch thread each.

The driver lists the crops whose features the collection's cache lacks, hands them to a Ray Data
pipeline (``map_batches`` over an actor pool: each actor loads the model once, with one intra-op
thread, since two multi-threaded torch processes on one core's worth of CPU run 15-30x slower), and
writes the features into the same :class:`comicid.models.embed.FeatureCache` as the single-machine
path, a shard every few batches. Fusion into instance embeddings is then exactly the single-machine
code reading a full cache, so the collection format and the numbers are the same; an interrupted run
resumes from the shards already written.

Workers read crops from ``COLLECTION/crops/``: on a real cluster the collection must be on a file
system every node mounts at the same path (docs/RAY.md).
"""

from __future__ import annotations

import numpy as np

from comicid.models.embed import CACHE_FLUSH_BATCHES, FeatureCache, embed_crops
from comicid.models.embedding_model import load_embedding_model
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection
from comicid.workflows.ray_cluster import LOCAL, ray_cluster, worker_count


class _Embedder:
    """A Ray Data actor: loads the model once, embeds batches of crop paths on one thread."""

    def __init__(self, model: str, precision: str) -> None:
        import torch

        torch.set_num_threads(1)
        self.model = load_embedding_model(model, device="cpu", precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = embed_crops(list(batch["path"]), self.model, batch_size=len(batch["path"]), num_workers=0,
                               progress=False)
        return {"key": batch["key"], "features": features}


def embed_collection_ray(collection: Collection, model: str = "default", address: str = LOCAL,
                         precision: str = "auto", batch_size: int = 64, workers: int | None = None,
                         progress: bool = True) -> InstanceEmbeddings:
    """Embed every crop of ``collection`` on the Ray cluster at ``address``; same result as
    :func:`comicid.store.embeddings.embed_collection`.

    ``model`` is a registry name or a checkpoint path every node can read; ``workers`` is the number
    of single-threaded actors (default: one per CPU of the cluster).
    """
    local_model = load_embedding_model(model, device="cpu", precision=precision)
    cache = FeatureCache(collection.features_dir, local_model.model_id)
    parts = collection.instances()
    keys = list(dict.fromkeys(key for key in parts["crop_hash"] if key not in cache))  # unique, in order
    if keys:
        with ray_cluster(address, num_cpus=workers) as ray:
            pool = worker_count(ray, workers)
            items = [{"key": key, "path": str(collection.crop_path(key))} for key in keys]
            dataset = ray.data.from_items(items).map_batches(
                _Embedder, fn_constructor_kwargs={"model": model, "precision": precision}, batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1)
            pending_keys: list[str] = []
            pending: list[np.ndarray] = []
            done = 0
            from tqdm.auto import tqdm

            with tqdm(total=len(keys), disable=not progress, unit="crop", desc="embed (ray)") as bar:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    pending_keys += [str(key) for key in batch["key"]]
                    pending.append(np.asarray(batch["features"], dtype=np.float32))
                    done += len(batch["key"])
                    bar.update(len(batch["key"]))
                    if len(pending_keys) >= CACHE_FLUSH_BATCHES * batch_size or done == len(keys):
                        cache.add(pending_keys, np.concatenate(pending))  # a shard: an interrupt keeps it
                        pending_keys, pending = [], []
            if pending_keys:
                cache.add(pending_keys, np.concatenate(pending))
    # Every crop is cached now: this reads the cache and fuses exactly as the single-machine path.
    return embed_collection(collection, local_model, progress=False)
