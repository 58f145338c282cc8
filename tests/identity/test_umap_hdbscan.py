"""UMAP + HDBSCAN: registered, no threshold, constraints honoured; the UMAP run itself is slow (numba)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from comicid.identity import CLUSTERERS, create_clusterer
from comicid.identity.constraints import Constraints, IdentityInputError
from comicid.identity.umap_hdbscan import UmapHDBSCANClusterer


def blobs(n_identities: int = 3, per_identity: int = 12, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_identities), per_identity)
    points = rng.normal(size=(n_identities, dim))[truth] + 0.15 * rng.normal(size=(len(truth), dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def test_registered_without_a_threshold() -> None:
    assert CLUSTERERS["umap-hdbscan"] is UmapHDBSCANClusterer
    assert UmapHDBSCANClusterer.threshold_parameter is None
    with pytest.raises(IdentityInputError, match="n_neighbors"):
        create_clusterer("umap-hdbscan", n_neighbors=1).check_params()  # checked at fit, or asked


def test_small_scopes_skip_umap_and_keep_cannot_links() -> None:
    unit, truth = blobs(n_identities=2, per_identity=4)  # 8 < n_components + 3: no projection, no numba
    together = np.array([[0, 1]])  # two members of one blob said to be different characters
    labels = UmapHDBSCANClusterer(n_components=8).fit_predict(unit, Constraints(cannot_link=together))
    assert labels[0] != labels[1]
    assert adjusted_rand_score(truth[2:], labels[2:]) == 1.0


@pytest.mark.slow
def test_umap_then_hdbscan_finds_the_blobs_and_honours_cannot_links() -> None:
    unit, truth = blobs()
    clusterer = UmapHDBSCANClusterer()
    assert adjusted_rand_score(truth, clusterer.fit_predict(unit)) == 1.0
    labels = clusterer.fit_predict(unit, Constraints(cannot_link=np.array([[0, 1], [12, 13]])))
    assert labels[0] != labels[1] and labels[12] != labels[13]
