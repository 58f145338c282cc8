"""Graph clustering for large scopes: a kNN graph, Leiden communities, then an average-linkage merge.

Agglomerative clustering needs every pairwise distance (N x N); this method touches O(N k) of them:

1. **kNN graph** (:func:`comicid.search.ann.knn_graph`): the ``k`` most similar instances of each
   instance, exact up to 20,000 instances and from a faiss IVF index beyond (recall@10 0.8 within a
   budget of scanned vectors, :data:`GRAPH_MAX_CANDIDATES`). Edges less similar than
   ``1 - distance_threshold`` are pruned.
2. **Leiden** (igraph's ``community_leiden``, C core) with the constant Potts model (CPM), resolution
   ``resolution * (1 - distance_threshold)``: an instance stays in a community only while its summed
   similarity to the members exceeds the threshold times the community's size, i.e. its *average*
   similarity to them (pruned pairs counting 0) is above the threshold, the same rule that stops
   average linkage. CPM has no resolution limit, so small casts in a million-instance graph are not
   swallowed, unlike modularity.
3. **Merge**: a kNN graph sees only ``k`` neighbours, so a character with hundreds of instances can
   come out of Leiden as several communities. Communities joined by a kNN edge are merged, in rounds
   of reciprocal best pairs, while their exact mean pairwise cosine similarity is at least
   ``1 - distance_threshold``. That mean is ``sum_A . sum_B / (|A| |B|)`` for unit vectors, so it is
   exact from per-community sums and the merge costs O(edges between communities) a round, not
   O(N^2). No library offers average linkage over a sparse candidate graph from cluster sums, hence
   this step is written here.

Constraints as in the other methods that cannot take them inside: must-linked instances are fused into
one node first (their normalised mean, weighted by their count); the merge never joins communities
holding a cannot-linked pair, and communities Leiden made with one are repaired after
(:func:`comicid.identity.density.repair_cannot_links`, run on the affected communities and their graph
neighbours only).
"""

from __future__ import annotations

import random
from typing import ClassVar

import igraph
import numpy as np

from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    first_appearance_labels,
)
from comicid.identity.base import ConstrainedClusterer, group_means, group_sums, repair_cannot_links
from comicid.identity.registry import CLUSTERERS
from comicid.search.ann import knn_graph

ALGORITHMS = ("leiden",)
#: Recall@10 the graph's IVF index is tuned to above 20,000 instances. A graph needs each instance's
#: neighbours to be *of its identity*, not the exact top 30 among near-ties: at 40k instances 0.95
#: took nprobe 128 and 88 s, 0.8 took nprobe 2 and 5 s (2 shared cores).
GRAPH_RECALL = 0.8
#: Vectors the graph's IVF search scans per instance at most (nprobe x mean list size): a budget that
#: keeps the graph linear in N. Synthetic long-tailed data (benchmarks/scale.py) needs more and more
#: scanning for recall 0.8 as identities grow (exact top 10 among thousands of near-tied members):
#: nprobe 4 of 1,265 lists at 100k, 16 of 2,191 at 300k. At 100k, 300 to 1,300 scanned vectors
#: changed AMI by 0.008.
GRAPH_MAX_CANDIDATES = 2048


