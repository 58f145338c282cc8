"""Parameter-free final clustering with per-cluster thresholds (VideoClusterNet, stage 3).

Every cluster carries its own threshold: the mean cosine similarity among its own members under the
learnt metric. Two clusters merge when their mean cross-similarity beats either cluster's threshold
(the lower of the two): a cluster accepts a neighbour that looks as much like it as its own members
look like each other. Passes repeat, with thresholds recomputed, until nothing merges; a merge that
would put a cannot-linked pair in one cluster is skipped.

Two choices make this work on drawn characters, each measured on the development sets
(docs/ADAPTIVE.md has the numbers):

* **A cluster's members are its samples**: each instance's embedding *and its augmented views*. A
  cluster of one instance then has a threshold too (how much its crop moves under augmentation), and a
  cluster of near-identical animation frames gets the realistic bar "as similar as its restyled views"
  instead of a near-1 bar that nothing else could ever reach. Cross-similarity is measured between the
  clean instance embeddings only.
* **Only mutual nearest clusters are candidates** in a pass. With the "either" rule, one cluster with
  a low threshold (a crop whose views scatter) otherwise absorbs every neighbour in a single pass, and
  merges chaining through it collapsed whole books into one cluster. Merging reciprocal nearest pairs is
  how average linkage proceeds, so the result is average-linkage agglomeration whose stopping rule is
  each cluster's own threshold rather than a global one. Merges still chain across passes.

Cluster sums make each pass O(C^2 D): with unit vectors, the mean cross-similarity of clusters a and b
is ``u_a . u_b / (n_a n_b)`` and the mean similarity among the m samples of a cluster is
``(|s|^2 - m) / (m (m - 1))`` for the sum ``s`` of its samples.
"""

from __future__ import annotations

import numpy as np

from comicid.identity.adaptive.groups import union_from_labels
from comicid.identity.constraints import first_appearance_labels


def cluster_thresholds(embeddings: np.ndarray, labels: np.ndarray,
                       views: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster embedding sums (C, D), sizes (C,) and thresholds (C,) for canonical ``labels``.

    ``views`` (V, N, D) join the samples a threshold is computed from; without them a cluster of one
    has no pairs and gets an infinite threshold (it can only be accepted by another cluster).
    """
    n_clusters = int(labels.max()) + 1
    sums = np.zeros((n_clusters, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings)
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    sample_sums = sums.copy()
    if views is not None:
        np.add.at(sample_sums, labels, np.asarray(views, dtype=np.float64).sum(axis=0))
    samples = sizes * (1 + (0 if views is None else len(views)))
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = (np.sum(sample_sums**2, axis=1) - samples) / (samples * (samples - 1))
    thresholds[samples < 2] = np.inf
    return sums, sizes, thresholds


def merge_clusters(embeddings: np.ndarray, labels: np.ndarray, cannot_link: np.ndarray | None = None,
                   views: np.ndarray | None = None, max_passes: int = 10_000) -> np.ndarray:
    """Merge clusters until no mutual-nearest pair beats either one's threshold; canonical labels (N,).

    Args:
        embeddings: (N, D) L2-normalised embeddings under the learnt metric.
        labels: (N,) starting clusters (the matched groups); must respect ``cannot_link``.
        cannot_link: (K, 2) instance pairs that must stay apart.
        views: (V, N, D) L2-normalised view embeddings under the same metric (threshold samples).
        max_passes: safety cap only; every pass that continues removes at least one cluster.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = first_appearance_labels(labels, keep_unknown=False)
    blocked: set[tuple[int, int]] = set()  # pairs (by representative) a cannot-link forbids
    for _ in range(max_passes):
        sums, sizes, thresholds = cluster_thresholds(embeddings, labels, views)
        cross = (sums @ sums.T) / np.outer(sizes, sizes)
        representative = np.unique(labels, return_index=True)[1]
        np.fill_diagonal(cross, -np.inf)
        for a, b in blocked:
            cross[labels[a], labels[b]] = cross[labels[b], labels[a]] = -np.inf
        nearest = np.argmax(cross, axis=1)
        mutual = np.flatnonzero((nearest[nearest] == np.arange(len(nearest))) & (np.arange(len(nearest)) < nearest))
        partner = nearest[mutual]
        passes = cross[mutual, partner] > np.minimum(thresholds[mutual], thresholds[partner])
        if not passes.any():
            break
        union = union_from_labels(labels, cannot_link)
        for a, b in zip(mutual[passes], partner[passes], strict=True):
            if not union.union(int(representative[a]), int(representative[b])):
                blocked.add((int(representative[a]), int(representative[b])))
        labels = union.labels()
    return labels


def attach_pending(embeddings: np.ndarray, labels: np.ndarray, pending: np.ndarray,
                   cannot_link: np.ndarray | None = None, views: np.ndarray | None = None,
                   unknown: bool = False) -> np.ndarray:
    """Give each pending (low-quality) instance the cluster it fits, judged by the clusters' thresholds.

    Clusters and thresholds come from the non-pending instances only, so a blurred crop never lowers a
    cluster's bar. A pending instance joins the cluster with the highest mean similarity when that beats
    the cluster's threshold and no cannot-link forbids it; otherwise it stays on its own, or gets -1
    (unknown) when ``unknown`` is set. Pending instances are placed most similar first.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    pending = np.asarray(pending, dtype=bool)
    labels = first_appearance_labels(labels, keep_unknown=False)
    if not pending.any() or pending.all():
        return np.full(len(labels), -1) if unknown and pending.all() else labels
    kept = first_appearance_labels(labels[~pending], keep_unknown=False)
    kept_views = None if views is None else np.asarray(views)[:, ~pending]
    sums, sizes, thresholds = cluster_thresholds(embeddings[~pending], kept, kept_views)
    mean_similarity = embeddings[pending] @ sums.T / sizes[None, :]  # (P, C)
    full = np.empty(len(labels), dtype=np.int64)
    full[~pending] = kept
    full[pending] = kept.max() + 1 + np.arange(pending.sum())
    representative = np.flatnonzero(~pending)[np.unique(kept, return_index=True)[1]]
    union = union_from_labels(full, cannot_link)
    best = np.argmax(mean_similarity, axis=1)
    best_value = mean_similarity[np.arange(len(best)), best]
    pending_index = np.flatnonzero(pending)
    joined = np.zeros(len(labels), dtype=bool)
    for position in np.argsort(-best_value, kind="stable"):
        cluster = best[position]
        if best_value[position] > thresholds[cluster]:
            joined[pending_index[position]] = union.union(int(pending_index[position]),
                                                          int(representative[cluster]))
    result = union.labels()
    if unknown:
        result[pending & ~joined] = -1
    return result
