"""k-reciprocal re-ranking (Zhong, Zheng, Cao & Li, CVPR 2017) in memory bounded by a kNN graph.

The published implementation (and torchreid's and fast-reid's copies of it) holds several dense
N×N matrices of the query+gallery set: 100,000 instances need 40 GB per float32 matrix. Every quantity
the method uses is local, though: the k-reciprocal sets only look at each point's ``k1 + 1`` nearest
neighbours, the local query expansion at its ``k2`` nearest, and the Jaccard distance is non-zero only
between points whose encodings share a neighbour. So this module keeps

* a ``(N, k1 + 1)`` nearest-neighbour graph from faiss (exact inner-product search over unit vectors);
* the encodings ``V`` as a scipy sparse matrix (a few hundred non-zeros per row after expansion);
* per row, the largest squared distance to any point (Zhong normalises each row of the original
  distance by it), found with one more faiss pass over the negated vectors;

and computes a query's final distances to the gallery one block of queries at a time. With the graph
covering what the dense algorithm reads (always, since it only reads ranks ``<= k1``), the result is
the dense algorithm's: ``tests/identity/test_rerank.py`` holds a dense reference and compares to 1e-6.

Distances follow the paper's code: squared Euclidean distance between L2-normalised rows
(``2 - 2 cos``), each row divided by its maximum. The final distance is
``(1 - lambda) * jaccard + lambda * original`` (lower = closer).

Time is two exact faiss passes, O(N² D), plus O(N k1²) for the sets; memory is O(N (k1 + nnz)).
:data:`MAX_INSTANCES` caps N (see docs/SEARCH.md for the measured peak at 100,000).
Hand-written because no maintained library offers a sparse k-reciprocal re-ranking.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import scipy.sparse as sp

from comicid.errors import ConfigError

#: Largest query+gallery set accepted. At 100,000 instances the measured peak is under 2 GB (see
#: docs/BENCHMARKS.md, "re-ranking at scale"); the cap keeps the graph, the encodings and the
#: O(N²) faiss passes (minutes on one core at this size) within what a laptop can do.
MAX_INSTANCES = 250_000

#: Extra neighbours fetched from faiss (float32) before re-sorting by float64 distance, so float32
#: round-off cannot change which points are the ``k1 + 1`` nearest.
_MARGIN = 8

#: Queries per block of final distances: a (block, G) float64 matrix is alive at a time.
_QUERY_BLOCK = 64


class RerankError(ConfigError):
    """Re-ranking was asked for on input it cannot take (too many instances, bad parameters)."""


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    if int(k1) < 1:
        raise RerankError(f"k1 must be a positive integer, got {k1!r}")
    if not 1 <= int(k2) <= int(k1) + 1:
        raise RerankError(f"k2 must be between 1 and k1 + 1 ({int(k1) + 1}), got {k2!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise RerankError(f"lambda must be between 0 and 1, got {lambda_value!r}")


def _unit(features: np.ndarray) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise RerankError(f"re-ranking needs a (N, D) feature matrix, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1) | (norms[:, 0] == 0))
    if len(bad):
        raise RerankError(f"re-ranking needs finite, non-zero feature rows; row {int(bad[0])} is not "
                          f"({len(bad)} such rows; an all-zero embedding is a crop the model saw nothing in)")
    return array / norms


def squared_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(A, B)`` squared Euclidean distances between unit rows, ``2 - 2 a·b`` clipped at 0."""
    return np.maximum(2.0 - 2.0 * (a @ b.T), 0.0)


