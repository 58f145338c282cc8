"""UMAP + HDBSCAN per scope (``--method umap-hdbscan``): the clustering of Manga-MMTL's Table 5.

Manga-MMTL clusters each album's characters by projecting features with UMAP and running HDBSCAN, as
Yanagisawa et al. (IWAIT 2019, 2020) did for manga faces: density clustering needs no number of
characters and no distance threshold. This class fixes that recipe's parameters (see
docs/CLUSTERING.md for where each value comes from) on top of :class:`HDBSCANClusterer`, which brings
the constraint handling: must-linked instances are merged before, cannot-linked pairs split after.
It has no ``--threshold`` (``threshold_parameter = None``): the recipe is used as it is.

UMAP compiles with numba on first use (about 11 s per process); unit tests of it are marked slow.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from comicid.identity.constraints import IdentityInputError
from comicid.identity.density import HDBSCANClusterer


class UmapHDBSCANClusterer(HDBSCANClusterer):
    """UMAP (cosine, ``n_neighbors``, ``min_dist``, ``n_components``) then HDBSCAN, honouring constraints.

    Args:
        n_components: UMAP output dimensions; scopes with fewer than ``n_components + 3`` instances
            are clustered without the projection (UMAP's spectral start needs more points than that).
        n_neighbors: UMAP's neighbourhood (capped at the scope size minus one).
        min_dist: 0.0, UMAP's setting for clustering (points of one group may pack tightly).
        min_cluster_size, min_samples, noise, seed: as for :class:`HDBSCANClusterer`.
    """

    threshold_parameter: ClassVar[str | None] = None  # type: ignore[assignment]

    def __init__(self, n_components: int = 8, n_neighbors: int = 15, min_dist: float = 0.0,
                 min_cluster_size: int = 2, min_samples: int = 1, noise: str = "singleton", seed: int = 0) -> None:
        super().__init__(min_cluster_size=min_cluster_size, min_samples=min_samples, umap_components=n_components,
                         noise=noise, seed=seed)
        if int(n_neighbors) < 2:
            raise IdentityInputError(f"n_neighbors must be at least 2, got {n_neighbors!r}")
        if not 0.0 <= float(min_dist) <= 1.0:
            raise IdentityInputError(f"min_dist must be in [0, 1], got {min_dist!r}")
        self.n_components = int(n_components)
        self.n_neighbors = int(n_neighbors)
        self.min_dist = float(min_dist)

    def _project(self, unit: np.ndarray) -> np.ndarray:
        if len(unit) < self.n_components + 3:
            return unit
        import umap  # here, not at the top: numba compiles it on import (~11 s), paid only by its users

        reducer = umap.UMAP(n_components=self.n_components, n_neighbors=min(self.n_neighbors, len(unit) - 1),
                            min_dist=self.min_dist, metric="cosine", random_state=self.seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(unit), dtype=np.float64)
