"""Agglomerative identity assignment with a cosine distance threshold.

Average linkage merges the two clusters whose members are, on average, closest, and stops when the
closest pair is ``distance_threshold`` apart or more: the threshold, not a cluster count, decides how
many identities there are, which is what a collection of unknown cast size needs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from comicid.identity.base import ConstrainedClusterer, cosine_distances
from comicid.identity.constraints import Constraints, IdentityInputError, first_appearance_labels
from comicid.identity.registry import CLUSTERERS
from comicid.identity.limits import check_agglomerative_size
from comicid.identity.silhouette import check_tolerance, silhouette_cut

LINKAGES = ("average", "complete")


@CLUSTERERS.register("agglomerative")
class AgglomerativeClusterer(ConstrainedClusterer):
    """Average- (or complete-) linkage clustering on cosine distance, honouring constraints.

    Args:
        distance_threshold: clusters closer than this cosine distance (0 = same direction, 2 =
            opposite) are merged; higher means fewer, larger clusters.
        linkage: ``"average"`` (default) or ``"complete"``. Single linkage is not offered: it chains
            look-alike characters together, and it cannot carry a cannot-link through a merge the way
            the two offered linkages do.
        silhouette_tolerance: ``None`` (default) cuts every scope at ``distance_threshold``. A number
            in [0, 1) lets each scope choose its own threshold, the coarsest cut whose silhouette is
            within that fraction of the best (:mod:`comicid.identity.silhouette`); ``distance_threshold``
            is then the fallback for a scope where no cut has a positive silhouette. This is how a
            model's label-free rule adapts to books drawn closer together or further apart.

    Attributes:
        threshold_: the distance threshold the last ``fit`` cut at.
    """

    threshold_parameter: ClassVar[str] = "distance_threshold"

    def __init__(self, distance_threshold: float = 0.5, linkage: str = "average",
                 silhouette_tolerance: float | None = None) -> None:
        self.distance_threshold = distance_threshold
        self.linkage = linkage
        self.silhouette_tolerance = silhouette_tolerance

    def _validate(self) -> None:
        if self.linkage not in LINKAGES:
            raise IdentityInputError(f"linkage must be one of {', '.join(LINKAGES)}, got {self.linkage!r}")
        if not np.isfinite(self.distance_threshold) or self.distance_threshold <= 0:
            raise IdentityInputError(f"distance_threshold must be a positive number, got {self.distance_threshold!r}")
        if self.silhouette_tolerance is not None:
            check_tolerance(self.silhouette_tolerance)

    def _fit_labels(self, unit: np.ndarray, constraints: Constraints, views: np.ndarray | None) -> np.ndarray:
        """Constraints honoured inside the linkage (a cannot-link holds through every merge), which is
        better than repairing afterwards, so the shared must-link/repair wrapper is not used here."""
        n = len(unit)
        self.threshold_ = float(self.distance_threshold)
        if n < 2:
            return np.zeros(n, dtype=np.int64)
        check_agglomerative_size(n)
        if self.silhouette_tolerance is not None:
            cut = silhouette_cut(unit, self.silhouette_tolerance, method=self.linkage, constraints=constraints)
            if cut.threshold is not None:
                self.threshold_ = cut.threshold
        unconstrained = len(constraints.cannot_link) == 0 and len(constraints.must_link) == 0
        if unconstrained:
            model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage=self.linkage,
                                            distance_threshold=self.threshold_)
            return first_appearance_labels(model.fit_predict(unit))
        groups = constraints.must_link_groups(n)
        distance = _group_distances(cosine_distances(unit), groups, self.linkage)
        forbid_pairs(distance, groups[constraints.cannot_link])
        group_labels = constrained_linkage(distance, self.threshold_, self.linkage)
        return first_appearance_labels(group_labels[groups])


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
