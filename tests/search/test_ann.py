"""The ANN index: recall against exact search, incremental adds, the kNN graph, the stored index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.errors import ConfigError
from comicid.search import ann
from comicid.search.ann import AnnIndex, exact_search, knn_graph


def _clustered(n: int, dim: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((centres, dim))
    vectors = centre[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tuned_index_reaches_its_recall_target_and_reports_it(kind: str) -> None:
    vectors = _clustered(4000)
    index = AnnIndex.build(vectors, kind=kind, target_recall=0.9)
    assert index.kind == kind
    assert index.recall is not None and index.recall.recall >= 0.9 and index.recall.effort == index.effort
    # The reported recall is what a fresh measurement finds.
    truth = exact_search(vectors, vectors[:200], 11)[1]
    found = index.search(vectors[:200], 11)[1]
    recall = np.mean([len(set(t[1:]) & set(f[1:])) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.8


def test_full_probe_search_equals_exact_search_with_the_shared_tie_rule() -> None:
    vectors = _clustered(800)
    index = AnnIndex.build(vectors, kind="ivf", nlist=8)
    index.effort = index.nlist  # every list: exact
    scores, rows = index.search(vectors[:50], 10)
    exact_scores, exact_rows = exact_search(vectors, vectors[:50], 10)
    np.testing.assert_array_equal(rows, exact_rows)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_added_vectors_are_found_under_their_new_rows(kind: str) -> None:
    vectors = _clustered(1000)
    index = AnnIndex.build(vectors[:900], kind=kind, nlist=8 if kind == "ivf" else None)
    index.add(vectors[900:])
    index.effort = index.nlist if kind == "ivf" else 256
    _, rows = index.search(vectors[950:960], 1)
    np.testing.assert_array_equal(rows[:, 0], np.arange(950, 960))
    with pytest.raises(ConfigError, match="16-d"):
        index.add(np.zeros((2, 16), np.float32))


def test_a_codec_is_refused_where_it_would_be_ignored() -> None:
    vectors = _clustered(200)
    with pytest.raises(ConfigError, match="codec 'SQ8' is for IVF indexes only"):
        AnnIndex.build(vectors, kind="hnsw", codec="SQ8")
    with pytest.raises(ConfigError, match="unknown IVF codec 'PQ4'"):
        AnnIndex.build(vectors, kind="ivf", codec="PQ4")
    assert AnnIndex.build(vectors, kind="hnsw", codec="Flat").kind == "hnsw"


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_serialised_index_answers_the_same(kind: str) -> None:
    vectors = _clustered(1000)
    index = AnnIndex.build(vectors, kind=kind)
    again = AnnIndex.deserialise(index.serialise(), index.effort)
    assert again.kind == kind and again.effort == index.effort
    np.testing.assert_array_equal(index.search(vectors[:20], 5)[1], again.search(vectors[:20], 5)[1])
    np.testing.assert_allclose(again.vectors(), vectors, atol=1e-7)


@pytest.mark.parametrize("force_index", [False, True])
def test_knn_graph_excludes_self_and_matches_exact_neighbours(monkeypatch: pytest.MonkeyPatch,
                                                              force_index: bool) -> None:
    vectors = _clustered(600)
    if force_index:  # the large-N path on small data: an index probing every list is exact
        monkeypatch.setattr(ann, "EXACT_MAX", 10)
        monkeypatch.setattr(ann.AnnIndex, "tune", lambda self, *a, **k: setattr(self, "effort", self.nlist))
    similarity, neighbour = knn_graph(vectors, 5)
    assert similarity.shape == neighbour.shape == (600, 5)
    assert not (neighbour == np.arange(600)[:, None]).any()
    brute = vectors @ vectors.T
    np.fill_diagonal(brute, -np.inf)
    np.testing.assert_allclose(similarity, -np.sort(-brute, axis=1)[:, :5], rtol=1e-5, atol=1e-5)
    assert (np.diff(similarity, axis=1) <= 1e-6).all()


def test_knn_graph_pads_when_fewer_neighbours_exist() -> None:
    similarity, neighbour = knn_graph(_clustered(3), 5)
    assert (neighbour[:, 2:] == -1).all() and np.isneginf(similarity[:, 2:]).all()
    assert (neighbour[:, :2] >= 0).all()
