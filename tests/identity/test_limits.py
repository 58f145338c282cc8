"""Every quadratic path refuses or falls back above its documented size, with a message that says what to use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.identity import AgglomerativeClusterer, HDBSCANClusterer, base, limits
from comicid.identity.base import confidence
from comicid.identity.graph import GraphClusterer
from comicid.search import ann
from comicid.workflows.cluster import assign_identities
from comicid.identity.limits import AGGLOMERATIVE_MAX, HDBSCAN_RAW_MAX, ScaleError, choose_method
from comicid.store.embeddings import InstanceEmbeddings


def _unit(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_agglomerative_refuses_above_its_size_naming_the_graph_method() -> None:
    with pytest.raises(ScaleError) as caught:
        AgglomerativeClusterer().fit_predict(_unit(AGGLOMERATIVE_MAX + 1))
    message = str(caught.value)
    assert "15,001 instances" in message and "refused above 15,000" in message and "--method graph" in message
    assert "\n" not in message


def test_hdbscan_on_raw_features_refuses_above_its_size_unless_projected() -> None:
    with pytest.raises(ScaleError, match=r"refused above 50,000; set umap_components .* or use --method graph"):
        HDBSCANClusterer().fit_predict(_unit(HDBSCAN_RAW_MAX + 1, dim=2))


def test_auto_picks_agglomerative_for_small_scopes_and_graph_beyond(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_method([10, limits.AUTO_GRAPH_MIN]) == "agglomerative"
    assert choose_method([10, limits.AUTO_GRAPH_MIN + 1]) == "graph"
    vectors = _unit(40, dim=8).astype(np.float32)
    table = pd.DataFrame({"instance_key": [f"k{i}" for i in range(40)], "book": ["a"] * 30 + ["b"] * 10,
                          "instance": "", "page": "", "panel": "", "sequence": "", "identity": "", "split": "",
                          "role": "", "source": "", "text": "", "parts": "character"})
    embedded = InstanceEmbeddings(table, vectors, "m")
    small = assign_identities(embedded, method="auto", threshold=0.5, progress=False)
    assert small.info["method"] == "agglomerative" and small.info["requested_method"] == "auto"
    monkeypatch.setattr(limits, "AUTO_GRAPH_MIN", 20)  # book "a" (30 instances) is now a large scope
    large = assign_identities(embedded, method="auto", threshold=0.5, progress=False)
    assert large.info["method"] == "graph"
    assert large.table["identity_id"].str.len().gt(0).all()


def test_confidence_falls_back_to_a_search_over_cluster_means(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = _unit(3000, dim=16, seed=1)
    labels = np.arange(3000) % 300
    exact = confidence(unit, labels)
    monkeypatch.setattr(base, "CONFIDENCE_EXACT_MAX", 1000)  # force the approximate path
    approximate = confidence(unit, labels)
    assert np.mean(np.abs(approximate - exact) < 1e-6) > 0.9  # the best other cluster is almost always found
    assert (approximate >= exact - 1e-6).all()  # a missed cluster can only make "other" smaller


def test_confidence_beyond_exact_uses_the_clusters_next_to_its_own_in_the_knn_graph(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Clustered data, clustered by the graph method: its kNN graph (neighbours_) gives the candidates.
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, 16))
    truth = rng.integers(0, 60, 3000)
    unit = centres[truth] + 0.6 * rng.normal(size=(3000, 16))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    clusterer = GraphClusterer(distance_threshold=0.5, k=10)
    labels = clusterer.fit_predict(unit)
    assert clusterer.neighbours_.shape == (3000, 10)
    exact = confidence(unit, labels, neighbours=clusterer.neighbours_)  # small: still exact
    np.testing.assert_allclose(exact, confidence(unit, labels), atol=1e-12)
    monkeypatch.setattr(base, "CONFIDENCE_EXACT_MAX", 1000)  # force the approximate path
    monkeypatch.setattr(base, "ADJACENT_BLOCK", 50)  # several blocks
    approximate = confidence(unit, labels, neighbours=clusterer.neighbours_)
    assert np.mean(np.abs(approximate - exact) < 1e-5) > 0.95  # the best other cluster is next to its own
    assert (approximate >= exact - 1e-5).all()  # a missed cluster can only make "other" smaller (float32)
    # Beyond their exact sizes: nearest means from an IVF index, and no exact search for lonely clusters.
    monkeypatch.setattr(ann, "EXACT_MAX", 20)
    monkeypatch.setattr(base, "LONELY_EXACT_MAX", 0)
    cheaper = confidence(unit, labels, neighbours=clusterer.neighbours_)
    assert np.mean(np.abs(cheaper - exact) < 1e-5) > 0.8 and (cheaper >= exact - 1e-5).all()


def test_confidence_in_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = _unit(500, dim=8, seed=2)
    labels = np.arange(500) % 37
    whole = confidence(unit, labels)
    monkeypatch.setattr(base, "CONFIDENCE_BLOCK", 100)
    np.testing.assert_allclose(confidence(unit, labels), whole, atol=1e-12)


def test_confidence_beyond_exact_reads_a_missing_neighbour_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # Cluster 0 (rows 0-5) around e0, row 5 off-centre towards e1; singletons near e0 + 0.3 e1 (nearer
    # cluster 0's centre, and the last row, than the two are to each other); the last row a singleton at
    # e1, the best other cluster of row 5, but no kNN edge and no nearest-means link leads there from
    # cluster 0. Row 5's neighbours are its own cluster and -1 (none).
    rng = np.random.default_rng(4)
    e0, e1 = np.eye(8)[0], np.eye(8)[1]
    members = e0 + 0.05 * rng.normal(size=(6, 8))
    members[5] = e0 + 2.0 * e1
    near = e0 + 0.3 * e1 + 0.05 * rng.normal(size=(base.CLUSTER_CANDIDATES + 3, 8))  # more than it searches
    unit = np.vstack([members, near, e1])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    labels = np.concatenate([np.zeros(6), np.arange(1, len(near) + 2)]).astype(np.int64)
    neighbours = np.full((len(unit), 3), -1, dtype=np.int64)
    neighbours[:6, :2] = [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]]
    monkeypatch.setattr(base, "CONFIDENCE_EXACT_MAX", 10)  # force the approximate path
    missing = confidence(unit, labels, neighbours=neighbours)
    self_filled = np.where(neighbours >= 0, neighbours, np.arange(len(unit))[:, None])  # "itself" = no other
    np.testing.assert_allclose(missing, confidence(unit, labels, neighbours=self_filled), atol=1e-9)
    assert missing[5] > confidence(unit, labels)[5]  # the last row, not reached, is missed as "other"
