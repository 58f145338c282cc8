"""`comicid evaluate`: import, embed, cluster and score a labelled manifest in one call.

Which rows are scored:
- ``split="auto"`` (default): when the manifest has both ``dev`` and ``test`` rows, score ``test`` rows
  and let ``dev`` rows calibrate the clustering threshold; otherwise score every labelled row.
- Retrieval: queries are ``role=query`` instances and the gallery ``role=gallery`` instances; with no
  roles, every instance queries all others (leave-one-out). Gallery instances sharing a query's
  non-empty ``source`` are left out of its ranking.
- Clustering: per ``book`` over the scored instances; scores are means over books, cluster counts sums.
Evaluation is deterministic: fixed seeds, stable sorts, no dependence on hash seeds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.data.manifest import read_manifest
from comicid.errors import ConfigError
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.evaluation.protocols import global_protocol, local_protocol
from comicid.evaluation.retrieval import exclusion_mask, retrieval_metrics
from comicid.identity.assign import assign_identities, collection_params, save_learnt_state, views_needed
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, embed_collection
from comicid.store.ingest import ingest

SPLITS = ("auto", "all", "dev", "test")
PROTOCOLS = ("standard", "local", "global")


@dataclass
class EvaluationOptions:
    """Everything `evaluate` can be told; defaults are the documented defaults of the CLI."""

    model: str = "default"
    method: str = "agglomerative"
    scope: str = "book"
    threshold: str | float = "auto"
    split: str = "auto"
    protocol: str = "standard"
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 64
    skip_bad: bool = False
    progress: bool = True


def choose_rows(embedded: InstanceEmbeddings, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Masks of scored and calibration instances, and the split actually scored."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    splits = embedded.table["split"].to_numpy()
    has_dev, has_test = bool((splits == "dev").any()), bool((splits == "test").any())
    if split == "auto":
        split = "test" if has_dev and has_test else "all"
    scored = np.ones(len(splits), bool) if split == "all" else splits == split
    if not scored.any():
        raise ConfigError(f"no instance has split={split!r}")
    return scored, splits == "dev", split


def retrieval_scores(embedded: InstanceEmbeddings) -> dict[str, Any]:
    """Query/gallery retrieval over the labelled instances of ``embedded``."""
    table = embedded.table
    labelled = (table["identity"] != "").to_numpy()
    roles = table["role"].to_numpy()
    if (roles[labelled] != "").any():
        queries, gallery = labelled & (roles == "query"), labelled & (roles == "gallery")
        ids = None
    else:
        queries = gallery = labelled
        ids = np.arange(len(table))
    q, g = np.flatnonzero(queries), np.flatnonzero(gallery)
    exclude = exclusion_mask(table["source"].to_numpy()[q], table["source"].to_numpy()[g],
                             None if ids is None else ids[q], None if ids is None else ids[g])
    scores = retrieval_metrics(embedded.vectors[q], table["identity"].to_numpy()[q], embedded.vectors[g],
                               table["identity"].to_numpy()[g], exclude=exclude)
    scores["protocol"] = "query->gallery" if ids is None else "leave-one-out"
    return scores


def protocol_groups(table: pd.DataFrame) -> np.ndarray:
    """Groups of mutually distinct characters for the local protocol.

    The sequence when identities are scoped to sequences (no identity appears in two sequences, as in
    the COMICS sequence annotations, where one person has a different id in each sequence and a wider
    group would count them as different characters); otherwise the book, whose identities are distinct
    by definition and where characters recur often enough to have 5 instances.
    """
    has_sequence = table["sequence"] != ""
    if has_sequence.all() and (table.groupby("identity")["sequence"].nunique() == 1).all():
        return (table["book"] + "/" + table["sequence"]).to_numpy()
    return table["book"].to_numpy()


def protocol_scores(embedded: InstanceEmbeddings, protocol: str) -> dict[str, Any]:
    """The identity-aware re-ID paper's local (within groups of distinct characters) or global protocol."""
    table = embedded.table[embedded.table["identity"] != ""]
    vectors = embedded.vectors[table.index.to_numpy()]
    if protocol == "local":
        return local_protocol(vectors, table["identity"].to_numpy(), protocol_groups(table))
    return global_protocol(vectors, table["identity"].to_numpy(), table["book"].to_numpy())


def evaluate_manifest(manifest: str | Path, options: EvaluationOptions | None = None,
                      model: EmbeddingModel | None = None, workdir: str | Path | None = None) -> dict[str, Any]:
    """Score ``manifest`` end to end; returns the JSON-ready result (see docs/EVALUATION.md).

    ``workdir`` keeps the collection (crops and cached features) for later runs; by default a
    temporary folder is used and removed.
    """
    options = options or EvaluationOptions()
    if options.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {options.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    started = time.perf_counter()
    frame = read_manifest(manifest, check_files=not options.skip_bad)
    model = model if model is not None else load_embedding_model(options.model, device=options.device,
                                                                     precision=options.precision)
    with tempfile.TemporaryDirectory(prefix="comicid-eval-") as scratch:
        collection = Collection.create(Path(workdir) if workdir else Path(scratch) / "collection")
        report = ingest(frame, collection, skip_bad=options.skip_bad, progress=options.progress)
        embed_start = time.perf_counter()
        embedded = embed_collection(collection, model, device=options.device, batch_size=options.batch_size,
                                    progress=options.progress, n_views=views_needed(options.method))
        embed_seconds = time.perf_counter() - embed_start
        scored, dev, split = choose_rows(embedded, options.split)
        evaluated = embedded.subset(scored)
        result: dict[str, Any] = {"manifest": str(manifest), "model": model.model_id, "method": options.method,
                                  "scope": options.scope, "split": split, "images": len(collection.instances()),
                                  "instances": int(len(evaluated)), "skipped_rows": len(report.skipped)}
        result["retrieval"] = retrieval_scores(evaluated)
        if options.protocol != "standard":
            result["protocol"] = {"name": options.protocol, **protocol_scores(evaluated, options.protocol)}

        cluster_start = time.perf_counter()
        assignment = assign_identities(evaluated, method=options.method, scope=options.scope,
                                       threshold=options.threshold, calibration=embedded.subset(dev),
                                       params=collection_params(options.method, collection.models_dir),
                                       progress=options.progress,
                                       on_fitted=save_learnt_state(collection.adapters_dir))
        cluster_seconds = time.perf_counter() - cluster_start
        labelled = (evaluated.table["identity"] != "").to_numpy()
        predicted = assignment.table["identity_id"].to_numpy(dtype=object)
        predicted = np.where(predicted == "", -1, predicted)  # unknown counts as its own singleton
        clustering = clustering_metrics_by_group(evaluated.table["identity"].to_numpy()[labelled],
                                                 predicted[labelled], evaluated.table["book"].to_numpy()[labelled])
        result["method"] = assignment.info["method"]  # what ``auto`` resolved to
        clustering["threshold"] = assignment.info["threshold"]
        clustering["threshold_source"] = assignment.info["threshold_source"]
        result["clustering"] = clustering
        result["seconds"] = {"embed": round(embed_seconds, 3), "cluster": round(cluster_seconds, 3),
                             "total": round(time.perf_counter() - started, 3)}
        collection.write_assignments(assignment.table, assignment.info)
        collection.update_meta(metrics={key: result[key] for key in ("retrieval", "clustering", "split")})
    return result
