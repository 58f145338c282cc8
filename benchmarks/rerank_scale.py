"""k-reciprocal re-ranking at scale: time and peak memory for a large synthetic gallery.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/rerank_scale.py \
        [--gallery 100000] [--queries 1000] [--dim 256] [--top 100]

Features are synthetic clustered unit vectors (identities of 5-20 instances around random centres),
so the k-reciprocal sets are realistic rather than the near-empty sets of pure noise. Peak memory is
the process's maximum resident set size (``resource.getrusage``), measured after the features are
made, so it counts the feature matrix too. The dense published implementation would need
(N × N) float32 matrices: 4 N² bytes each, shown for comparison. Writes the ``rerank-scale``
section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from common import markdown_table, write_section  # noqa: E402

from comicid.identity.rerank import KReciprocalReranker  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def clustered_features(n: int, dim: int, seed: int) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors in identities of 5-20 members (spread 0.35 around each centre)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 21, size=n // 5 + 1)
    identity = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centre = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    features = centre[identity]
    features += (0.35 / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    n = args.gallery + args.queries
    features = clustered_features(n, args.dim, seed=0)
    before = peak_rss_mb()
    started = time.perf_counter()
    reranker = KReciprocalReranker().fit(features)
    fitted = time.perf_counter()
    queries = np.arange(args.queries)
    gallery = np.arange(args.queries, n)
    distance, rows = reranker.top(queries, args.top, gallery)
    finished = time.perf_counter()
    peak = peak_rss_mb()
    nnz = reranker.encoding_.nnz
    dense_gb = 4.0 * n * n / 1e9
    rows_table = [[f"{args.gallery:,}", args.queries, args.dim, f"{fitted - started:.0f}", f"{finished - fitted:.1f}",
                   f"{before:.0f}", f"{peak:.0f}", f"{nnz / n:.0f}", f"{dense_gb:.0f}"]]
    table = markdown_table(["gallery", "queries", "dim", "fit s", f"top-{args.top} s", "RSS before MiB",
                            "peak RSS MiB", "encoding nnz/row", "one dense N×N float32, GB"], rows_table)
    print(table)
    command = ("nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/rerank_scale.py "
               f"--gallery {args.gallery} --queries {args.queries} --dim {args.dim} --top {args.top}")
    body = (f"## Re-ranking at scale (k-reciprocal, k1 20, k2 6, lambda 0.3)\n\n"
            f"`{command}` on {platform.machine()}, one thread, machine shared with other jobs (timings contended).\n"
            "Synthetic clustered unit vectors (identities of 5-20 members); queries and gallery are re-ranked "
            "together, as in Zhong et al. `fit` is the two exact faiss passes (nearest neighbours, farthest point) "
            "plus the sparse encodings; the top list computes each query block's final distance to the whole "
            "gallery. Peak RSS includes the feature matrix and the Python runtime; \"RSS before\" is measured "
            "after imports (torch, loaded by `comicid.identity`) and the features, so the difference is what "
            "re-ranking itself added. The published dense "
            "implementation keeps several N×N matrices (last column: one of them).\n\n" + table)
    if not args.no_write:
        write_section("rerank-scale", body)
    assert distance.shape == (args.queries, min(args.top, args.gallery))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
