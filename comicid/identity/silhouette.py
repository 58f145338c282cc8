"""A per-scope threshold without labels: the coarsest average-linkage cut whose silhouette is near the best.

Why: the distance at which two drawings stop being one character is not the same in every book. On
the development sets the cast-size-optimal threshold of the shipped model ranges from 0.2 (DiceBear:
one generator, faces that differ in details) to 0.85 (composed pages: faces and full figures of one
character fused), so one constant per model puts few sets near the right cast size
(docs/CLUSTERING.md, "Without labels"). The book itself shows how tightly its characters group: the
silhouette (Rousseeuw 1987: how much closer an instance is to its own cluster than to the next) of
each cut of the average-linkage tree.

The cut with the *highest* silhouette over-splits characters drawn in several poses or styles into
tight sub-groups (their silhouette is high too); the rule therefore takes the **coarsest** cut whose
silhouette is at least ``(1 - tolerance)`` times the best, so a character stays whole unless splitting
it is clearly better. ``tolerance`` is a property of the embedding, fitted per model on labelled data
it did not train on (:mod:`comicid.workflows.label_free`) and stored with it.

Cost: one average-linkage pass cut at every grid value, and scikit-learn's ``silhouette_score`` on
the precomputed N x N cosine distances per cut, the same quadratic memory as agglomerative clustering
itself (whose size limit applies, :func:`comicid.identity.limits.check_agglomerative_size`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import silhouette_score

from comicid.identity.base import cosine_distances, group_means
from comicid.identity.constraints import Constraints, IdentityInputError

#: Cuts tried: cosine distances 0.05, 0.075, ..., 1.0 (beyond 1.0 members are on average dissimilar).
SILHOUETTE_GRID = np.round(np.arange(0.05, 1.0001, 0.025), 3)
#: Fewer instances than this: no silhouette to read (a cut needs 2 clusters and one with 2 members).
MIN_INSTANCES = 3


@dataclass(frozen=True)
class SilhouetteCut:
    """The chosen cut of one scope and the curve it was read from."""

    threshold: float | None  # None: no cut has a positive silhouette (use the fallback threshold)
    grid: np.ndarray  # (T,) thresholds tried
    silhouettes: np.ndarray  # (T,) NaN where the cut has 1 or N clusters
    clusters: np.ndarray  # (T,) clusters at each cut


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` as a float in [0, 1), or :class:`IdentityInputError`."""
    value = float(tolerance)
    if not 0.0 <= value < 1.0:
        raise IdentityInputError(f"silhouette_tolerance must be in [0, 1), got {tolerance!r}")
    return value


def linkage_cuts(distance: np.ndarray, thresholds: np.ndarray, method: str = "average") -> np.ndarray:
    """Cluster labels ``(T, N)`` of the ``method``-linkage tree of ``distance (N, N)`` cut at each threshold.

    scipy builds the tree once (``fcluster`` with ``criterion="distance"``: merges at height <= t),
    which is what makes trying every grid value affordable.
    """
    tree = linkage(squareform(distance, checks=False), method=method)
    return np.stack([fcluster(tree, t=float(t), criterion="distance") for t in thresholds])


def silhouette_cut(unit: np.ndarray, tolerance: float, grid: np.ndarray = SILHOUETTE_GRID,
                   method: str = "average", constraints: Constraints | None = None) -> SilhouetteCut:
    """The coarsest cut of ``unit (N, D)`` (L2-normalised) whose silhouette is >= (1 - tolerance) x the best.

    Must-linked instances count as one point (their normalised mean) while cutting, as they are
    clustered; cannot-links are left to the clusterer, which honours them at the chosen threshold.
    """
    tolerance = check_tolerance(tolerance)
    grid = np.asarray(grid, dtype=np.float64)
    n = len(unit)
    silhouettes = np.full(len(grid), np.nan)
    clusters = np.ones(len(grid), dtype=np.int64)
    if constraints is not None and len(constraints.must_link):
        unit = group_means(unit, constraints.must_link_groups(n))  # (G, D), L2-normalised
        n = len(unit)
    if n < MIN_INSTANCES:
        return SilhouetteCut(None, grid, silhouettes, clusters * n)
    distance = cosine_distances(np.asarray(unit, dtype=np.float64))
    cuts = linkage_cuts(distance, grid, method)
    for position, labels in enumerate(cuts):
        clusters[position] = count = len(np.unique(labels))
        if 2 <= count <= n - 1:
            silhouettes[position] = silhouette_score(distance, labels, metric="precomputed")
    if np.isnan(silhouettes).all() or np.nanmax(silhouettes) <= 0:
        return SilhouetteCut(None, grid, silhouettes, clusters)
    near_best = np.flatnonzero(silhouettes >= (1.0 - tolerance) * np.nanmax(silhouettes))
    return SilhouetteCut(float(grid[near_best.max()]), grid, silhouettes, clusters)