@CLUSTERERS.register("graph")
class GraphClusterer(ConstrainedClusterer):
    """kNN graph + Leiden (CPM) + average-linkage merge of communities; near-linear in N.

    Args:
        distance_threshold: cosine distance; pairs and communities less similar than
            ``1 - distance_threshold`` are not joined (the same scale as agglomerative's threshold, and
            the ``--threshold`` of the method).
        k: neighbours per instance in the graph (tens: more finds larger characters whole at more cost).
        resolution: multiplies the CPM resolution; 1 means "average similarity above the threshold".
        merge: run step 3 (off only to study Leiden alone).
        seed: Leiden's random seed (results are deterministic for a seed).

    After ``fit``, ``neighbours_ (N, k)`` is the kNN graph per instance (rows of ``X``, -1 = none),
    which :func:`comicid.identity.base.confidence` takes to score large scopes without a search.
    """

    threshold_parameter: ClassVar[str] = "distance_threshold"

    def __init__(self, distance_threshold: float = 0.5, k: int = 30, resolution: float = 1.0, merge: bool = True,
                 seed: int = 0) -> None:
        # Stored unchanged (scikit-learn's rule, so clone and set_params work); checked in fit.
        self.distance_threshold = distance_threshold
        self.k = k
        self.resolution = resolution
        self.merge = merge
        self.seed = seed

    def _validate(self) -> None:
        if not np.isfinite(self.distance_threshold) or not 0 < self.distance_threshold <= 2:
            raise IdentityInputError(f"distance_threshold must lie in (0, 2], got {self.distance_threshold!r}")
        if int(self.k) < 1:
            raise IdentityInputError(f"k must be a positive integer, got {self.k!r}")
        if not np.isfinite(self.resolution) or self.resolution <= 0:
            raise IdentityInputError(f"resolution must be a positive number, got {self.resolution!r}")

    def _fit_labels(self, unit: np.ndarray, constraints: Constraints, views: np.ndarray | None) -> np.ndarray:
        """Must-link groups become weighted nodes; cannot-links are honoured inside (the merge step refuses
        them and a local repair splits what Leiden joined), so this replaces the base class's wrapper."""
        n = len(unit)
        self.neighbours_ = np.full((n, 0), -1, dtype=np.int64)
        groups = constraints.must_link_groups(n)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        sizes = np.bincount(groups).astype(np.float64)
        singletons = len(sizes) == n  # no must-links: groups is 0 .. n-1, a node per instance
        if singletons:  # group_means would copy N x D twice
            nodes = unit.astype(np.float32)
        else:
            nodes = group_means(unit, groups).astype(np.float32)  # (G, D), one node per must-link group
        cannot = np.unique(np.sort(groups[constraints.cannot_link], axis=1), axis=0).reshape(-1, 2)
        if len(nodes) == 1:
            return np.zeros(n, dtype=np.int64)
        similarity, neighbour = knn_graph(nodes, min(int(self.k), len(nodes) - 1), target_recall=GRAPH_RECALL,
                                         max_candidates=GRAPH_MAX_CANDIDATES)
        # The graph per instance (a node's neighbours, each named by its first instance), kept for
        # confidence(), which then needs no search of its own at scale.
        if singletons:
            self.neighbours_ = neighbour  # read only from here on
        else:
            first = np.unique(groups, return_index=True)[1]
            per_instance = neighbour[groups]
            self.neighbours_ = np.where(per_instance >= 0, first[np.maximum(per_instance, 0)], -1)
        floor = 1.0 - float(self.distance_threshold)
        labels = self._leiden(similarity, neighbour, sizes, floor)
        if self.merge:
            labels = merge_communities(nodes, sizes, labels, neighbour, floor, cannot)
        labels = _repair_locally(nodes, labels, cannot, neighbour)
        return first_appearance_labels(labels[groups])

    def _leiden(self, similarity: np.ndarray, neighbour: np.ndarray, sizes: np.ndarray, floor: float) -> np.ndarray:
        n = len(sizes)
        source = np.repeat(np.arange(n), neighbour.shape[1])
        target, weight = neighbour.ravel(), similarity.ravel().astype(np.float64)
        keep = (target >= 0) & (weight >= floor) & (source != target)
        low, high, first = _unique_pairs(source[keep], target[keep], n)  # i->j and j->i are one edge
        pairs = np.stack([low, high], axis=1)
        weight = weight[keep][first]
        if len(pairs) == 0:
            return np.arange(n, dtype=np.int64)
        graph = igraph.Graph(n=n, edges=pairs, edge_attrs={"weight": weight})
        # igraph's own Leiden (C core): the same CPM quality as ``leidenalg`` up to a constant and the
        # same AMI, 12x faster at 30k instances. Two iterations (the default of both): iterating to a
        # fixed point cost 3x the time at 10k instances for an AMI change below 1e-5. igraph draws from
        # a global random generator; a private seeded one during the call keeps results deterministic.
        igraph.set_random_number_generator(random.Random(int(self.seed)))
        try:
            partition = graph.community_leiden(objective_function="CPM", weights="weight", node_weights=sizes,
                                               resolution=float(self.resolution) * max(floor, 1e-6),
                                               n_iterations=2)
        finally:
            igraph.set_random_number_generator(random)  # igraph's default: the ``random`` module
        return np.asarray(partition.membership, dtype=np.int64)


