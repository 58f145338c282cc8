"""Benchmark: the ANN index and the graph clusterer from 10k to 1M instances of synthetic embeddings.

Embeddings are drawn with a comics-like identity-size distribution (a truncated power law: a few main
characters with thousands of instances, many extras seen once or twice), in look-alike families, with
a per-identity spread. For each size N, in its own process (so peak memory is that size's alone):

* **clustering** (what ``comicid cluster`` does with ``--method graph``): fit of
  :class:`comicid.identity.graph.GraphClusterer` over the whole set (one scope: the hardest case), then
  the per-instance confidence the CLI adds (:func:`comicid.identity.base.confidence` with the graph);
  wall time of each and of both, peak memory of the process over both (data included), pairwise F,
  B-cubed F and AMI against the generating labels, and how far the confidence is from the exact one on
  2,000 sampled instances (the approximate path runs beyond 2 x 10^8 instance-cluster pairs);
* **index**: then, build time of the faiss HNSW index (:class:`comicid.search.ann.AnnIndex`), its
  memory, its measured recall@10 against exact search, single-query latency p50/p95 on one thread.

The threshold is chosen the way ``--threshold auto`` chooses it: calibrated on a separate *dev* draw
(another seed, 3,000 instances), never on the rows scored. Results are kept in
``benchmarks/results/scale.json`` (so a 1M run made later merges with the smaller ones) and written to
the ``scale`` section of docs/BENCHMARKS.md with a plot, docs/scale.png.

    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 10000 100000
    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 1000000      # needs ~12 GB free

Timings on a shared 2-core machine are contended; the section says when and under what load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from common import ROOT, markdown_table, write_section  # noqa: E402

SECTION = "scale"
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
PLOT = ROOT / "docs" / "scale.png"
DIM = 256
DEV_SIZE = 3_000


def synthetic_embeddings(n: int, dim: int = DIM, seed: int = 0, exponent: float = 2.0,
                         family_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n, dim) float32 L2-normalised, labels (n,))`` with long-tailed identity sizes.

    Sizes follow P(s) ~ s^-exponent on 1..max(20, n/200) (at 1M: ~60 % of identities seen once, the
    largest a few thousand times). Identities come in families of ``family_size`` look-alikes (centre
    cosine about 0.5 within a family) and each has its own spread (instance-to-instance cosine about
    0.4-0.7), so thresholds matter and neighbours can be wrong.
    """
    rng = np.random.default_rng(seed)
    largest = max(20, n // 200)
    support = np.arange(1, largest + 1)
    probability = support.astype(np.float64) ** -exponent
    probability /= probability.sum()
    sizes: list[int] = []
    total = 0
    while total < n:
        draw = rng.choice(support, size=max(16, (n - total) // 4), p=probability)
        fits = np.cumsum(draw) <= n - total
        if not fits.any():
            draw, fits = np.array([n - total]), np.array([True])
        sizes.extend(draw[fits].tolist())
        total += int(draw[fits].sum())
    count = len(sizes)
    family = rng.standard_normal((count // family_size + 1, dim)).astype(np.float32)
    family /= np.linalg.norm(family, axis=1, keepdims=True)
    offset = rng.standard_normal((count, dim)).astype(np.float32)
    offset /= np.linalg.norm(offset, axis=1, keepdims=True)
    centre = family[np.arange(count) // family_size] + offset
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    spread = rng.uniform(0.7, 1.2, count).astype(np.float32)
    labels = rng.permutation(np.repeat(np.arange(count), sizes))
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65_536):
        own = labels[start:start + 65_536]
        block = rng.standard_normal((len(own), dim)).astype(np.float32) * (spread[own] / np.sqrt(dim))[:, None]
        block += centre[own]
        vectors[start:start + 65_536] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, labels


def peak_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def calibrate(seed: int = 1) -> float:
    """``--threshold auto`` of the graph method on a dev draw (never the scored rows)."""
    import pandas as pd

    from comicid.identity.calibration import auto_threshold

    vectors, labels = synthetic_embeddings(DEV_SIZE, seed=seed)
    table = pd.DataFrame({"identity": labels.astype(str), "split": "dev", "book": "dev"})
    return auto_threshold(vectors, table, method="graph", scope="collection",
                          grid=np.round(np.arange(0.3, 0.901, 0.05), 2)).value


#: Instances whose confidence is compared with the exact one.
AGREEMENT_SAMPLE = 2_000


def exact_confidence(vectors: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The exact confidence of ``rows`` (every cluster scored), as a reference for the library's, which
    is only exact for all N at once below its size limit: written here because sampled rows are the
    point (own = mean similarity to the other members, other = best mean similarity to another cluster)."""
    from comicid.identity.base import group_sums

    count = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=count).astype(np.float64)
    means = group_sums(vectors, labels, count) / sizes[:, None]
    similarity = vectors[rows].astype(np.float64) @ means.T  # (rows, clusters)
    own_size = sizes[labels[rows]]
    own_mean = similarity[np.arange(len(rows)), labels[rows]]
    own = np.where(own_size > 1, (own_mean * own_size - 1.0) / np.maximum(own_size - 1, 1), 1.0)
    similarity[np.arange(len(rows)), labels[rows]] = -np.inf
    other = similarity.max(axis=1) if count > 1 else np.full(len(rows), -1.0)
    return np.clip((1.0 + own - other) / 2.0, 0.0, 1.0)


def measure(n: int, threshold: float, seed: int, k: int) -> dict[str, float]:
    """Everything for one size, in this process: the clustering path first (so its peak memory is its
    own and the data's), then the index."""
    import faiss

    from comicid.evaluation.clustering import clustering_metrics
    from comicid.identity.base import confidence
    from comicid.identity.graph import GraphClusterer
    from comicid.search.ann import AnnIndex

    faiss.omp_set_num_threads(2)
    vectors, labels = synthetic_embeddings(n, seed=seed)
    result: dict[str, float] = {"n": n, "identities": int(labels.max() + 1), "largest": int(np.bincount(labels).max()),
                                "threshold": threshold, "k": k, "data_gb": peak_gb()}
    started = time.perf_counter()
    clusterer = GraphClusterer(distance_threshold=threshold, k=k)
    predicted = clusterer.fit_predict(vectors)
    result["cluster_s"] = time.perf_counter() - started
    result["cluster_peak_gb"] = peak_gb()
    started = time.perf_counter()
    scores = confidence(vectors, predicted, neighbours=clusterer.neighbours_)  # as identity assignment calls it
    result["confidence_s"] = time.perf_counter() - started
    result["full_s"] = result["cluster_s"] + result["confidence_s"]
    result["full_peak_gb"] = peak_gb()
    del clusterer
    sample = np.sort(np.random.default_rng(seed + 11).choice(n, min(n, AGREEMENT_SAMPLE), replace=False))
    difference = np.abs(scores[sample] - exact_confidence(vectors, predicted, sample))
    result["confidence_identical"] = float(np.mean(difference < 1e-5))
    result["confidence_mean_diff"] = float(difference.mean())
    metrics = clustering_metrics(labels, predicted)
    result.update({key: float(metrics[key]) for key in ("pairwise_f", "bcubed_f", "ami")})
    result["pred_clusters"] = int(metrics["pred_clusters"])
    print(json.dumps(result), file=sys.stderr, flush=True)  # the clustering half survives an index timeout
    started = time.perf_counter()
    index = AnnIndex.build(vectors)
    result["index_build_s"] = time.perf_counter() - started
    result["index_gb"] = (vectors.nbytes + 8 * n + 4 * DIM * index.nlist) / 1e9  # vectors, ids, centroids
    result["recall_at_10"] = index.recall.recall if index.recall else float("nan")
    result["effort"], result["kind"] = index.effort, index.kind
    faiss.omp_set_num_threads(1)
    queries = vectors[np.random.default_rng(seed + 7).choice(n, 500, replace=False)]
    latency = []
    for query in queries:
        tick = time.perf_counter()
        index.search(query[None], 10)
        latency.append(time.perf_counter() - tick)
    result["search_p50_ms"] = float(np.percentile(latency, 50) * 1e3)
    result["search_p95_ms"] = float(np.percentile(latency, 95) * 1e3)
    result["peak_gb"] = peak_gb()
    return result


def _child(n: int, threshold: float, seed: int, k: int) -> dict[str, float]:
    """Run :func:`measure` in a fresh process so each size's peak memory is its own."""
    command = [sys.executable, __file__, "--child", str(n), "--threshold", str(threshold), "--seed", str(seed),
               "--k", str(k)]
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def _plot(rows: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda row: row["n"])
    n = [row["n"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(n, [row["full_s"] for row in rows], "o-", label="comicid cluster: fit + confidence")
    left.loglog(n, [row["cluster_s"] for row in rows], "s--", label="graph clustering fit")
    left.loglog(n, [row["confidence_s"] for row in rows], "^--", label="confidence")
    left.loglog(n, [row["index_build_s"] for row in rows], "d-", label="HNSW index build")
    left.loglog(n, [row["n"] * rows[-1]["full_s"] / rows[-1]["n"] for row in rows], "k:", label="linear")
    left.set_xlabel("instances")
    left.set_ylabel("seconds (2 shared cores)")
    left.legend(fontsize=8)
    right.loglog(n, [row["full_peak_gb"] for row in rows], "o-", label="peak memory, fit + confidence (GB)")
    right.loglog(n, [row["search_p95_ms"] for row in rows], "s-", label="search p95 (ms)")
    right.set_xlabel("instances")
    right.set_ylabel("GB (memory), ms (search p95)")
    right.legend(fontsize=8)
    figure.suptitle("comicid at scale: synthetic long-tailed identities, 256-d")
    figure.tight_layout()
    figure.savefig(PLOT, dpi=100)


def _section(rows: list[dict[str, float]], command: str) -> str:
    rows = sorted(rows, key=lambda row: row["n"])
    clustering = markdown_table(
        ["N", "identities (largest)", "clusters", "fit s", "confidence s", "fit + confidence s", "peak GB",
         "confidence = exact / mean abs diff", "pairwise F", "B-cubed F", "AMI"],
        [[f"{row['n']:,}", f"{row['identities']:,} ({row['largest']:,})", f"{row['pred_clusters']:,}",
          f"{row['cluster_s']:.1f}", f"{row['confidence_s']:.1f}", f"**{row['full_s']:.1f}**",
          f"**{row['full_peak_gb']:.2f}**", f"{row['confidence_identical']:.3f} / {row['confidence_mean_diff']:.1e}",
          row["pairwise_f"], row["bcubed_f"], row["ami"]] for row in rows])
    index = markdown_table(
        ["N", "index build s", "index GB", "recall@10", "search p50 / p95 ms", "process peak GB"],
        [[f"{row['n']:,}", f"{row['index_build_s']:.1f}", f"{row['index_gb']:.2f}",
          f"{row['recall_at_10']:.3f} ({row['kind']} {row['effort']})",
          f"{row['search_p50_ms']:.2f} / {row['search_p95_ms']:.2f}", f"{row['peak_gb']:.2f}"] for row in rows])
    when = sorted({row.get("when", "") for row in rows})
    return (f"## Scale: graph clustering and the ANN index (`benchmarks/scale.py`)\n\n"
            f"Command: `{command}`. Synthetic 256-d embeddings with long-tailed identity sizes (see the script); "
            f"graph method (k = {rows[0]['k']}) over one scope of all N instances, threshold "
            f"{rows[0]['threshold']:.2f} calibrated on a separate dev draw of {DEV_SIZE:,}. Times are wall seconds "
            f"on 2 CPU cores (OMP_NUM_THREADS=2) **shared with other jobs**, so contended (load average noted "
            f"per run: {'; '.join(when)}).\n\n"
            f"**Clustering**, what `comicid cluster --method graph` computes: fit s is "
            f"`GraphClusterer.fit_predict` (kNN graph from its own IVF index, Leiden, merge); confidence s the "
            f"per-instance confidence it adds (exact up to 2 x 10^8 instance-cluster pairs; beyond, the best "
            f"among candidate clusters: those of the instance's kNN neighbours, those joined to its cluster by a "
            f"kNN edge, and its cluster's nearest cluster means); peak GB the peak resident "
            f"memory of the process over both, data included. `confidence = exact`: share of "
            f"{AGREEMENT_SAMPLE:,} sampled instances whose confidence is within 1e-5 of the exact one (every "
            f"cluster scored), and the mean absolute difference.\n\n{clustering}\n\n"
            f"**ANN index** (`comicid index`), built after the clustering in the same process: faiss HNSW "
            f"tuned to recall@10 >= 0.95 (`recall@10`: measured, with the efSearch reached; capped at 1024); "
            f"index GB counts its vectors and row ids (HNSW links add about 0.26 GB per million); search "
            f"latency: one query, one thread, 500 queries; process peak GB: the whole run's.\n\n{index}\n\n"
            f"![time and memory against N](scale.png)\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="sizes to run (none: only rewrite the section and plot from stored results)")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, help="skip calibration and use this distance threshold")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs and results alone")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.threshold, args.seed, args.k)))
        return 0
    threshold = args.threshold if args.threshold is not None or not args.sizes else calibrate()
    if threshold is not None:
        print(f"threshold {threshold:.2f}", flush=True)
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else []
    stored = [row for row in stored if "full_s" in row]  # rows of an older format (no full path) are re-run
    for n in args.sizes:
        row = _child(n, threshold, args.seed, args.k)
        row["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + f", load {os.getloadavg()[0]:.1f}"
        print(json.dumps(row), flush=True)
        stored = [old for old in stored if old["n"] != n] + [row]
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(stored, indent=1) + "\n")
    if not args.no_write:
        _plot(stored)
        write_section(SECTION, _section(stored, "nice -n 10 .venv/bin/python benchmarks/scale.py --sizes "
                                                + " ".join(str(row["n"]) for row in sorted(stored, key=lambda r: r["n"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
