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
from comicid.identity.registry import CLUSTERERS


@CLUSTERERS.register("umap-hdbscan")
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
    #: The recipe's fixed HDBSCAN settings (read by :class:`HDBSCANClusterer`; not hyper-parameters here).
    cluster_selection_epsilon = 0.0
    allow_single_cluster = False

    def __init__(self, n_components: int = 8, n_neighbors: int = 15, min_dist: float = 0.0,
                 min_cluster_size: int = 2, min_samples: int = 1, noise: str = "singleton", seed: int = 0) -> None:
        # Stored unchanged (scikit-learn's rule, so clone and set_params work); checked in fit.
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.noise = noise
        self.seed = seed

    @property
    def umap_components(self) -> int:  # type: ignore[override]
        """The parent's projection size is this recipe's ``n_components`` (always projected)."""
        return self.n_components

    def _validate(self) -> None:
        if int(self.n_components) < 1:
            raise IdentityInputError(f"n_components must be a positive integer, got {self.n_components!r}")
        if int(self.n_neighbors) < 2:
            raise IdentityInputError(f"n_neighbors must be at least 2, got {self.n_neighbors!r}")
        if not 0.0 <= float(self.min_dist) <= 1.0:
            raise IdentityInputError(f"min_dist must be in [0, 1], got {self.min_dist!r}")
        super()._validate()

    def _project(self, unit: np.ndarray) -> np.ndarray:
        if len(unit) < int(self.n_components) + 3:
            return unit
        import umap  # here, not at the top: numba compiles it on import (~11 s), paid only by its users

        reducer = umap.UMAP(n_components=int(self.n_components), n_neighbors=min(int(self.n_neighbors), len(unit) - 1),
                            min_dist=float(self.min_dist), metric="cosine", random_state=int(self.seed), n_jobs=1)
        return np.asarray(reducer.fit_transform(unit), dtype=np.float64)
