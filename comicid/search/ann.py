"""Approximate nearest-neighbour search at scale: faiss HNSW for search, faiss IVF for kNN graphs.

Chosen by measurement (100k synthetic 256-d embeddings with long-tailed identities, 2 contended cores,
docs/SCALE.md). For *search* at recall@10 0.95, HNSW (M=32) answered in 0.7 ms where IVF-Flat needed
nprobe 512 of 1265 lists and 13 ms: near-tied neighbours inside large identities make IVF scan a
large part of the data; usearch built slower than faiss HNSW at equal settings. For a *kNN graph* of
every instance, IVF builds in one k-means pass (18 s against 73 s for HNSW) and a low nprobe finds
neighbours of the right identity, which is all a clustering graph needs. Both keep the exact vectors
and take new ones without a rebuild. The search effort is set by :meth:`AnnIndex.tune` from a
measurement rather than a guess: the index keeps its own recall@10 against exact search.

Below :data:`EXACT_MAX` instances everything stays exact (a matrix product is exact and fast there),
so small collections and tests never depend on an approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
from tqdm.auto import tqdm

from comicid.errors import ConfigError

#: Up to this many vectors, kNN graphs are exact (faiss flat inner product, blocks of queries).
EXACT_MAX = 20_000
#: Queries per faiss call when searching a whole collection: bounds the result buffers.
QUERY_BLOCK = 16_384
#: Recall@10 against exact search that :meth:`AnnIndex.tune` aims for.
TARGET_RECALL = 0.95
KINDS = ("hnsw", "ivf")
#: HNSW links per node and build-time beam: the measured setting reaching recall@10 0.95 (docs/SCALE.md).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
#: Highest efSearch :meth:`AnnIndex.tune` tries.
HNSW_MAX_EF = 1024


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ConfigError(f"an index needs a (N, D) matrix, got shape {vectors.shape}")
    return vectors


def _sorted(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending score, ties by ascending index (the rule every index of comicid follows); -1 last."""
    key = np.where(indices < 0, np.inf, -scores)
    order = np.lexsort((np.where(indices < 0, np.iinfo(np.int64).max, indices), key), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1).astype(np.int64)


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4 sqrt(n) (faiss's rule of thumb), at least 39 points each."""
    return _nlist(n, 4)


def _nlist(n: int, per_root: int) -> int:
    """About ``per_root`` sqrt(n) inverted lists for ``n`` vectors, at least 39 points each."""
    return int(max(1, min(round(per_root * math.sqrt(max(n, 1))), n // 39)))


def graph_nlist(n: int) -> int:
    """Inverted lists of the IVF index :func:`knn_graph` builds: about 2 sqrt(n), half the search index's
    rule: k-means and assignment cost O(n x nlist), 4x less at 1M (lists of ~500), and a kNN graph
    scans a fixed budget of vectors per query whatever the list size."""
    return _nlist(n, 2)


@dataclass
class Recall:
    """Measured recall@k of the index against exact search on ``queries`` sampled indexed vectors."""

    k: int
    recall: float
    effort: int
    queries: int


class AnnIndex:
    """A faiss index on inner product (= cosine for the L2-normalised vectors comicid stores).

    Two kinds, each where it measured best: ``hnsw`` (``IndexHNSWFlat``, M=32) for searching a
    collection, where recall@10 0.95 costs under a millisecond a query; ``ivf`` (``IndexIVFFlat``) for
    kNN graphs over every instance, where a k-means pass builds it several times faster and a low
    ``nprobe`` is enough (see :data:`comicid.identity.graph.GRAPH_RECALL`). Row ``i`` of the index is
    the ``i``-th vector added; :meth:`search` returns those row numbers. The search effort (HNSW's
    ``efSearch``, IVF's ``nprobe``) is tuned by :meth:`tune` from a measurement.
    """

    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self.recall: Recall | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "hnsw", nlist: int | None = None, seed: int = 0,
              target_recall: float = TARGET_RECALL, max_effort: int | None = None, codec: str = "Flat") -> AnnIndex:
        """Build a ``kind`` index of ``vectors (N, D)`` and tune its search effort to ``target_recall``
        (at most ``max_effort``: a budget, see :meth:`tune`). ``codec`` is how an IVF index stores its
        vectors: ``Flat`` (exact; what a stored collection index uses) or ``SQ8`` (8 bits a dimension,
        approximate scores: only for a kNN graph, whose scores :func:`knn_graph` recomputes); an HNSW index
        refuses any codec but ``Flat``."""
        vectors = _as_matrix(vectors)
        n, dim = vectors.shape
        if kind not in KINDS:
            raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        if codec not in ("Flat", "SQ8"):
            raise ConfigError(f"unknown IVF codec {codec!r}; choose Flat or SQ8")
        if kind == "hnsw" and codec != "Flat":
            raise ConfigError(f"codec {codec!r} is for IVF indexes only; an HNSW index stores its vectors Flat")
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            nlist = default_nlist(n) if nlist is None else int(nlist)
            if not 1 <= nlist <= max(1, n):
                raise ConfigError(f"nlist must lie between 1 and the number of vectors ({n}), got {nlist}")
            # The factory makes the index own its quantiser (one built in Python would be freed early).
            index = faiss.index_factory(dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            sample = np.random.default_rng(seed).choice(n, size=min(n, 64 * nlist), replace=False)
            index.train(vectors[np.sort(sample)])
        index.add(vectors)
        ann = cls(index)
        ann.tune(vectors, target=target_recall, seed=seed, max_effort=max_effort)
        return ann

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "hnsw"

    @property
    def nlist(self) -> int:
        """Inverted lists of an IVF index (0 for HNSW)."""
        return int(self.index.nlist) if self.kind == "ivf" else 0

    @property
    def effort(self) -> int:
        """``nprobe`` (IVF) or ``efSearch`` (HNSW)."""
        return int(self.index.nprobe) if self.kind == "ivf" else int(self.index.hnsw.efSearch)

    @effort.setter
    def effort(self, value: int) -> None:
        if self.kind == "ivf":
            self.index.nprobe = int(value)
        else:
            self.index.hnsw.efSearch = int(value)

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors (rows ``len(self)`` onwards); an IVF index keeps its trained centroids."""
        vectors = _as_matrix(vectors)
        if vectors.shape[1] != self.index.d:
            raise ConfigError(f"the index holds {self.index.d}-d vectors, not {vectors.shape[1]}-d")
        self.index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (Q, k), rows (Q, k))``, best first; rows are -1 (score -inf) where fewer were found."""
        return _search_blocks(self.index, _as_matrix(queries), max(1, min(int(k), len(self))))

    def tune(self, vectors: np.ndarray, k: int = 10, target: float = TARGET_RECALL, queries: int = 256,
             seed: int = 0, max_effort: int | None = None) -> Recall:
        """Smallest power-of-two search effort reaching ``target`` recall@k on sampled indexed vectors.

        ``vectors`` are the indexed vectors (row for row). Each sampled vector is its own query; it is
        left out of both the exact and the approximate answer, so recall counts real neighbours only.
        ``max_effort`` caps the effort (a time budget): the recall then reached is what is stored.
        """
        vectors = _as_matrix(vectors)
        sample = np.sort(np.random.default_rng(seed).choice(len(vectors), size=min(queries, len(vectors)),
                                                            replace=False))
        truth = exact_search(vectors, vectors[sample], k + 1)[1]
        effort, ceiling = (1, self.nlist) if self.kind == "ivf" else (16, HNSW_MAX_EF)
        ceiling = max(effort, min(ceiling, int(max_effort))) if max_effort is not None else ceiling
        recall = 0.0
        while True:
            self.effort = effort
            found = self.search(vectors[sample], k + 1)[1]
            recall = _recall(truth, found, sample, k)
            if recall >= target or effort >= ceiling:
                break
            effort = min(2 * effort, ceiling)
        self.recall = Recall(k=k, recall=recall, effort=effort, queries=len(sample))
        return self.recall

    def serialise(self) -> np.ndarray:
        return faiss.serialize_index(self.index)

    @classmethod
    def deserialise(cls, data: np.ndarray, effort: int) -> AnnIndex:
        index = faiss.deserialize_index(data)
        if not isinstance(index, (faiss.IndexIVFFlat, faiss.IndexHNSWFlat)):
            raise ConfigError("the stored index is of an unknown kind; rebuild it with `comicid index --rebuild`")
        ann = cls(index)
        ann.effort = effort
        return ann

    def vectors(self) -> np.ndarray:
        """The stored vectors ``(N, D)`` in row order (both kinds keep them exactly)."""
        if self.kind == "ivf":
            self.index.make_direct_map()
        return self.index.reconstruct_n(0, len(self))


def _recall(truth: np.ndarray, found: np.ndarray, queries: np.ndarray, k: int) -> float:
    hits = 0
    for query, exact, approximate in zip(queries, truth, found, strict=True):
        wanted = [row for row in exact if row != query and row >= 0][:k]
        got = {row for row in approximate if row != query and row >= 0}
        hits += len(got.intersection(wanted)) / max(1, len(wanted))
    return hits / max(1, len(queries))


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` among ``vectors`` (faiss flat, blocks of queries)."""
    vectors, queries = _as_matrix(vectors), _as_matrix(queries)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return _search_blocks(flat, queries, max(1, min(int(k), len(vectors))))


def _search_blocks(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``queries`` in ``index`` by blocks of :data:`QUERY_BLOCK`, best first; rows the index
    did not fill are -1 with score -inf (a flat index asked for at most its size fills them all)."""
    scores, rows = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        block_scores, block_rows = index.search(queries[start:start + QUERY_BLOCK], k)
        block_scores = np.where(block_rows < 0, -np.inf, block_scores)
        block_scores, block_rows = _sorted(block_scores, block_rows)
        scores.append(block_scores)
        rows.append(block_rows)
    if not scores:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores), np.concatenate(rows)


def _exact_scores(vectors: np.ndarray, start: int, rows: np.ndarray) -> np.ndarray:
    """Exact inner products of ``vectors[start + i]`` with ``vectors[rows[i, j]]`` (-inf where -1), in
    small blocks: a (block, k, D) gather stays in cache."""
    scores = np.full(rows.shape, -np.inf, dtype=np.float32)
    for first in range(0, len(rows), 512):
        found = rows[first:first + 512]
        own = vectors[start + first:start + first + len(found)]
        block = np.einsum("nd,nkd->nk", own, vectors[np.maximum(found, 0)])
        scores[first:first + len(found)] = np.where(found >= 0, block, -np.inf)
    return scores


def knn_graph(vectors: np.ndarray, k: int, index: AnnIndex | None = None, progress: bool = False,
              target_recall: float = TARGET_RECALL, max_candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other vectors of every vector: ``(similarity (N, k), neighbour (N, k))``.

    Exact up to :data:`EXACT_MAX` vectors, else from ``index`` (built here when not given; it must hold
    ``vectors`` row for row; ``target_recall`` tunes the one built here). Missing neighbours (fewer than ``k`` found) are -1 with similarity -inf.
    Memory is O(N k): no N x N matrix is ever formed. The index built here has :func:`graph_nlist` lists;
    ``max_candidates`` caps the vectors scanned per query (``nprobe`` times the mean list size), which
    keeps the graph's cost linear in N where the recall target alone would scan more and more.
    """
    vectors = _as_matrix(vectors)
    n = len(vectors)
    k = int(k)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    similarity = np.full((n, k), -np.inf, dtype=np.float32)
    neighbour = np.full((n, k), -1, dtype=np.int64)
    if n < 2:
        return similarity, neighbour
    if n <= EXACT_MAX and index is None:
        lossy = False
        search = lambda block: exact_search(vectors, block, k + 1)  # noqa: E731
    else:
        if index is None:
            nlist = graph_nlist(n)
            budget = None if max_candidates is None else max(1, int(max_candidates) * nlist // n)
            # SQ8 scans 1.7x faster than Flat at the same recall (100k: 35 s against 60 s per million
            # queries at nprobe 8, both recall@10 0.826); the k found are then scored exactly below.
            index = AnnIndex.build(vectors, kind="ivf", nlist=nlist, target_recall=target_recall, max_effort=budget,
                                   codec="SQ8")
        if len(index) != n:
            raise ConfigError(f"the index holds {len(index)} vectors but the graph is over {n}")
        lossy = not isinstance(index.index, (faiss.IndexIVFFlat, faiss.IndexHNSWFlat))
        # A lossy index ranks by approximate scores: twice the candidates, scored exactly, keep the best.
        search = lambda block: index.search(block, (k + 1) * (2 if lossy else 1))  # noqa: E731
    for start in tqdm(range(0, n, QUERY_BLOCK), disable=not progress, desc="kNN graph", unit="block"):
        block_scores, block_rows = search(vectors[start:start + QUERY_BLOCK])
        if lossy:
            block_scores, block_rows = _sorted(_exact_scores(vectors, start, block_rows), block_rows)
            block_scores, block_rows = block_scores[:, :k + 1], block_rows[:, :k + 1]
        own = np.arange(start, start + len(block_rows))[:, None]
        keep = block_rows != own  # a vector is not its own neighbour
        # Move kept entries to the front of each row, in their (sorted) order, then cut to k.
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        rows = np.take_along_axis(block_rows, order, axis=1)
        scores = np.take_along_axis(block_scores, order, axis=1)
        dropped = ~np.take_along_axis(keep, order, axis=1)
        rows[dropped], scores[dropped] = -1, -np.inf
        width = rows.shape[1]
        neighbour[start:start + len(rows), :width] = rows
        similarity[start:start + len(rows), :width] = scores
    return similarity, neighbour
