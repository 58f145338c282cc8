"""`comicid evaluate`: import, embed, cluster and score a labelled manifest in one call.

Which rows are scored (docs/EVALUATION.md):
- Only the manifest's own instances: with ``--collection`` pointing at a collection that already
  holds other data, that data is neither scored nor used as gallery.
- ``split="auto"`` (default): when the manifest has both ``dev`` and ``test`` rows, score ``test`` rows
  and let ``dev`` rows calibrate the clustering threshold; otherwise score every labelled row.
- Retrieval: queries are ``role=query`` instances and the gallery ``role=gallery`` instances; with no
  roles, every instance queries all others (leave-one-out). Gallery instances sharing a query's
  non-empty ``source`` *and* its identity are left out of its ranking (re-ID's same-camera rule).
- Clustering: every instance is assigned, each split clustered on its own (dev never influences test
  clusters, and the report shows no "?" for dev rows); only the scored split is scored, per ``book``:
  means over books with at least two labelled instances, cluster counts sums, and pooled scores.
Evaluation is deterministic and independent of row order: fixed seeds, ties counted against the
query, no dependence on hash seeds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.data.manifest import instance_keys, read_manifest
from comicid.errors import ConfigError
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.evaluation.protocols import global_protocol, local_protocol
from comicid.evaluation.retrieval import (
    QueryScores,
    exclusion_mask,
    query_retrieval_scores,
    retrieval_metrics,
    summarise_retrieval,
)
from comicid.workflows.cluster import (Assignment, assign_identities, collection_params, describe_threshold,
                                       save_learnt_state, views_needed)
from comicid.identity.rerank import KReciprocalReranker, average_query_expansion
from comicid.models.embedding_model import EmbeddingModel
from comicid.models.ensemble import Ensemble, load_model
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection
from comicid.store.ingest import ingest
from comicid.store.vectors import save_instance_vectors

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
    allow_outside: bool = False
    rerank: bool = False
    aqe: int = 0


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


def retrieval_scores(embedded: InstanceEmbeddings, rerank: bool = False, aqe: int = 0) -> dict[str, Any]:
    """Query/gallery retrieval over the labelled instances of ``embedded``.

    ``aqe`` > 0 replaces each query's vector by its average query expansion over the gallery (in
    leave-one-out every instance is a query, so every vector is expanded); ``rerank`` ranks by the
    k-reciprocal distance computed over queries and gallery together (:mod:`comicid.identity.rerank`).
    """
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
    identities = table["identity"].to_numpy()
    exclude = exclusion_mask(table["source"].to_numpy()[q], table["source"].to_numpy()[g],
                             None if ids is None else ids[q], None if ids is None else ids[g],
                             query_labels=identities[q], gallery_labels=identities[g])
    if rerank or aqe:
        points = np.union1d(q, g)  # each instance once, even when it is both query and gallery
        q_at, g_at = np.searchsorted(points, q), np.searchsorted(points, g)
        vectors = average_query_expansion(embedded.vectors[points], q_at, aqe, gallery_rows=g_at)
        if rerank and len(q):  # scored one block of queries at a time: memory O(block x gallery), like the plain path
            reranker = KReciprocalReranker().fit(vectors)
            scores = summarise_retrieval(QueryScores.concatenate(
                query_retrieval_scores(distance, identities[q][part], identities[g], exclude[part], kind="distance")
                for part, distance in reranker.blocks(q_at, g_at)))
        else:
            scores = retrieval_metrics(vectors[q_at], identities[q], vectors[g_at], identities[g], exclude=exclude)
    else:
        scores = retrieval_metrics(embedded.vectors[q], identities[q], embedded.vectors[g], identities[g],
                                   exclude=exclude)
    scores["reranked"], scores["aqe"] = bool(rerank), int(aqe)
    scores["protocol"] = "query->gallery" if ids is None else "leave-one-out"
    if not scores["queries"]:
        raise ConfigError(f"no query has a matching identity left in its gallery ({len(q)} queries, "
                          f"{len(g)} gallery instances): nothing to score; check the role, identity and "
                          "source columns")
    return scores


def check_scorable(evaluated: InstanceEmbeddings, split: str) -> None:
    """Refuse splits whose scores would mean nothing: no labels, or a single identity (rank-1 is then 1.0
    whatever the model does)."""
    identities = evaluated.table["identity"]
    labelled = identities[identities != ""]
    if labelled.empty:
        raise ConfigError(f"no instance of split {split!r} has an identity: evaluate needs labelled rows "
                          "(use `comicid cluster` for unlabelled data)")
    if labelled.nunique() < 2:
        raise ConfigError(f"split {split!r} has a single identity ({labelled.iloc[0]!r}): retrieval and "
                          "clustering scores need at least two")


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
    sources = table["source"].to_numpy()
    if protocol == "local":
        return local_protocol(vectors, table["identity"].to_numpy(), protocol_groups(table), sources=sources)
    return global_protocol(vectors, table["identity"].to_numpy(), table["book"].to_numpy(), sources=sources)


def assign_every_split(embedded: InstanceEmbeddings, scored: np.ndarray, split: str, options: EvaluationOptions,
                       calibration: InstanceEmbeddings, collection: Collection) -> tuple[Assignment, float]:
    """Assign every instance, clustering each split on its own; the scored split last.

    Returns the assignment of all instances (rows as in ``embedded``) with the scored split's
    ``info``, and the seconds its clustering took. Identity ids are prefixed with the split when
    there are several, so that clusters of two splits never share an id. Other splits reuse the
    threshold chosen for the scored one; the scored split goes last so that what a method learns
    per book (adaptive adapters) is the scored split's.
    """
    splits = embedded.table["split"].to_numpy()
    groups = [(value, (splits == value) & ~scored) for value in sorted(set(splits[~scored].tolist()))]
    groups.append((split, scored))
    params = collection_params(options.method, collection.models_dir)
    on_fitted = save_learnt_state(collection.adapters_dir)
    started = time.perf_counter()
    main = assign_identities(embedded.subset(scored), method=options.method, scope=options.scope,
                             threshold=options.threshold, calibration=calibration, params=params,
                             progress=options.progress, on_fitted=on_fitted)
    seconds = time.perf_counter() - started
    identity = np.full(len(embedded), "", dtype=object)
    confidence = np.zeros(len(embedded))
    several = len(groups) > 1
    for value, mask in groups:
        if mask is scored:
            assignment = main
        else:
            threshold = main.info["threshold"] if main.info["threshold"] is not None else options.threshold
            assignment = assign_identities(embedded.subset(mask), method=options.method, scope=options.scope,
                                           threshold=threshold, params=main.info["params"], progress=False,
                                           on_fitted=on_fitted)  # the scored split's rule, whole
        ids = assignment.table["identity_id"].to_numpy(dtype=object)
        name = value or "unsplit"
        identity[mask] = [f"{name}:{i}" if several and i else i for i in ids]
        confidence[mask] = assignment.table["confidence"].to_numpy()
    table = pd.DataFrame({"instance_key": embedded.table["instance_key"].to_numpy(),
                          "book": embedded.table["book"].to_numpy(),
                          "identity_id": identity.astype(str), "confidence": confidence})
    return Assignment(table=table, info=dict(main.info, instances=int(len(table)))), seconds


def evaluate_manifest(manifest: str | Path, options: EvaluationOptions | None = None,
                      model: EmbeddingModel | Ensemble | None = None, workdir: str | Path | None = None) -> dict[str, Any]:
    """Score ``manifest`` end to end; returns the JSON-ready result (see docs/EVALUATION.md).

    ``workdir`` keeps the collection (crops and cached features) for later runs; by default a
    temporary folder is used and removed.
    """
    options = options or EvaluationOptions()
    if options.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {options.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    started = time.perf_counter()
    frame = read_manifest(manifest, check_files=not options.skip_bad, allow_outside=options.allow_outside)
    if not (frame["identity"] != "").any():
        raise ConfigError(f"'{manifest}' has no row with an identity: evaluate needs labelled rows "
                          "(use `comicid cluster` for unlabelled data)")
    model = model if model is not None else load_model(options.model, device=options.device,
                                                                     precision=options.precision)
    with tempfile.TemporaryDirectory(prefix="comicid-eval-") as scratch:
        collection = Collection.create(Path(workdir) if workdir else Path(scratch) / "collection")
        with collection.writer("evaluate"):
            return _evaluate(manifest, frame, options, model, collection, workdir, started)


def _evaluate(manifest: str | Path, frame: pd.DataFrame, options: EvaluationOptions, model: EmbeddingModel,
              collection: Collection, workdir: str | Path | None, started: float) -> dict[str, Any]:
    report = ingest(frame, collection, skip_bad=options.skip_bad, progress=options.progress,
                    source=str(Path(manifest).resolve()))
    embed_start = time.perf_counter()
    everything = embed_collection(collection, model, device=options.device, batch_size=options.batch_size,
                                  progress=options.progress, n_views=views_needed(options.method))
    embed_seconds = time.perf_counter() - embed_start
    # Only this manifest's instances: a kept collection may hold other data, which is not scored.
    embedded = everything.subset(everything.table["instance_key"].isin(set(instance_keys(frame))).to_numpy())
    scored, dev, split = choose_rows(embedded, options.split)
    evaluated = embedded.subset(scored)
    check_scorable(evaluated, split)
    result: dict[str, Any] = {"manifest": str(manifest), "collection": str(workdir) if workdir else None,
                              "model": model.model_id, "method": options.method,
                              "scope": options.scope, "split": split, "images": int(len(frame) - len(report.skipped)),
                              "instances": int(len(evaluated)), "skipped_rows": len(report.skipped)}
    result["retrieval"] = retrieval_scores(evaluated, rerank=options.rerank, aqe=options.aqe)
    if options.protocol != "standard":
        result["protocol"] = {"name": options.protocol, **protocol_scores(evaluated, options.protocol)}

    assignment, cluster_seconds = assign_every_split(embedded, scored, split, options, embedded.subset(dev), collection)
    labelled = (evaluated.table["identity"] != "").to_numpy()
    predicted = assignment.table["identity_id"].to_numpy(dtype=object)[scored]
    predicted = np.where(predicted == "", -1, predicted)  # unknown counts as its own singleton
    clustering = clustering_metrics_by_group(evaluated.table["identity"].to_numpy()[labelled],
                                             predicted[labelled], evaluated.table["book"].to_numpy()[labelled])
    result["method"] = assignment.info["method"]  # what ``auto`` resolved to
    clustering["threshold"] = assignment.info["threshold"]
    clustering["threshold_source"] = assignment.info["threshold_source"]
    clustering["threshold_rule"] = describe_threshold(assignment.info)
    result["clustering"] = clustering
    result["seconds"] = {"embed": round(embed_seconds, 3), "cluster": round(cluster_seconds, 3),
                         "total": round(time.perf_counter() - started, 3)}
    collection.write_assignments(_with_other_instances(collection, assignment.table), assignment.info)
    save_instance_vectors(collection, embedded)
    collection.update_meta(metrics={key: result[key] for key in ("retrieval", "clustering", "split")})
    return result


def _with_other_instances(collection: Collection, table: pd.DataFrame) -> pd.DataFrame:
    """The new assignments, plus earlier ones of instances this manifest does not hold (kept as they were)."""
    if not collection.assignments_path.is_file():
        return table
    earlier = collection.assignments()
    others = earlier[~earlier["instance_key"].isin(table["instance_key"])]
    return pd.concat([others, table], ignore_index=True) if len(others) else table
