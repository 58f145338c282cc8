"""Constrained average linkage: agrees with scikit-learn, honours constraints, threshold semantics."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from comicid.identity.agglomerative import AgglomerativeClusterer, constrained_linkage, cosine_distances
from comicid.identity.base import confidence
from comicid.identity.constraints import Constraints, IdentityInputError, check_embeddings


def blobs(n_identities: int = 4, per_identity: int = 6, spread: float = 0.1, dim: int = 16,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random centres; ``spread`` is the noise scale per coordinate."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_identities, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_identities), per_identity)
    points = centres[truth] + spread * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


@pytest.mark.parametrize("linkage", ["average", "complete"])
@pytest.mark.parametrize("threshold", [0.3, 0.7, 1.0])
def test_hand_written_linkage_equals_scikit_learn_without_constraints(linkage: str, threshold: float) -> None:
    unit = check_embeddings(np.random.default_rng(1).normal(size=(120, 8)))
    reference = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage=linkage,
                                        distance_threshold=threshold).fit_predict(unit)
    ours = constrained_linkage(cosine_distances(unit), threshold, linkage)
    assert len(set(reference)) > 1
    assert adjusted_rand_score(reference, ours) == 1.0


def test_cannot_linked_pairs_never_share_a_cluster_even_at_a_huge_threshold() -> None:
    rng = np.random.default_rng(2)
    unit, _ = blobs(seed=2)
    pairs = rng.integers(0, len(unit), size=(20, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    labels = AgglomerativeClusterer(distance_threshold=2.5).fit_predict(unit, Constraints(cannot_link=pairs))
    assert not (labels[pairs[:, 0]] == labels[pairs[:, 1]]).any()


def test_cannot_link_splits_a_blob_and_leaves_the_others_alone() -> None:
    unit, truth = blobs()
    labels = AgglomerativeClusterer(0.5).fit_predict(unit, Constraints(cannot_link=[[0, 1]]))
    assert labels[0] != labels[1]
    rest = truth >= 1
    assert adjusted_rand_score(truth[rest], labels[rest]) == 1.0


def test_must_links_join_distant_instances() -> None:
    unit, truth = blobs()
    labels = AgglomerativeClusterer(0.5).fit_predict(unit, Constraints(must_link=[[0, 23]]))
    assert labels[0] == labels[23]
    assert labels[0] != labels[1]  # the must-linked pair is far from both blobs at this threshold


def test_must_linked_blobs_merge_whole_when_average_allows() -> None:
    unit, truth = blobs(n_identities=2, spread=0.05)
    pairs = [[i, j] for i, j in zip(range(6), range(6, 12), strict=True)]
    labels = AgglomerativeClusterer(0.5).fit_predict(unit, Constraints(must_link=pairs))
    assert len(set(labels)) == 1


def test_higher_threshold_gives_fewer_clusters() -> None:
    unit = check_embeddings(np.random.default_rng(3).normal(size=(80, 6)))
    constraints = Constraints(cannot_link=[[0, 1], [2, 3]])
    counts = [len(set(AgglomerativeClusterer(t).fit_predict(unit, constraints))) for t in (0.2, 0.5, 0.8, 1.2)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_well_separated_blobs_are_recovered() -> None:
    unit, truth = blobs()
    assert adjusted_rand_score(truth, AgglomerativeClusterer(0.5).fit_predict(unit)) == 1.0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_inputs(n: int) -> None:
    unit = np.eye(3)[:n]
    labels = AgglomerativeClusterer(0.5).fit_predict(unit)
    assert labels.tolist() == list(range(n))
    assert AgglomerativeClusterer(1.5).fit_predict(unit).tolist() == [0] * n
    if n == 2:
        assert AgglomerativeClusterer(1.5).fit_predict(unit, Constraints(cannot_link=[[0, 1]])).tolist() == [0, 1]


def test_two_thousand_constrained_instances_run_in_seconds() -> None:
    rng = np.random.default_rng(4)
    unit = rng.normal(size=(2000, 32))
    pairs = rng.integers(0, 2000, size=(2000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    start = time.perf_counter()
    labels = AgglomerativeClusterer(1.1).fit_predict(unit, Constraints(cannot_link=pairs))
    assert time.perf_counter() - start < 15.0  # about 1 s alone; generous for a shared 2-core machine
    assert not (labels[pairs[:, 0]] == labels[pairs[:, 1]]).any()


@pytest.mark.parametrize("params, message", [
    ({"distance_threshold": 0.0}, "positive"),
    ({"distance_threshold": float("nan")}, "positive"),
    ({"linkage": "single"}, "linkage"),
])
def test_bad_hyper_parameters_raise(params: dict[str, object], message: str) -> None:
    with pytest.raises(IdentityInputError, match=message):
        AgglomerativeClusterer(**params).fit_predict(np.eye(3))  # validated in fit, as in scikit-learn


def test_constraint_index_out_of_range_raises() -> None:
    unit, _ = blobs()
    with pytest.raises(IdentityInputError, match="out of range for 24 instances"):
        AgglomerativeClusterer().fit_predict(unit, Constraints(cannot_link=[[0, 24]]))


def test_confidence_is_high_inside_a_blob_and_half_between_two() -> None:
    unit, truth = blobs(n_identities=2)
    middle = unit[0] + unit[6]
    points = np.vstack([unit, middle / np.linalg.norm(middle)])
    labels = np.append(truth, 0)
    scores = confidence(points, labels)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[:-1].min() > 0.8
    assert abs(scores[-1] - 0.5) < 0.15
    assert confidence(points, np.full(len(points), -1)).tolist() == [0.0] * len(points)
