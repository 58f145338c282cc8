"""comicid.search.index: exact and faiss indexes agree, including the tie rule and k > N."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.errors import ConfigError
from comicid.search.index import ExactIndex, FaissIndex, create_index


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_exact_index_ranks_by_cosine_and_breaks_ties_by_index() -> None:
    vectors = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]))
    scores, rows = ExactIndex(vectors).search(np.array([[1.0, 0.0]]), 3)
    assert rows.tolist() == [[0, 2, 3]]  # 0 and 2 tie: the lower index first
    np.testing.assert_allclose(scores, [[1.0, 1.0, 0.6]], atol=1e-6)


def test_exact_and_faiss_agree_and_k_is_capped() -> None:
    rng = np.random.default_rng(0)
    vectors, queries = unit(rng.normal(size=(50, 8))), unit(rng.normal(size=(7, 8)))
    exact, faiss = create_index(vectors, "exact"), create_index(vectors, "faiss")
    assert isinstance(exact, ExactIndex) and isinstance(faiss, FaissIndex) and len(exact) == len(faiss) == 50
    (s1, r1), (s2, r2) = exact.search(queries, 5), faiss.search(queries, 5)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert exact.search(queries, 80)[1].shape == (7, 50)
    assert exact.search(np.zeros((0, 8)), 3)[1].shape == (0, 3)


def test_exact_index_searches_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(20, 4)))
    whole = ExactIndex(vectors).search(vectors, 4)
    monkeypatch.setattr(ExactIndex, "BLOCK", 3)
    blocked = ExactIndex(vectors).search(vectors, 4)
    np.testing.assert_array_equal(whole[1], blocked[1])
    assert (blocked[1][:, 0] == np.arange(20)).all()  # each vector finds itself first


def test_bad_input_and_backend_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="unknown index backend"):
        create_index(np.eye(2), "annoy")
    with pytest.raises(ConfigError, match=r"\(N, D\) matrix"):
        ExactIndex(np.zeros(3))
