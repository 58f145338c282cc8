"""Agglomerative identity assignment with a cosine distance threshold, and the shared confidence.

Average linkage merges the two clusters whose members are, on average, closest, and stops when the
closest pair is ``distance_threshold`` apart or more: the threshold, not a cluster count, decides how
many identities there are, which is what a collection of unknown cast size needs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    check_embeddings,
    first_appearance_labels,
)
from comicid.identity.limits import check_agglomerative_size
from comicid.search.ann import AnnIndex

LINKAGES = ("average", "complete")
#: :func:`confidence` compares every instance with every cluster up to this many pairs (a few seconds).
CONFIDENCE_EXACT_MAX = 200_000_000
#: (instance, cluster) similarities held in memory at once by :func:`confidence` (160 MB of float64).
CONFIDENCE_BLOCK = 20_000_000


class AgglomerativeClusterer:
    """Average- (or complete-) linkage clustering on cosine distance, honouring constraints.

    Args:
        distance_threshold: clusters closer than this cosine distance (0 = same direction, 2 =
            opposite) are merged; higher means fewer, larger clusters.
        linkage: ``"average"`` (default) or ``"complete"``. Single linkage is not offered: it chains
            look-alike characters together, and it cannot carry a cannot-link through a merge the way
            the two offered linkages do.
    """

    threshold_parameter: ClassVar[str] = "distance_threshold"

    def __init__(self, distance_threshold: float = 0.5, linkage: str = "average") -> None:
        if linkage not in LINKAGES:
            raise IdentityInputError(f"linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
        if not np.isfinite(distance_threshold) or distance_threshold <= 0:
            raise IdentityInputError(f"distance_threshold must be a positive number, got {distance_threshold!r}")
        self.distance_threshold = float(distance_threshold)
        self.linkage = linkage

    def fit_predict(self, embeddings: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
        """Cluster ``(N, D)`` embeddings; return int64 labels ``(N,)`` numbered by first appearance."""
        unit = check_embeddings(embeddings)  # (N, D), L2-normalised
        n = len(unit)
        if constraints is not None:
            constraints.check(n)
        if n < 2:
            return np.zeros(n, dtype=np.int64)
        check_agglomerative_size(n)
        unconstrained = constraints is None or (len(constraints.cannot_link) == 0 and len(constraints.must_link) == 0)
        if unconstrained:
            model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage=self.linkage,
                                            distance_threshold=self.distance_threshold)
            return first_appearance_labels(model.fit_predict(unit))
        groups = constraints.must_link_groups(n)
        distance = _group_distances(cosine_distances(unit), groups, self.linkage)
        forbid_pairs(distance, groups[constraints.cannot_link])
        group_labels = constrained_linkage(distance, self.distance_threshold, self.linkage)
        return first_appearance_labels(group_labels[groups])


def cosine_distances(unit: np.ndarray) -> np.ndarray:
    """``(N, N)`` cosine distances of unit rows, clipped to [0, 2] and exactly 0 on the diagonal."""
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    return distance


def _group_distances(distance: np.ndarray, groups: np.ndarray, linkage: str) -> np.ndarray:
    """Linkage distance between must-link groups, as if their members had been merged first."""
    n_groups = int(groups.max()) + 1
    if n_groups == len(groups):
        return distance.copy()
    if linkage == "average":
        member = np.zeros((n_groups, len(groups)))
        member[groups, np.arange(len(groups))] = 1.0
        sizes = member.sum(axis=1)
        return (member @ distance @ member.T) / np.outer(sizes, sizes)
    by_row = np.stack([distance[groups == g].max(axis=0) for g in range(n_groups)])  # complete: max
    return np.stack([by_row[:, groups == g].max(axis=1) for g in range(n_groups)], axis=1)


def forbid_pairs(distance: np.ndarray, pairs: np.ndarray) -> None:
    """Mark cannot-linked pairs as infinitely far apart, in place."""
    distance[pairs[:, 0], pairs[:, 1]] = np.inf
    distance[pairs[:, 1], pairs[:, 0]] = np.inf


def constrained_linkage(distance: np.ndarray, threshold: float, linkage: str = "average") -> np.ndarray:
    """Greedy agglomeration on a dense distance matrix whose forbidden pairs are ``inf``.

    No library offers average linkage with cannot-links (scikit-learn's ``connectivity`` restricts
    which *neighbours* may merge, not which pairs may never meet), so this is written here. The
    Lance-Williams update for average linkage is the size-weighted mean of the two merged rows, and
    for complete linkage their maximum; both turn ``inf`` into ``inf``, so "forbidden" is OR-ed on
    every merge without a separate boolean matrix. Allowed merge distances stay monotone, so stopping
    at the first pair ``>= threshold`` cuts the same tree scikit-learn cuts when nothing is forbidden.

    Each row keeps its nearest neighbour; a merge refreshes only rows that pointed at a merged
    cluster, so N=2,000 takes about a second. Ties go to the lowest index (deterministic).

    Returns: int64 cluster label per row of ``distance`` (not renumbered).
    """
    n = len(distance)
    work = distance.astype(np.float64, copy=True)
    np.fill_diagonal(work, np.inf)
    size = np.ones(n)
    owner = np.arange(n)
    nearest = np.argmin(work, axis=1)
    nearest_distance = work[np.arange(n), nearest]
    while True:
        i = int(np.argmin(nearest_distance))
        if not nearest_distance[i] < threshold:
            return owner
        a, b = sorted((i, int(nearest[i])))  # merge b into a
        if linkage == "average":
            row = (size[a] * work[a] + size[b] * work[b]) / (size[a] + size[b])
        else:
            row = np.maximum(work[a], work[b])
        row[[a, b]] = np.inf
        work[a, :] = row
        work[:, a] = row
        work[b, :] = np.inf
        work[:, b] = np.inf
        size[a] += size[b]
        owner[owner == b] = a
        nearest_distance[b] = np.inf
        stale = np.flatnonzero((nearest == a) | (nearest == b))
        stale = np.union1d(stale[stale != b], [a])
        nearest[stale] = np.argmin(work[stale], axis=1)
        nearest_distance[stale] = work[stale, nearest[stale]]
        closer = row < nearest_distance
        nearest[closer] = a
        nearest_distance[closer] = row[closer]


def confidence(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-instance confidence in [0, 1] that it belongs to its cluster rather than the next best.

    ``(1 + own - other) / 2`` clipped to [0, 1], where ``own`` is the mean cosine similarity to the
    other members of its cluster and ``other`` the highest mean similarity to any other cluster (the
    same averages average linkage uses). 0.5 means "as close to another cluster as to its own".
    A singleton's ``own`` is 1, so its confidence only says how isolated it is; with one cluster
    ``other`` is -1. Label -1 (unknown) gets 0 and is not a cluster. Cost: O(N x clusters x D) in
    blocks of bounded memory up to :data:`CONFIDENCE_EXACT_MAX` (instance, cluster) pairs; beyond, the
    most similar other cluster is found by an approximate search over cluster means (near-linear).
    """
    unit = check_embeddings(embeddings)  # (N, D), L2-normalised
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(unit):
        raise IdentityInputError(f"{len(labels)} labels for {len(unit)} embeddings")
    scores = np.zeros(len(unit))
    known = np.flatnonzero(labels >= 0)
    if len(known) == 0:
        return scores
    clusters, member_of = np.unique(labels[known], return_inverse=True)
    sums = np.zeros((len(clusters), unit.shape[1]))
    np.add.at(sums, member_of, unit[known])
    counts = np.bincount(member_of, minlength=len(clusters)).astype(np.float64)
    means = sums / counts[:, None]  # (clusters, D): mean similarity to a cluster = dot with its mean
    rows = np.arange(len(known))
    own_count = counts[member_of]
    own_sum = np.einsum("nd,nd->n", unit[known], means[member_of]) * own_count
    own = np.where(own_count > 1, (own_sum - 1.0) / np.maximum(own_count - 1, 1), 1.0)  # drop self-similarity 1
    if len(clusters) == 1:
        other = np.full(len(known), -1.0)
    elif len(known) * len(clusters) <= CONFIDENCE_EXACT_MAX:
        other = np.empty(len(known))
        block = max(1, CONFIDENCE_BLOCK // len(clusters))
        for start in range(0, len(known), block):  # (block, clusters) at a time: bounded memory
            mean_similarity = unit[known[start:start + block]] @ means.T
            mean_similarity[rows[:len(mean_similarity)], member_of[start:start + block]] = -np.inf
            other[start:start + block] = mean_similarity.max(axis=1)
    else:
        other = _nearest_other_mean(unit[known], means, member_of)
    scores[known] = np.clip((1.0 + own - other) / 2.0, 0.0, 1.0)
    return scores


def _nearest_other_mean(unit: np.ndarray, means: np.ndarray, member_of: np.ndarray) -> np.ndarray:
    """Highest inner product of each row with a cluster mean other than its own, by HNSW search.

    Tuned to recall 0.85 among the means: at 100k instances / 28k clusters, efSearch 16 found the exact
    best other cluster for 89 % of instances in 14 s, efSearch 128 for 99 % in 83 s (a miss can only
    raise a confidence a little, never change a label).
    """
    index = AnnIndex.build(means, kind="hnsw", target_recall=0.85)
    scores, found = index.search(unit, 4)
    scores = np.where((found == member_of[:, None]) | (found < 0), -np.inf, scores).max(axis=1)
    return np.where(np.isfinite(scores), scores, -1.0)
