"""k-reciprocal re-ranking: the sparse, graph-bounded version equals a dense reference of Zhong et al."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.errors import ComicidError
from comicid.identity.rerank import KReciprocalReranker, RerankError, average_query_expansion


def dense_reference(features: np.ndarray, query_num: int, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """Zhong et al.'s published algorithm, line by line with dense N×N matrices, in float64.

    ``features`` holds the queries first, then the gallery; returns the (Q, G) final distances.
    Distances are squared Euclidean between unit rows (``2 - 2 cos``), as the sparse version uses.
    """
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    all_num = len(unit)
    original = np.maximum(2.0 - 2.0 * unit @ unit.T, 0.0)
    original = np.transpose(original / np.max(original, axis=0))
    weights = np.zeros_like(original)
    initial_rank = np.argsort(original, axis=1, kind="stable")
    half = int(np.around(k1 / 2.0)) + 1
    for i in range(all_num):
        forward = initial_rank[i, :k1 + 1]
        backward = initial_rank[forward, :k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for candidate in reciprocal:
            c_forward = initial_rank[candidate, :half]
            c_backward = initial_rank[c_forward, :half]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, reciprocal)) > 2.0 / 3.0 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        weights[i, expansion] = weight / weight.sum()
    if k2 != 1:
        expanded = np.zeros_like(weights)
        for i in range(all_num):
            expanded[i] = weights[initial_rank[i, :k2]].mean(axis=0)
        weights = expanded
    jaccard = np.zeros((query_num, all_num))
    for i in range(query_num):
        shared = np.minimum(weights[i][None, :], weights).sum(axis=1)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + original[:query_num] * lambda_value
    return final[:, query_num:]


def _clustered(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim))
    return (centre[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize(("k1", "k2", "lambda_value", "seed"), [(20, 6, 0.3, 0), (5, 1, 0.5, 1), (7, 3, 0.0, 2)])
def test_sparse_reranking_equals_the_dense_reference(k1: int, k2: int, lambda_value: float, seed: int) -> None:
    features = _clustered(90, 12, 6, seed)
    queries = 15
    expected = dense_reference(features.astype(np.float64), queries, k1, k2, lambda_value)
    reranker = KReciprocalReranker(k1=k1, k2=k2, lambda_value=lambda_value).fit(features)
    got = reranker.distances(np.arange(queries), np.arange(queries, len(features)))
    assert got.shape == (queries, len(features) - queries)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert np.abs(got - expected).max() < 1e-9  # not just within tolerance: the same computation


def test_reranking_changes_the_order_and_top_agrees_with_distances() -> None:
    features = _clustered(120, 8, 5, 3)
    reranker = KReciprocalReranker().fit(features)
    full = reranker.distances(np.arange(10))
    distance, rows = reranker.top(np.arange(10), k=5)
    assert rows.shape == (10, 5) and (rows != np.arange(10)[:, None]).all()  # never the query itself
    masked = np.where(np.arange(120)[None, :] == np.arange(10)[:, None], np.inf, full)
    np.testing.assert_array_equal(rows, np.argsort(masked, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(distance, np.take_along_axis(full, rows, axis=1))
    cosine_order = np.argsort(-(features[:10] @ features.T), axis=1, kind="stable")
    assert (np.argsort(full, axis=1, kind="stable") != cosine_order).any()


def test_size_cap_and_bad_parameters_are_clear_errors() -> None:
    features = _clustered(30, 4, 3, 4)
    with pytest.raises(RerankError, match="at most 20 instances"):
        KReciprocalReranker(max_instances=20).fit(features)
    assert issubclass(RerankError, ComicidError)
    with pytest.raises(RerankError, match="k2"):
        KReciprocalReranker(k1=3, k2=9)
    with pytest.raises(RerankError, match="lambda"):
        KReciprocalReranker(lambda_value=1.5)
    with pytest.raises(RerankError, match="non-zero"):
        KReciprocalReranker().fit(np.zeros((5, 3)))


def test_average_query_expansion_moves_only_queries_towards_their_neighbours() -> None:
    features = _clustered(40, 6, 2, 5)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expanded = average_query_expansion(features, np.array([0, 1]), k=3)
    np.testing.assert_allclose(expanded[2:], unit[2:], atol=1e-7)
    nearest = np.argsort(-(unit[0] @ unit.T), kind="stable")[1:4]
    mean = unit[0] + unit[nearest].sum(axis=0)
    np.testing.assert_allclose(expanded[0], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(expanded, axis=1), 1.0)
