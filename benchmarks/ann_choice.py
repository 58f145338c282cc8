"""Exploration behind the index choice in docs/SCALE.md: faiss HNSW vs faiss IVF-Flat vs usearch.

Prints build time, recall@10 against exact search and single-query latency (one thread) at a few
search efforts, on the synthetic embeddings of ``benchmarks/scale.py``. Prints only (the table in
docs/SCALE.md was copied from its output); usearch is not a comicid dependency, so install it first
(``pip install usearch==2.26.6``) or its rows are skipped.

    nice -n 10 .venv/bin/python benchmarks/ann_choice.py 100000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import faiss
import numpy as np

from scale import synthetic_embeddings  # noqa: E402


def main(n: int = 100_000) -> None:
    vectors, labels = synthetic_embeddings(n)
    dim = vectors.shape[1]
    print(f"{n} vectors, {labels.max() + 1} identities, largest {np.bincount(labels).max()}")
    queries = vectors[np.random.default_rng(0).choice(n, 500, replace=False)]
    faiss.omp_set_num_threads(2)
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    truth = flat.search(queries, 10)[1]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))

    def latency(search: object) -> tuple[float, float]:
        faiss.omp_set_num_threads(1)
        times = []
        for query in queries[:300]:
            tick = time.perf_counter()
            search(query[None])  # type: ignore[operator]
            times.append(time.perf_counter() - tick)
        faiss.omp_set_num_threads(2)
        return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)

    for m in (16, 32):
        tick = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        hnsw.add(vectors)
        build = time.perf_counter() - tick
        for ef in (32, 64, 128):
            hnsw.hnsw.efSearch = ef
            p50, p95 = latency(lambda q: hnsw.search(q, 10))
            print(f"faiss HNSW M={m} efSearch {ef}: build {build:.1f} s, recall@10 {recall(hnsw.search(queries, 10)[1]):.3f}, "
                  f"p50/p95 {p50:.2f}/{p95:.2f} ms")
    nlist = int(4 * np.sqrt(n))
    tick = time.perf_counter()
    ivf = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    ivf.add(vectors)
    build = time.perf_counter() - tick
    for nprobe in (8, 16, 32):
        ivf.nprobe = nprobe
        p50, p95 = latency(lambda q: ivf.search(q, 10))
        print(f"faiss IVF{nlist} nprobe {nprobe}: build {build:.1f} s, recall@10 {recall(ivf.search(queries, 10)[1]):.3f}, "
              f"p50/p95 {p50:.2f}/{p95:.2f} ms")
    try:
        from usearch.index import Index
    except ImportError:
        print("usearch not installed: skipped", file=sys.stderr)
        return
    tick = time.perf_counter()
    index = Index(ndim=dim, metric="ip", dtype="f32", connectivity=16, expansion_add=40, expansion_search=64)
    index.add(np.arange(n), vectors, threads=2)
    build = time.perf_counter() - tick
    found = index.search(queries, 10, threads=2).keys
    times = []
    for query in queries[:300]:
        tick = time.perf_counter()
        index.search(query, 10, threads=1)
        times.append(time.perf_counter() - tick)
    print(f"usearch M=16 expansion 64: build {build:.1f} s, recall@10 {recall(found):.3f}, "
          f"p50/p95 {np.percentile(times, 50) * 1e3:.2f}/{np.percentile(times, 95) * 1e3:.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
