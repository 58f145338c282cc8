"""Cosine-similarity indexes over L2-normalised vectors.

Both indexes answer ``search(queries (Q, D), k) -> (scores (Q, k), indices (Q, k))`` with the same
ordering rule (descending similarity, ties by ascending index) so results do not depend on the
backend. The exact index is the default: a collection rarely holds more than a few hundred thousand
instances and a matrix product is exact and fast; faiss (``IndexFlatIP``) is used when asked for.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from comicid.errors import ConfigError

BACKENDS = ("auto", "exact", "faiss")


def _check(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ConfigError(f"an index needs a (N, D) matrix, got shape {vectors.shape}")
    return vectors


def _top_k(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape), -similarity),
                       axis=1)[:, :k]
    return np.take_along_axis(similarity, order, axis=1), order


class ExactIndex:
    """Brute-force cosine search with numpy, in blocks of queries to bound memory."""

    BLOCK = 1024

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = _check(vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries)
        k = min(k, len(self.vectors))
        scores, indices = [], []
        for start in range(0, len(queries), self.BLOCK):
            block_scores, block_indices = _top_k(queries[start:start + self.BLOCK] @ self.vectors.T, k)
            scores.append(block_scores)
            indices.append(block_indices)
        if not scores:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(scores), np.concatenate(indices)


class FaissIndex:
    """faiss inner-product index (exact, ``IndexFlatIP``), re-sorted with the shared tie rule."""

    def __init__(self, vectors: np.ndarray) -> None:
        import faiss

        self.vectors = _check(vectors)
        self._index = faiss.IndexFlatIP(self.vectors.shape[1])
        self._index.add(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check(queries)
        k = min(k, len(self.vectors))
        scores, indices = self._index.search(queries, k)
        order = np.lexsort((indices, -scores), axis=1)
        return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1).astype(np.int64)


def create_index(vectors: np.ndarray, backend: str = "exact") -> ExactIndex | FaissIndex:
    """``exact`` (numpy), ``faiss``, or ``auto`` (faiss when importable, else exact)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    has_faiss = importlib.util.find_spec("faiss") is not None
    if backend == "faiss" and not has_faiss:
        raise ConfigError("the faiss backend needs the faiss-cpu package (pip install faiss-cpu)")
    if backend == "faiss" or (backend == "auto" and has_faiss):
        return FaissIndex(vectors)
    return ExactIndex(vectors)
