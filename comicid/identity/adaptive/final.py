"""Parameter-free final clustering with per-cluster thresholds (VideoClusterNet, stage 3).

Every cluster carries its own threshold: the mean cosine similarity among its own members under the
learnt metric. Two clusters merge when their mean cross-similarity beats either cluster's threshold
(that is, the lower of the two): a cluster accepts a neighbour that looks as much like it as its own
members look like each other. All merges found in one pass are applied together, most similar first,
chaining transitively; thresholds are recomputed and the pass repeats until nothing merges. A merge
that would put a cannot-linked pair in one cluster is skipped.

A cluster of one instance has no pairs of members. Its threshold is then its *self-similarity*: the
mean similarity between its crop and that crop's augmented views, which says how much the embedding of
this very crop moves when nothing about the character changes. Without views a singleton has no
threshold of its own and can only be accepted by a larger cluster.

Cluster sums make each pass O(C^2 D): with unit vectors, the mean cross-similarity of clusters a and b
is ``u_a . u_b / (n_a n_b)`` and the mean within-cluster similarity is ``(|u_a|^2 - n_a) / (n_a (n_a - 1))``.
"""

from __future__ import annotations

import numpy as np

from comicid.identity.adaptive.groups import canonical, union_from_labels


def cluster_thresholds(embeddings: np.ndarray, labels: np.ndarray,
                       self_similarity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster sums (C, D), sizes (C,) and thresholds (C,) for canonical ``labels``."""
    n_clusters = int(labels.max()) + 1
    sums = np.zeros((n_clusters, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings)
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = (np.sum(sums**2, axis=1) - sizes) / (sizes * (sizes - 1))
    singles = sizes == 1
    if self_similarity is None:
        thresholds[singles] = np.inf
    else:
        first = np.unique(labels, return_index=True)[1]
        thresholds[singles] = np.asarray(self_similarity, dtype=np.float64)[first[singles]]
    return sums, sizes, thresholds


def merge_clusters(embeddings: np.ndarray, labels: np.ndarray, cannot_link: np.ndarray | None = None,
                   self_similarity: np.ndarray | None = None, max_passes: int = 100) -> np.ndarray:
    """Merge clusters until no pair beats either one's threshold; return canonical labels (N,).

    Args:
        embeddings: (N, D) L2-normalised embeddings under the learnt metric.
        labels: (N,) starting clusters (the matched groups); must respect ``cannot_link``.
        cannot_link: (K, 2) instance pairs that must stay apart.
        self_similarity: (N,) similarity of each crop to its own augmented views (singleton thresholds).
        max_passes: safety cap only; each pass that changes anything removes at least one cluster.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = canonical(labels)
    for _ in range(max_passes):
        sums, sizes, thresholds = cluster_thresholds(embeddings, labels, self_similarity)
        cross = (sums @ sums.T) / np.outer(sizes, sizes)
        bar = np.minimum(thresholds[:, None], thresholds[None, :])
        a_index, b_index = np.nonzero(np.triu(cross > bar, k=1))
        if len(a_index) == 0:
            break
        representative = np.unique(labels, return_index=True)[1]
        union = union_from_labels(labels, cannot_link)
        margin = cross[a_index, b_index] - bar[a_index, b_index]
        for position in np.lexsort((b_index, a_index, -margin)):
            union.union(int(representative[a_index[position]]), int(representative[b_index[position]]))
        merged = union.labels()
        if merged.max() == labels.max():  # every candidate was blocked by a cannot-link
            break
        labels = merged
    return labels


def attach_pending(embeddings: np.ndarray, labels: np.ndarray, pending: np.ndarray,
                   cannot_link: np.ndarray | None = None, self_similarity: np.ndarray | None = None,
                   unknown: bool = False) -> np.ndarray:
    """Give each pending (low-quality) instance the cluster it fits, judged by the clusters' thresholds.

    Clusters and thresholds come from the non-pending instances only, so a blurred crop never lowers a
    cluster's bar. A pending instance joins the cluster with the highest mean similarity when that beats
    the cluster's threshold and no cannot-link forbids it; otherwise it stays on its own, or gets -1
    (unknown) when ``unknown`` is set. Pending instances are placed most similar first.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    pending = np.asarray(pending, dtype=bool)
    labels = canonical(labels)
    if not pending.any() or pending.all():
        return labels if not (unknown and pending.all()) else np.full(len(labels), -1)
    kept = canonical(labels[~pending])
    sums, sizes, thresholds = cluster_thresholds(embeddings[~pending], kept, None if self_similarity is None
                                                 else np.asarray(self_similarity)[~pending])
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
