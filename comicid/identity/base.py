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

from comicid.search.ann import AnnIndex, knn_graph
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
    blocks of bounded memory up to :data:`CONFIDENCE_EXACT_MAX` (instance, cluster) pairs; beyond, the
    most similar other cluster is looked for among the clusters next to the instance's own in the kNN
    graph ``neighbours (N, k)`` (rows of ``embeddings``, -1 = none) when the clusterer built one (the
    graph method's ``neighbours_``), else by an approximate search over cluster means (near-linear).
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


#: Instances whose candidate clusters :func:`_nearest_adjacent_mean` scores in one matrix product.
ADJACENT_BATCH = 256
#: Nearest other cluster means that :func:`_nearest_adjacent_mean` adds to a cluster's graph neighbours.
MEAN_NEIGHBOURS = 10


def _nearest_adjacent_mean(unit: np.ndarray, means: np.ndarray, member_of: np.ndarray,
                           neighbour_cluster: np.ndarray) -> np.ndarray:
    """Highest inner product of each row with the mean of a cluster next to its own.

    ``neighbour_cluster (N, k)``: the cluster of each kNN neighbour (-1 = none or unknown). Two clusters
    are next to each other when a kNN edge of the clustering's graph joins them or when one's mean is
    among the :data:`MEAN_NEIGHBOURS` nearest of the other's (:func:`knn_graph` over the means: an
    isolated cluster has no kNN edge out, yet a nearest other cluster). Every instance is scored
    exactly against all clusters next to its own (the same candidates for all members, so an instance
    deep inside a large cluster still finds the nearest other cluster), in batches of about
    :data:`ADJACENT_BATCH` instances against the union of their candidates, which can only find a
    better "other". No library offers "best mean among adjacent clusters", hence written here.
    """
    count = len(means)
    near_means = knn_graph(means, min(MEAN_NEIGHBOURS, count - 1))[1]
    source = np.concatenate([np.repeat(member_of, neighbour_cluster.shape[1]),
                             np.repeat(np.arange(count), near_means.shape[1])])
    target = np.concatenate([neighbour_cluster.ravel(), near_means.ravel()])
    linked = (target >= 0) & (target != source)
    adjacency = sparse.csr_matrix((np.ones(int(linked.sum()), dtype=np.int8), (source[linked], target[linked])),
                                  shape=(count, count))
    adjacency = (adjacency + adjacency.T).tocsr()  # both directions; duplicates summed, values unused
    order = np.argsort(member_of, kind="stable")
    bounds = np.searchsorted(member_of[order], np.arange(count + 1))
    other = np.full(len(unit), -1.0)
    means32 = means.astype(np.float32)
    start = 0
    while start < count:
        stop = max(start + 1, int(np.searchsorted(bounds, bounds[start] + ADJACENT_BATCH, side="right")) - 1)
        stop = min(stop, count)
        rows = order[bounds[start]:bounds[stop]]
        candidates = np.unique(adjacency.indices[adjacency.indptr[start]:adjacency.indptr[stop]])
        step = max(1, CONFIDENCE_BLOCK // max(1, len(candidates)))  # a large cluster: rows in blocks
        for first in range(0, len(rows) if len(candidates) else 0, step):
            block = rows[first:first + step]
            similarity = unit[block].astype(np.float32) @ means32[candidates].T  # (block, candidates)
            similarity[candidates[None, :] == member_of[block][:, None]] = -np.inf  # never its own cluster
            best = similarity.max(axis=1).astype(np.float64)
            other[block] = np.where(np.isfinite(best), best, -1.0)
        start = stop
    return other