def _pair_squared_distance(unit: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Squared distance of each (row, column) pair, by the same formula as :func:`squared_distance`."""
    out = np.empty(len(rows))
    step = 1 << 14  # (step, D) float64 gathers: 32 MB at D = 256
    for start in range(0, len(rows), step):
        part = slice(start, start + step)
        out[part] = np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", unit[rows[part]], unit[columns[part]]), 0.0)
    return out


class KReciprocalReranker:
    """Fit on all query and gallery features at once, then ask for re-ranked distances.

    Args:
        k1: size of the k-reciprocal neighbourhoods (20 in the paper).
        k2: neighbours averaged in the local query expansion of the encodings (6).
        lambda_value: weight of the original distance in the final one (0.3).
        max_instances: refuse larger inputs with :class:`RerankError` (default :data:`MAX_INSTANCES`).

    After :meth:`fit`, ``neighbours_`` is the ``(N, k1 + 1)`` graph (self first unless duplicates),
    ``encoding_`` the sparse ``(N, N)`` expanded encodings (rows sum to 1), ``row_max_`` the ``(N,)``
    normalisers.
    """

    def __init__(self, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                 max_instances: int = MAX_INSTANCES) -> None:
        _check_parameters(k1, k2, lambda_value)
        self.k1, self.k2, self.lambda_value = int(k1), int(k2), float(lambda_value)
        self.max_instances = int(max_instances)

    def fit(self, features: np.ndarray) -> KReciprocalReranker:
        """Build the kNN graph and encodings of ``features`` ``(N, D)`` (re-normalised here)."""
        n = len(features)
        if n > self.max_instances:
            raise RerankError(f"re-ranking takes at most {self.max_instances:,} instances (query + gallery), got "
                              f"{n:,}: search without --rerank, or re-rank a subset (e.g. one book)")
        unit = _unit(features)
        self.unit_ = unit
        k = min(self.k1 + 1, n)
        self.neighbours_ = self._nearest(unit, k)
        self.row_max_ = self._farthest(unit)
        encoding = self._encodings(unit, self.neighbours_)
        if self.k2 > 1:
            k2 = min(self.k2, n)
            expand = sp.csr_matrix((np.full(n * k2, 1.0 / k2), self.neighbours_[:, :k2].ravel(),
                                    np.arange(0, n * k2 + 1, k2)), shape=(n, n))
            encoding = expand @ encoding
        self.encoding_ = sp.csr_matrix(encoding)
        self.encoding_columns_ = self.encoding_.tocsc()
        return self

    # -- neighbours -------------------------------------------------------------------------------

    def _nearest(self, unit: np.ndarray, k: int) -> np.ndarray:
        """``(N, k)`` neighbour rows by float64 distance (ties: lower index), self included."""
        n = len(unit)
        fetch = min(n, k + _MARGIN)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(np.ascontiguousarray(unit, dtype=np.float32))
        _, candidates = index.search(np.ascontiguousarray(unit, dtype=np.float32), fetch)  # (N, fetch)
        candidates = candidates.astype(np.int64)
        rows = np.repeat(np.arange(n), fetch)
        distance = _pair_squared_distance(unit, rows, candidates.ravel()).reshape(n, fetch)
        order = np.lexsort((candidates, distance), axis=1)[:, :k]
        return np.take_along_axis(candidates, order, axis=1)

    def _farthest(self, unit: np.ndarray) -> np.ndarray:
        """``(N,)`` largest squared distance from each row to any row (Zhong's per-row normaliser)."""
        n = len(unit)
        fetch = min(n, 4)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(np.ascontiguousarray(-unit, dtype=np.float32))  # nearest to -x = farthest from x
        _, candidates = index.search(np.ascontiguousarray(unit, dtype=np.float32), fetch)
        distance = _pair_squared_distance(unit, np.repeat(np.arange(n), fetch), candidates.ravel().astype(np.int64))
        row_max = distance.reshape(n, fetch).max(axis=1)
        return np.where(row_max > 0, row_max, 1.0)  # all points identical: nothing to normalise

    # -- encodings --------------------------------------------------------------------------------

    @staticmethod
    def _reciprocal(neighbours: np.ndarray, k: int) -> np.ndarray:
        """``(N, k)`` mask: ``neighbours[i, m]`` is among the first k of i and i among the first k of it."""
        first = neighbours[:, :k]
        mask = np.zeros(first.shape, dtype=bool)
        step = 8192
        for start in range(0, len(first), step):
            block = first[start:start + step]  # (b, k)
            back = first[block]  # (b, k, k): the first k of each neighbour
            mask[start:start + step] = (back == np.arange(start, start + len(block))[:, None, None]).any(axis=2)
        return mask

    def _encodings(self, unit: np.ndarray, neighbours: np.ndarray) -> sp.csr_matrix:
        """Sparse ``V``: Gaussian weights over each row's expanded k-reciprocal set, rows summing to 1."""
        n, k = neighbours.shape
        half = min(int(np.around(self.k1 / 2.0)) + 1, k)
        full_mask = self._reciprocal(neighbours, k)  # (N, k)
        half_mask = self._reciprocal(neighbours, half)  # (N, half)
        half_sets = np.where(half_mask, neighbours[:, :half], -1)  # (N, half), -1 = not in the set
        half_sizes = half_mask.sum(axis=1)
        members: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        step = 2048
        for start in range(0, n, step):
            rows = np.arange(start, min(n, start + step))
            own = np.where(full_mask[rows], neighbours[rows], -1)  # (b, k) the k-reciprocal set R(i, k1)
            candidate_sets = half_sets[np.maximum(own, 0)]  # (b, k, half) R(c, k1/2) of each candidate
            inside = (candidate_sets[..., None] == own[:, None, None, :]).any(axis=3) & (candidate_sets >= 0)
            accepted = (own >= 0) & (inside.sum(axis=2) > 2.0 / 3.0 * half_sizes[np.maximum(own, 0)])
            added = np.where(accepted[..., None], candidate_sets, -1).reshape(len(rows), -1)
            union = np.sort(np.concatenate([own, added], axis=1), axis=1)
            keep = union >= 0
            keep[:, 1:] &= union[:, 1:] != union[:, :-1]
            counts = keep.sum(axis=1)
            members.append(union[keep])
            owners.append(np.repeat(rows, counts))
        columns, rows = np.concatenate(members), np.concatenate(owners)
        weight = np.exp(-_pair_squared_distance(unit, rows, columns) / self.row_max_[rows])
        totals = np.bincount(rows, weights=weight, minlength=n)
        return sp.csr_matrix((weight / totals[rows], (rows, columns)), shape=(n, n))

    # -- distances --------------------------------------------------------------------------------

    def _jaccard(self, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """``(b, G)`` Jaccard distance between the expanded encodings, summing min() over shared columns."""
        shared = np.zeros((len(queries), self.unit_.shape[0]))
        rows_v, columns_v = self.encoding_, self.encoding_columns_
        for position, query in enumerate(queries):
            start, stop = rows_v.indptr[query], rows_v.indptr[query + 1]
            cols, values = rows_v.indices[start:stop], rows_v.data[start:stop]
            starts = columns_v.indptr[cols].astype(np.int64)
            lengths = columns_v.indptr[cols + 1] - starts
            picked = np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
            others = columns_v.indices[picked]
            overlap = np.minimum(np.repeat(values, lengths), columns_v.data[picked])
            shared[position] = np.bincount(others, weights=overlap, minlength=shared.shape[1])
        shared = shared[:, gallery]
        return 1.0 - shared / (2.0 - shared)

    def _block(self, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        original = squared_distance(self.unit_[queries], self.unit_[gallery]) / self.row_max_[queries][:, None]
        if self.lambda_value == 1.0:
            return original
        return (1.0 - self.lambda_value) * self._jaccard(queries, gallery) + self.lambda_value * original

    def _rows(self, rows: np.ndarray | None) -> np.ndarray:
        n = len(self.unit_)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64).ravel()
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise RerankError(f"row indices must lie in 0..{n - 1}")
        return rows

    def blocks(self, query_rows: np.ndarray, gallery_rows: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(query slice, (b, G) final distances)`` block by block; memory O(block · G)."""
        queries, gallery = self._rows(query_rows), self._rows(gallery_rows)
        for start in range(0, len(queries), _QUERY_BLOCK):
            part = slice(start, start + _QUERY_BLOCK)
            yield part, self._block(queries[part], gallery)

    def distances(self, query_rows: np.ndarray, gallery_rows: np.ndarray | None = None) -> np.ndarray:
        """Dense ``(Q, G)`` final distances (lower = closer); for evaluation-sized Q × G."""
        queries, gallery = self._rows(query_rows), self._rows(gallery_rows)
        out = np.empty((len(queries), len(gallery)))
        for part, block in self.blocks(queries, gallery):
            out[part] = block
        return out

    def top(self, query_rows: np.ndarray, k: int, gallery_rows: np.ndarray | None = None,
            exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` closest gallery rows per query after re-ranking: ``(distances, rows)``, each ``(Q, k)``.

        Ties go to the lower gallery row; with ``exclude_self`` a query never retrieves its own row.
        """
        queries, gallery = self._rows(query_rows), self._rows(gallery_rows)
        k = min(int(k), len(gallery) - (1 if exclude_self else 0))
        found_distance, found_rows = [], []
        for part, block in self.blocks(queries, gallery):
            if exclude_self:
                block = np.where(gallery[None, :] == queries[part][:, None], np.inf, block)
            order = np.lexsort((np.broadcast_to(gallery, block.shape), block), axis=1)[:, :k]
            found_distance.append(np.take_along_axis(block, order, axis=1))
            found_rows.append(gallery[order])
        if not found_rows:
            return np.zeros((0, max(k, 0))), np.zeros((0, max(k, 0)), dtype=np.int64)
        return np.concatenate(found_distance), np.concatenate(found_rows)


def average_query_expansion(features: np.ndarray, query_rows: np.ndarray, k: int,
                            gallery_rows: np.ndarray | None = None) -> np.ndarray:
    """Features with each query row replaced by the normalised mean of itself and its ``k`` nearest
    gallery rows (Chum et al. 2007's average query expansion); other rows unchanged. ``k = 0``: a copy.

    The query's own row is never one of its neighbours.
    """
    if int(k) < 0:
        raise RerankError(f"the query expansion size must be 0 or more, got {k!r}")
    unit = _unit(features)
    queries = np.asarray(query_rows, dtype=np.int64).ravel()
    gallery = np.arange(len(unit)) if gallery_rows is None else np.asarray(gallery_rows, dtype=np.int64).ravel()
    if k == 0 or not len(queries) or not len(gallery):
        return unit
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(np.ascontiguousarray(unit[gallery], dtype=np.float32))
    fetch = min(len(gallery), int(k) + 1)
    _, found = index.search(np.ascontiguousarray(unit[queries], dtype=np.float32), fetch)
    neighbours = gallery[found]  # (Q, fetch)
    expanded = unit.copy()
    for position, query in enumerate(queries):
        others = neighbours[position][neighbours[position] != query][:k]
        total = unit[query] + unit[others].sum(axis=0)
        expanded[query] = total / max(np.linalg.norm(total), 1e-12)
    return expanded
