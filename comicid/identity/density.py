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

from comicid.identity.agglomerative import confidence
from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    check_embeddings,
    first_appearance_labels,
)
from comicid.identity.limits import check_hdbscan_size

NOISE_MODES = ("singleton", "unknown")


class HDBSCANClusterer:
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
        if int(min_cluster_size) < 2:
            raise IdentityInputError(f"min_cluster_size must be at least 2, got {min_cluster_size!r}")
        if int(min_samples) < 1:
            raise IdentityInputError(f"min_samples must be at least 1, got {min_samples!r}")
        if umap_components is not None and int(umap_components) < 1:
            raise IdentityInputError(f"umap_components must be a positive integer or None, got {umap_components!r}")
        if not np.isfinite(cluster_selection_epsilon) or cluster_selection_epsilon < 0:
            raise IdentityInputError(
                f"cluster_selection_epsilon must be a non-negative number, got {cluster_selection_epsilon!r}")
        if noise not in NOISE_MODES:
            raise IdentityInputError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        self.min_cluster_size = int(min_cluster_size)
        self.min_samples = int(min_samples)
        self.umap_components = None if umap_components is None else int(umap_components)
        self.cluster_selection_epsilon = float(cluster_selection_epsilon)
        self.noise = noise
        self.allow_single_cluster = bool(allow_single_cluster)
        self.seed = int(seed)

    def fit_predict(self, embeddings: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
        """Cluster ``(N, D)`` embeddings; return int64 labels ``(N,)`` numbered by first appearance.

        Must-linked instances are replaced by their normalised mean before HDBSCAN runs; clusters that
        contain a cannot-linked pair are then split by :func:`repair_cannot_links`.
        """
        unit = check_embeddings(embeddings)  # (N, D), L2-normalised
        n = len(unit)
        constraints = constraints if constraints is not None else Constraints()
        groups = constraints.must_link_groups(n)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        merged = _group_means(unit, groups)  # (G, D), L2-normalised
        labels = self._density_labels(merged)
        if self.noise == "singleton":
            labels = _noise_to_singletons(labels)
        labels = repair_cannot_links(merged, labels, groups[constraints.cannot_link])
        return first_appearance_labels(labels[groups])

    def _density_labels(self, unit: np.ndarray) -> np.ndarray:
        if len(unit) < self.min_cluster_size:
            return np.full(len(unit), -1, dtype=np.int64)
        check_hdbscan_size(len(unit), projected=self.umap_components is not None)
        points = self._project(unit)
        model = hdbscan.HDBSCAN(min_cluster_size=self.min_cluster_size,
                                min_samples=min(self.min_samples, len(unit)),
                                cluster_selection_epsilon=float(self.cluster_selection_epsilon), metric="euclidean",
                                allow_single_cluster=self.allow_single_cluster)
        return model.fit_predict(points.astype(np.float64)).astype(np.int64)

    def _project(self, unit: np.ndarray) -> np.ndarray:
        if self.umap_components is None or len(unit) < self.umap_components + 3:
            return unit
        import umap  # imported here: numba compiles it on import, ~11 s, paid only by those who ask

        reducer = umap.UMAP(n_components=self.umap_components, metric="cosine", random_state=self.seed,
                            n_neighbors=min(15, len(unit) - 1), n_jobs=1)  # a seed forces one job anyway
        return np.asarray(reducer.fit_transform(unit), dtype=np.float64)


def _group_means(unit: np.ndarray, groups: np.ndarray) -> np.ndarray:
    sums = np.zeros((int(groups.max()) + 1, unit.shape[1]))
    np.add.at(sums, groups, unit)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    # Opposite vectors must-linked together cancel out; any unit vector then represents them equally badly.
    return np.where(norms > 1e-12, sums / np.maximum(norms, 1e-12), unit[np.unique(groups, return_index=True)[1]])


def _noise_to_singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    noise = np.flatnonzero(out < 0)
    out[noise] = out.max(initial=-1) + 1 + np.arange(len(noise))
    return out


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
