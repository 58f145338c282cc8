"""HDBSCAN clusterer: blobs, noise handling, constraint repair; UMAP only in the slow suite."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from comicid.identity.constraints import Constraints, IdentityInputError
from comicid.identity.base import repair_cannot_links
from comicid.identity.density import HDBSCANClusterer


def blobs(n_identities: int = 4, per_identity: int = 8, spread: float = 0.1, dim: int = 16,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_identities, dim))
    truth = np.repeat(np.arange(n_identities), per_identity)
    points = centres[truth] / np.linalg.norm(centres[truth], axis=1, keepdims=True)
    points = points + spread * rng.normal(size=points.shape) / np.sqrt(dim)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def with_outlier(unit: np.ndarray) -> np.ndarray:
    far = -unit.mean(axis=0)
    return np.vstack([unit, far / np.linalg.norm(far)])


def test_well_separated_blobs_are_found() -> None:
    unit, truth = blobs()
    assert adjusted_rand_score(truth, HDBSCANClusterer().fit_predict(unit)) == 1.0


def test_noise_is_a_singleton_by_default_and_minus_one_when_asked() -> None:
    unit, truth = blobs()
    points = with_outlier(unit)
    singleton = HDBSCANClusterer().fit_predict(points)
    assert singleton[-1] >= 0 and (singleton[:-1] != singleton[-1]).all()
    unknown = HDBSCANClusterer(noise="unknown").fit_predict(points)
    assert unknown[-1] == -1 and (unknown[:-1] >= 0).all()


def test_cannot_linked_pair_inside_a_blob_is_split() -> None:
    unit, truth = blobs()
    labels = HDBSCANClusterer().fit_predict(unit, Constraints(cannot_link=[[0, 1], [8, 9], [8, 10]]))
    assert labels[0] != labels[1] and labels[8] != labels[9] and labels[8] != labels[10]
    rest = truth >= 2
    assert adjusted_rand_score(truth[rest], labels[rest]) == 1.0


def test_repair_moves_the_weaker_member_to_a_fitting_cluster() -> None:
    unit, truth = blobs(n_identities=2)
    wrong = truth.copy()
    wrong[0] = 1  # instance 0 of blob 0 was put in blob 1, next to instance 8 it is cannot-linked to
    repaired = repair_cannot_links(unit, wrong, np.array([[0, 8]]))
    assert repaired.tolist() == truth.tolist()


def test_repair_makes_a_singleton_when_no_cluster_fits() -> None:
    unit, _ = blobs(n_identities=2)
    labels = np.zeros(len(unit), dtype=np.int64)  # everything in one cluster, one other cluster absent
    repaired = repair_cannot_links(unit, labels, np.array([[0, 1]]))
    assert repaired[0] != repaired[1]
    assert len(set(repaired.tolist())) == 2


def test_must_linked_instances_share_a_cluster() -> None:
    unit, truth = blobs()
    labels = HDBSCANClusterer().fit_predict(unit, Constraints(must_link=[[0, 31]]))
    assert labels[0] == labels[31]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(n: int) -> None:
    labels = HDBSCANClusterer().fit_predict(np.eye(3)[:n])
    assert len(labels) == n and len(set(labels.tolist())) == n  # orthogonal points are all apart


@pytest.mark.parametrize("params, message", [
    ({"min_cluster_size": 1}, "min_cluster_size"),
    ({"noise": "drop"}, "noise"),
    ({"cluster_selection_epsilon": -1.0}, "epsilon"),
    ({"umap_components": 0}, "umap_components"),
])
def test_bad_hyper_parameters_raise(params: dict[str, object], message: str) -> None:
    with pytest.raises(IdentityInputError, match=message):
        HDBSCANClusterer(**params).fit_predict(np.eye(3))  # validated in fit, as in scikit-learn


@pytest.mark.slow
def test_umap_projection_keeps_blobs_apart() -> None:
    unit, truth = blobs(n_identities=3, per_identity=15, dim=32)
    labels = HDBSCANClusterer(min_cluster_size=5, umap_components=4).fit_predict(unit)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_a_large_epsilon_merges_instead_of_crashing() -> None:
    # scikit-learn 1.9.1 under NumPy 2.4 crashed here (issue #33219); the hdbscan package does not.
    unit, truth = blobs(n_identities=4, per_identity=8, seed=0)
    fine = HDBSCANClusterer(cluster_selection_epsilon=0.0).fit_predict(unit)
    coarse = HDBSCANClusterer(cluster_selection_epsilon=3.0, allow_single_cluster=True).fit_predict(unit)
    assert len(set(coarse)) < len(set(fine))
