"""What every clusterer shares: the scikit-learn estimator base class, constraint handling (must-links
merged before clustering, cannot-links repaired after), and the per-instance confidence.

A clusterer subclasses :class:`ConstrainedClusterer`, declares its hyper-parameters as ``__init__``
arguments stored unchanged (so ``get_params``/``set_params``/``sklearn.base.clone`` work), checks them
in :meth:`~ConstrainedClusterer._validate` (called by ``fit``), and implements either
:meth:`~ConstrainedClusterer._cluster_points` (plain clustering of points; constraints are then handled
here, the same way for every method) or, when it honours constraints natively,
:meth:`~ConstrainedClusterer._fit_labels`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClusterMixin

from comicid.search.ann import AnnIndex, exact_search, knn_graph
from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    check_embeddings,
    first_appearance_labels,
)


#: :func:`confidence` compares every instance with every cluster up to this many pairs (a few seconds).
CONFIDENCE_EXACT_MAX = 200_000_000
#: (instance, cluster) similarities held in memory at once by :func:`confidence` (160 MB of float64).
CONFIDENCE_BLOCK = 20_000_000


class ConstrainedClusterer(ClusterMixin, BaseEstimator):
    """A scikit-learn clusterer of L2-normalised embeddings under comic constraints.

    ``fit(X, constraints=None)`` sets ``labels_`` (int64, numbered by first appearance, -1 = unknown)
    and ``n_features_in_``; ``fit_predict(X, constraints=None)`` returns the labels. ``constraints``
    comes second because that is what identity assignment passes; scikit-learn passes ``y`` there, so a
    1-D array of one value per row is taken as ``y`` and ignored, as every scikit-learn clusterer
    ignores it (anything else that is not :class:`Constraints` is an error, never silently dropped).
    Nothing from one call leaks into the next: every fitted attribute is set anew by ``fit``.

    Class attributes: ``threshold_parameter`` names the hyper-parameter ``--threshold`` sets (or None);
    ``image_views`` is how many augmented views per crop ``fit`` learns from (``views=``), 0 for most.
    """

    threshold_parameter: ClassVar[str | None] = None
    image_views: ClassVar[int] = 0

    def _validate(self) -> None:
        """Check hyper-parameters (raise :class:`IdentityInputError`); called by ``fit``, as in scikit-learn."""

    def check_params(self) -> ConstrainedClusterer:
        """Check the hyper-parameters now and return ``self``: lets a workflow refuse a bad ``--threshold``
        before a long embedding run instead of at ``fit`` (which checks them again)."""
        self._validate()
        return self

    def fit(self, X: np.ndarray, constraints: Constraints | None = None, y: object = None,
            views: np.ndarray | None = None, **fit_params: object) -> ConstrainedClusterer:
        """Cluster ``X (N, D)``; ``views (V, N, D)`` are used by methods with ``image_views > 0``;
        ``fit_params`` are method-specific data (e.g. the adaptive method's ``instance_parts``)."""
        self._validate()
        unit = check_embeddings(X)  # (N, D), L2-normalised
        if constraints is not None and not isinstance(constraints, Constraints):
            if np.ndim(constraints) != 1 or len(constraints) != len(unit):  # type: ignore[arg-type]
                raise IdentityInputError(
                    f"constraints must be a Constraints object or None, not {type(constraints).__name__}")
            constraints = None  # scikit-learn's y (N,), passed second by its checks and Pipelines: ignored
        self.n_features_in_ = unit.shape[1]
        constraints = constraints if constraints is not None else Constraints()
        constraints.check(len(unit))
        labels = self._fit_labels(unit, constraints, views, **fit_params)
        self.labels_ = first_appearance_labels(np.asarray(labels, dtype=np.int64))
        return self

    def fit_predict(  # type: ignore[override]
            self, X: np.ndarray, constraints: Constraints | None = None, y: object = None,
            views: np.ndarray | None = None, **fit_params: object) -> np.ndarray:
        """Labels ``(N,)`` of ``X``: int64, numbered by first appearance, -1 = unknown."""
        return self.fit(X, constraints, y, views=views, **fit_params).labels_

    def _fit_labels(self, unit: np.ndarray, constraints: Constraints, views: np.ndarray | None) -> np.ndarray:
        """Labels under constraints, the same way for every method: must-linked instances are replaced by
        their normalised mean, :meth:`_cluster_points` clusters the groups, and clusters holding a
        cannot-linked pair are split by :func:`repair_cannot_links`."""
        n = len(unit)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        groups = constraints.must_link_groups(n)
        merged = group_means(unit, groups)  # (G, D), L2-normalised
        labels = self._cluster_points(merged)
        labels = repair_cannot_links(merged, labels, groups[constraints.cannot_link])
        return labels[groups]

    def _cluster_points(self, unit: np.ndarray) -> np.ndarray:
        """Labels of unit vectors ``(G, D)`` without constraints (-1 = unknown)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _cluster_points nor _fit_labels")


#: Rows :func:`group_sums` adds in one sparse product (float64 blocks of float32 input: no second N x D copy).
SUM_BLOCK = 65_536


def group_sums(vectors: np.ndarray, groups: np.ndarray, count: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``(count, D)`` float64 sums of the rows of ``vectors (N, D)`` per group id ``groups (N,)`` (0 ..
    count-1), each row times its ``weights`` (default 1): sparse products in blocks, not np.add.at."""
    n = len(groups)
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    membership = sparse.csc_matrix((weights, (groups, np.arange(n))), shape=(count, n))
    sums = np.zeros((count, vectors.shape[1]))
    for start in range(0, n, SUM_BLOCK):
        sums += membership[:, start:start + SUM_BLOCK] @ np.asarray(vectors[start:start + SUM_BLOCK], dtype=np.float64)
    return sums


def cosine_distances(unit: np.ndarray) -> np.ndarray:
    """``(N, N)`` cosine distances of unit rows, clipped to [0, 2] and exactly 0 on the diagonal."""
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    return distance


def group_means(unit: np.ndarray, groups: np.ndarray) -> np.ndarray:
    sums = group_sums(unit, groups, int(groups.max()) + 1)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    means = sums / np.maximum(norms, 1e-12)
    cancelled = np.flatnonzero(norms[:, 0] <= 1e-12)
    if len(cancelled):
        # Opposite vectors must-linked together cancel out; any unit vector then represents them equally badly.
        means[cancelled] = unit[np.unique(groups, return_index=True)[1][cancelled]]
    return means


def repair_cannot_links(unit: np.ndarray, labels: np.ndarray, cannot_link: np.ndarray) -> np.ndarray:
    """Split clusters holding a cannot-linked pair, for clusterers that cannot take constraints.

    While some cluster holds a cannot-linked pair, the member of that pair with the lower
    :func:`confidence` leaves: it joins the most similar cluster it has no cannot-link with when its
    mean similarity there is at least its mean similarity to the members it leaves (a fit as good as
    the clustering had accepted), and otherwise becomes a singleton. Each move removes a violation and
    creates none, so the loop ends. Label -1 (unknown) is never in a violation.
    """
    labels = labels.copy()
    while True:
        violated = cannot_link[(labels[cannot_link[:, 0]] == labels[cannot_link[:, 1]])
                               & (labels[cannot_link[:, 0]] >= 0)]
        if len(violated) == 0:
            return labels
        pair = violated[0]
        scores = confidence(unit[labels >= 0], labels[labels >= 0])
        score_of = np.zeros(len(labels))
        score_of[labels >= 0] = scores
        leaver = int(pair[np.argmin(score_of[pair])])  # argmin: ties leave the first of the pair
        labels[leaver] = _new_home(unit, labels, leaver, cannot_link)


def _new_home(unit: np.ndarray, labels: np.ndarray, leaver: int, cannot_link: np.ndarray) -> int:
    old = labels[leaver]
    partners = np.concatenate([cannot_link[cannot_link[:, 0] == leaver, 1],
                               cannot_link[cannot_link[:, 1] == leaver, 0]])
    similarity = unit @ unit[leaver]  # (N,)
    left = labels == old
    left[leaver] = False
    bar = similarity[left].mean()  # never empty: a cannot-linked partner is in the cluster it leaves
    candidates = [c for c in np.unique(labels[labels >= 0])
                  if c != old and not np.isin(labels[partners], c).any()]
    if candidates:
        means = [similarity[labels == c].mean() for c in candidates]
        best = int(np.argmax(means))
        if means[best] >= bar:
            return int(candidates[best])
    return int(labels.max()) + 1


def confidence(embeddings: np.ndarray, labels: np.ndarray, neighbours: np.ndarray | None = None) -> np.ndarray:
    """Per-instance confidence in [0, 1] that it belongs to its cluster rather than the next best.

    ``(1 + own - other) / 2`` clipped to [0, 1], where ``own`` is the mean cosine similarity to the
    other members of its cluster and ``other`` the highest mean similarity to any other cluster (the
    same averages average linkage uses). 0.5 means "as close to another cluster as to its own".
    A singleton's ``own`` is 1, so its confidence only says how isolated it is; with one cluster
    ``other`` is -1. Label -1 (unknown) gets 0 and is not a cluster. Cost: O(N x clusters x D) in
    blocks of bounded memory up to :data:`CONFIDENCE_EXACT_MAX` (instance, cluster) pairs; beyond, when
    the clusterer built a kNN graph ``neighbours (N, k)`` (rows of ``embeddings``, -1 = none; the graph
    method's ``neighbours_``), ``other`` is the best among candidate clusters found from that graph and
    the cluster means (:func:`_nearest_adjacent_mean`, O(N k D)), else from an approximate search over
    cluster means. Both can only miss the best other cluster (confidence a little higher), never invent one.
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
    sums = group_sums(unit[known], member_of, len(clusters))
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
    elif neighbours is not None:
        cluster_of = np.full(len(unit), -1, dtype=np.int64)
        cluster_of[known] = member_of
        neighbour = np.asarray(neighbours)[known]
        other = _nearest_adjacent_mean(unit[known], means, member_of,
                                       np.where(neighbour >= 0, cluster_of[neighbour], -1))  # -1: none, not the last row
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


#: Candidate clusters that :func:`_nearest_adjacent_mean` gives all members of a cluster from each of its
#: sources (kNN-joined clusters, nearest means). At 50k synthetic instances (14k clusters) the kNN
#: neighbours' clusters plus this many (exact) nearest means held the best other cluster for 95.9 % of
#: instances with 4, 99.3 % with 8, 99.6 % with 16, 99.7 % with 32.
CLUSTER_CANDIDATES = 16
#: Instances :func:`_nearest_adjacent_mean` scores at once: a (block, candidates, D) float32 gather of
#: a few tens of MB.
ADJACENT_BLOCK = 512
#: Means the IVF search for each cluster's nearest other means scans at most (``max_candidates`` of
#: :func:`knn_graph`): keeps that search linear in the number of clusters. At 1M synthetic instances
#: (282k clusters): 1,024 took 35 s, 2,048 52 s, 4,096 68 s; confidence agreement with the exact one
#: 64 % and 67 % of instances for the first two.
MEAN_SEARCH_CANDIDATES = 2048
#: (cluster, cluster) pairs up to which clusters with an instance whose kNN edges all stay inside also get
#: their exact nearest means (faiss flat search; 2,617 x 282k took 9 s at 1M).
LONELY_EXACT_MAX = 2_000_000_000


def _nearest_adjacent_mean(unit: np.ndarray, means: np.ndarray, member_of: np.ndarray,
                           neighbour_cluster: np.ndarray) -> np.ndarray:
    """Highest inner product of each row with the mean of a candidate cluster other than its own.

    ``neighbour_cluster (N, k)``: the cluster of each kNN neighbour (-1 = none or unknown). Candidates of
    an instance: the clusters of its own kNN neighbours (O(N k)), and, shared by all members of its
    cluster (up to :data:`CLUSTER_CANDIDATES` each): the clusters a kNN edge joins to its cluster (either
    way) most similar to its normalised mean; its nearest other cluster means (:func:`knn_graph` over the
    means: the small tight clusters that score high against a mean yet hold none of an instance's k
    nearest); and, for a cluster with a member whose kNN edges all stay inside (the interior of a large
    cluster), its exact nearest means. Every candidate is scored exactly (float32), so a miss can only
    make ``other`` smaller (a confidence a little higher), never larger. No library offers "best mean
    among candidate clusters" per row, hence written here.
    """
    neighbour_cluster = np.where(neighbour_cluster == member_of[:, None], -1, neighbour_cluster)
    centre = (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    means32 = means.astype(np.float32)
    width = min(CLUSTER_CANDIDATES, len(means) - 1)
    shared = np.concatenate([_joined_clusters(centre, means32, member_of, neighbour_cluster, width),
                             knn_graph(means32, width, target_recall=0.8, max_candidates=MEAN_SEARCH_CANDIDATES)[1],
                             _lonely_nearest_means(centre, means32, member_of, neighbour_cluster, width)], axis=1)
    other = np.full(len(unit), -1.0)
    for start in range(0, len(unit), ADJACENT_BLOCK):
        own = member_of[start:start + ADJACENT_BLOCK, None]
        candidates = np.concatenate([neighbour_cluster[start:start + ADJACENT_BLOCK], shared[own[:, 0]]], axis=1)
        candidates = np.where(candidates == own, -1, candidates)  # never its own cluster
        block = unit[start:start + ADJACENT_BLOCK].astype(np.float32)
        similarity = np.einsum("nd,nkd->nk", block, means32[np.maximum(candidates, 0)])
        best = np.where(candidates >= 0, similarity, -np.inf).max(axis=1).astype(np.float64)
        other[start:start + len(best)] = np.where(np.isfinite(best), best, -1.0)
    return other


def _joined_clusters(centre: np.ndarray, means: np.ndarray, member_of: np.ndarray, neighbour_cluster: np.ndarray,
                     width: int) -> np.ndarray:
    """``(clusters, width)``: per cluster, the clusters a kNN edge joins to it (either way) whose means are
    most similar to its normalised mean ``centre``, best first; -1 pads."""
    count = len(means)
    source = np.repeat(member_of, neighbour_cluster.shape[1])
    target = neighbour_cluster.ravel()
    linked = target >= 0
    key = np.unique(np.concatenate([source[linked] * count + target[linked], target[linked] * count + source[linked]]))
    a, b = key // count, key % count  # each joined pair once per direction, sorted by a
    score = np.empty(len(a), dtype=np.float32)
    for first in range(0, len(a), SUM_BLOCK):  # small blocks of gathered rows stay in cache
        last = first + SUM_BLOCK
        score[first:last] = np.einsum("nd,nd->n", centre[a[first:last]], means[b[first:last]])
    order = np.lexsort((-score, a))
    a, b = a[order], b[order]
    rank = np.arange(len(a)) - np.searchsorted(a, a)  # position within its cluster's list, best first
    keep = rank < width
    table = np.full((count, width), -1, dtype=np.int64)
    table[a[keep], rank[keep]] = b[keep]
    return table


def _lonely_nearest_means(centre: np.ndarray, means: np.ndarray, member_of: np.ndarray, neighbour_cluster: np.ndarray,
                          width: int) -> np.ndarray:
    """``(clusters, width)``: the exact nearest other means (inner product with the raw means: what an
    instance at the centre scores) of each cluster having a member with no kNN neighbour in another
    cluster, while that is at most :data:`LONELY_EXACT_MAX` pairs (else none: the approximate nearest
    means stand alone); -1 elsewhere."""
    table = np.full((len(means), width), -1, dtype=np.int64)
    lonely = np.unique(member_of[(neighbour_cluster < 0).all(axis=1)])
    if len(lonely) == 0 or width == 0 or len(lonely) * len(means) > LONELY_EXACT_MAX:
        return table
    found = exact_search(means, centre[lonely], width + 1)[1]
    found = np.where(found == lonely[:, None], -1, found)
    order = np.argsort(found < 0, axis=1, kind="stable")[:, :width]  # drop the cluster itself, keep the order
    table[lonely] = np.take_along_axis(found, order, axis=1)
    return table
