"""HDBSCAN identity assignment, optionally after a UMAP projection.

Density clustering needs no distance threshold: a character is a region denser than its
surroundings, so recurring characters with very different spreads (a protagonist drawn in many
poses, a twice-seen extra) can both be found. The price: it may call points noise, and it has no
notion of constraints, so must-links are merged before and cannot-links repaired after.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import hdbscan

from comicid.identity.base import ConstrainedClusterer
from comicid.identity.constraints import IdentityInputError
from comicid.identity.registry import CLUSTERERS
from comicid.identity.limits import check_hdbscan_size

NOISE_MODES = ("singleton", "unknown")


@CLUSTERERS.register("hdbscan")
class HDBSCANClusterer(ConstrainedClusterer):
    """HDBSCAN (the ``hdbscan`` package) on L2-normalised embeddings, honouring constraints.

    The ``hdbscan`` package rather than ``sklearn.cluster.HDBSCAN``: scikit-learn 1.9.1 under NumPy
    2.4 crashes as soon as ``cluster_selection_epsilon`` has to climb the cluster tree (scikit-learn
    issue #33219), which made ``--threshold auto`` fail on real books.

    Distances are euclidean between unit vectors, ``sqrt(2 * cosine distance)``: monotone in cosine,
    and it keeps HDBSCAN's fast tree-based neighbour search.

    Args:
        min_cluster_size: smallest group called a character (2: a character seen twice counts).
        min_samples: neighbourhood size for core distances; 1 keeps small, tight clusters.
        umap_components: project to this many UMAP dimensions (cosine metric) first; ``None`` skips
            UMAP. UMAP costs ~11 s of JIT compilation on first use and needs more instances than
            ``umap_components + 2``; smaller inputs are clustered without it.
        cluster_selection_epsilon: clusters closer than this are merged, in the space HDBSCAN sees
            (euclidean between unit vectors, or UMAP space); this is the ``--threshold`` of the method.
        noise: ``"singleton"`` (default) gives every noise point its own cluster, so metrics count it
            as a one-instance identity; ``"unknown"`` keeps label -1.
        allow_single_cluster: let HDBSCAN return one cluster for all points (a one-character scope).
        seed: UMAP's random state, so projections are reproducible.
    """

    threshold_parameter: ClassVar[str] = "cluster_selection_epsilon"

    def __init__(self, min_cluster_size: int = 2, min_samples: int = 1, umap_components: int | None = None,
                 cluster_selection_epsilon: float = 0.0, noise: str = "singleton",
                 allow_single_cluster: bool = False, seed: int = 0) -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.umap_components = umap_components
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.noise = noise
        self.allow_single_cluster = allow_single_cluster
        self.seed = seed

    def _validate(self) -> None:
        if int(self.min_cluster_size) < 2:
            raise IdentityInputError(f"min_cluster_size must be at least 2, got {self.min_cluster_size!r}")
        if int(self.min_samples) < 1:
            raise IdentityInputError(f"min_samples must be at least 1, got {self.min_samples!r}")
        if self.umap_components is not None and int(self.umap_components) < 1:
            raise IdentityInputError(
                f"umap_components must be a positive integer or None, got {self.umap_components!r}")
        if not np.isfinite(self.cluster_selection_epsilon) or self.cluster_selection_epsilon < 0:
            raise IdentityInputError(
                f"cluster_selection_epsilon must be a non-negative number, got {self.cluster_selection_epsilon!r}")
        if self.noise not in NOISE_MODES:
            raise IdentityInputError(f"noise must be one of {', '.join(NOISE_MODES)}, got {self.noise!r}")

    def _cluster_points(self, unit: np.ndarray) -> np.ndarray:
        """HDBSCAN labels of the must-link groups' means; noise made singletons unless ``noise="unknown"``.
        Must-links and cannot-links are handled around this by :class:`ConstrainedClusterer`."""
        labels = self._density_labels(unit)
        return _noise_to_singletons(labels) if self.noise == "singleton" else labels

    def _density_labels(self, unit: np.ndarray) -> np.ndarray:
        if len(unit) < int(self.min_cluster_size):
            return np.full(len(unit), -1, dtype=np.int64)
        check_hdbscan_size(len(unit), projected=self.umap_components is not None)
        points = self._project(unit)
        model = hdbscan.HDBSCAN(min_cluster_size=int(self.min_cluster_size),
                                min_samples=min(int(self.min_samples), len(unit)),
                                cluster_selection_epsilon=float(self.cluster_selection_epsilon), metric="euclidean",
                                allow_single_cluster=bool(self.allow_single_cluster))
        return model.fit_predict(points.astype(np.float64)).astype(np.int64)

    def _project(self, unit: np.ndarray) -> np.ndarray:
        if self.umap_components is None or len(unit) < int(self.umap_components) + 3:
            return unit
        import umap  # imported here: numba compiles it on import, ~11 s, paid only by those who ask

        reducer = umap.UMAP(n_components=int(self.umap_components), metric="cosine", random_state=int(self.seed),
                            n_neighbors=min(15, len(unit) - 1), n_jobs=1)  # a seed forces one job anyway
        return np.asarray(reducer.fit_transform(unit), dtype=np.float64)


def _noise_to_singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    noise = np.flatnonzero(out < 0)
    out[noise] = out.max(initial=-1) + 1 + np.arange(len(noise))
    return out