def merge_communities(unit: np.ndarray, sizes: np.ndarray, labels: np.ndarray, neighbour: np.ndarray,
                      floor: float, cannot_link: np.ndarray | None = None) -> np.ndarray:
    """Average-linkage merge of communities that share a kNN edge, while mean similarity >= ``floor``.

    ``unit (G, D)`` node vectors with weights ``sizes (G,)`` (a node may stand for several must-linked
    instances); ``labels (G,)`` community per node; ``neighbour (G, k)`` kNN rows (-1 = none). Mean
    similarity of communities A and B is ``S_A . S_B / (|A| |B|)`` with ``S`` the size-weighted sums:
    exactly what average linkage computes from all pairs. Communities with a cannot-linked pair
    (``(K, 2)`` node pairs) between them are never merged. Returns the new community per node.

    Merged in rounds, all in numpy: each round every community picks its most similar adjacent
    community at or above ``floor``, and mutual choices merge (the reciprocal-nearest-neighbour rule;
    for average linkage, which is reducible, it yields the merges the best-pair-first order makes).
    Only pairs with a side merged in the last round are scored again. A best-pair-first Python heap
    (git history) gave the same partition at 100k synthetic instances, but took 4 s there and 175 s
    at 300k (2 shared cores), re-scoring a large character's neighbours at each of its merges; the
    rounds took 3.4 s and 30 s.
    """
    _, labels = np.unique(labels, return_inverse=True)
    count = int(labels.max()) + 1
    sums = group_sums(unit, labels, count, weights=sizes)  # (count, D) size-weighted sums, in float64
    weight = np.bincount(labels, weights=sizes, minlength=count)
    source = np.repeat(labels, neighbour.shape[1])
    target = np.where(neighbour.ravel() >= 0, labels[np.maximum(neighbour.ravel(), 0)], -1)
    linked = (target >= 0) & (source != target)
    low, high, _ = _unique_pairs(source[linked], target[linked], count)
    banned = (labels[cannot_link] if cannot_link is not None and len(cannot_link) else np.empty((0, 2), np.int64))
    owner = np.arange(count)
    mean = _pair_means(sums, weight, low, high)
    while len(low):
        allowed = mean >= floor
        if len(banned):
            roots = owner[banned]
            banned_keys = np.minimum(roots[:, 0], roots[:, 1]) * count + np.maximum(roots[:, 0], roots[:, 1])
            allowed &= ~np.isin(low * count + high, banned_keys)
        if not allowed.any():
            break
        # Each community's best partner: highest mean, ties to the lower id (a deterministic order).
        a = np.concatenate([low[allowed], high[allowed]])
        b = np.concatenate([high[allowed], low[allowed]])
        m = np.concatenate([mean[allowed], mean[allowed]])
        order = np.lexsort((b, -m, a))
        first = np.ones(len(order), dtype=bool)
        first[1:] = a[order][1:] != a[order][:-1]
        best = np.full(count, -1, dtype=np.int64)
        best[a[order][first]] = b[order][first]
        pair_low, pair_high = low[allowed], high[allowed]
        mutual = (best[pair_low] == pair_high) & (best[pair_high] == pair_low)
        pair_low, pair_high = pair_low[mutual], pair_high[mutual]
        heavier = weight[pair_low] >= weight[pair_high]
        keep = np.where(heavier, pair_low, pair_high)
        gone = np.where(heavier, pair_high, pair_low)
        sums[keep] += sums[gone]  # each community is in at most one mutual pair: no repeated index
        weight[keep] += weight[gone]
        owner[gone] = keep
        owner = owner[owner]  # every entry points at a surviving community again
        # Re-point pairs at the surviving communities; score again only those that changed.
        changed = np.zeros(count, dtype=bool)
        changed[keep] = True
        low, high = owner[low], owner[high]
        moved = changed[low] | changed[high]
        live = low != high
        low, high, first_index = _unique_pairs(low[live], high[live], count)
        moved, mean = moved[live][first_index], mean[live][first_index]
        mean[moved] = _pair_means(sums, weight, low[moved], high[moved])
    return owner[labels]


def _unique_pairs(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct unordered pairs ``{a[i], b[i]}`` of ids below ``n`` as ``(low, high)``, ordered, and
    the first ``i`` of each."""
    key, first = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_index=True)
    return key // n, key % n, first


def _pair_means(sums: np.ndarray, weight: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Mean pairwise similarity of communities ``low[i]`` and ``high[i]`` from their sums."""
    mean = np.empty(len(low))
    for start in range(0, len(low), 4096):  # small blocks stay in cache: 20x faster than 1 << 18 at 100k
        a, b = low[start:start + 4096], high[start:start + 4096]
        mean[start:start + len(a)] = np.einsum("ij,ij->i", sums[a], sums[b]) / (weight[a] * weight[b])
    return mean


def _repair_locally(unit: np.ndarray, labels: np.ndarray, cannot_link: np.ndarray, neighbour: np.ndarray) -> np.ndarray:
    """:func:`repair_cannot_links` on the communities holding a violation and their kNN neighbours only."""
    if len(cannot_link) == 0:
        return labels
    violated = labels[cannot_link[:, 0]] == labels[cannot_link[:, 1]]
    if not violated.any():
        return labels
    bad = np.unique(labels[cannot_link[violated, 0]])
    near = neighbour[np.isin(labels, bad)].ravel()
    involved = np.union1d(bad, labels[near[near >= 0]])
    nodes = np.flatnonzero(np.isin(labels, involved))
    local, local_labels = np.unique(labels[nodes], return_inverse=True)
    position = np.full(len(labels), -1, dtype=np.int64)
    position[nodes] = np.arange(len(nodes))
    pairs = position[cannot_link]
    pairs = pairs[(pairs >= 0).all(axis=1)]
    repaired = repair_cannot_links(unit[nodes].astype(np.float64), local_labels.astype(np.int64), pairs)
    fresh = repaired >= len(local)  # singletons or communities the repair had to open
    out = labels.copy()
    out[nodes[~fresh]] = local[repaired[~fresh]]
    _, fresh_ids = np.unique(repaired[fresh], return_inverse=True)
    out[nodes[fresh]] = labels.max() + 1 + fresh_ids
    return out
