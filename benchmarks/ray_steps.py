"""What `--ray` buys: import with and without a Ray cluster, and the steps of building the search index.

Writes the ``ray`` section of docs/BENCHMARKS.md (only that section); docs/RAY.md reads its decisions
from it. Two parts:

- **import**: a generated set (comicid.data.synth) imported on this machine and with ``--ray local``
  (a private loopback cluster, started inside the timing, as a user's run would).
- **index**: where the time of building an index of N synthetic 256-d vectors goes, one faiss thread:
  IVF k-means training, list assignment (the only step that could be sharded and still give the same
  index), appending, tuning; and HNSW insertion (one graph, not shardable).

    python benchmarks/ray_steps.py                       # 40 pages; 200,000 vectors
    python benchmarks/ray_steps.py --pages 10 --vectors 20000 --no-write
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import markdown_table, write_section


def time_import(pages: int, workers: int) -> tuple[int, int, float, float]:
    """``(rows, pages, seconds on one machine, seconds with --ray local)`` for a generated set."""
    from comicid.data.synth import generate_books
    from comicid.workflows.imports import import_source
    from comicid.workflows.ray_import import import_source_ray

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = generate_books(root / "synth", books=2, characters=6, pages=max(1, pages // 2), seed=5,
                                  progress=False)
        started = time.perf_counter()
        single = import_source(manifest, root / "one")
        one = time.perf_counter() - started
        started = time.perf_counter()
        distributed = import_source_ray(manifest, root / "ray", "local", workers=workers)
        many = time.perf_counter() - started
        if not single.collection.instances().equals(distributed.collection.instances()):
            raise SystemExit("the Ray import differs from the single-machine import")
        return single.report.rows, distributed.ray["pages_cut"], one, many


def time_index(n: int, dim: int = 256, seed: int = 0) -> dict[str, float]:
    """Seconds of each step of building an IVF and an HNSW index of ``n`` clustered unit vectors."""
    import faiss
    import numpy as np

    from comicid.search.ann import HNSW_EF_CONSTRUCTION, HNSW_M, AnnIndex, default_nlist

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 40), dim)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    nlist = default_nlist(n)
    times: dict[str, float] = {"nlist": nlist}
    # The same recipe as AnnIndex.build, step by step.
    index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    sample = np.random.default_rng(seed).choice(n, size=min(n, 64 * nlist), replace=False)
    times["sample"] = len(sample)
    started = time.perf_counter()
    index.train(vectors[np.sort(sample)])
    times["ivf train"] = time.perf_counter() - started
    started = time.perf_counter()
    index.quantizer.search(vectors, 1)
    times["ivf assign"] = time.perf_counter() - started
    started = time.perf_counter()
    index.add(vectors)  # assigns again, then appends
    times["ivf append"] = max(0.0, time.perf_counter() - started - times["ivf assign"])
    started = time.perf_counter()
    AnnIndex(index).tune(vectors)
    times["ivf tune"] = time.perf_counter() - started
    graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    started = time.perf_counter()
    graph.add(vectors)
    times["hnsw insert"] = time.perf_counter() - started
    started = time.perf_counter()
    AnnIndex(graph).tune(vectors)
    times["hnsw tune"] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40, help="pages of the generated import set")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of the private cluster")
    parser.add_argument("--vectors", type=int, default=200_000, help="vectors of the index part")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    rows, pages, one, many = time_import(args.pages, args.workers)
    steps = time_index(args.vectors)
    build = steps["ivf train"] + steps["ivf assign"] + steps["ivf append"] + steps["ivf tune"]
    body = "\n".join([
        "## `--ray`: import on a cluster, and why `index` stays on one machine (`benchmarks/ray_steps.py`)",
        "",
        f"Command: `python benchmarks/ray_steps.py --pages {args.pages} --workers {args.workers} "
        f"--vectors {args.vectors}`. 2 shared, contended cores; one thread per worker. Not a real cluster:",
        "a private one on this machine, whose start-up is inside the Ray time as in a user's run.",
        "",
        markdown_table(["import", "rows", "pages", "seconds"], [
            ["one machine (`comicid import`)", rows, pages, f"{one:.1f}"],
            [f"`--ray local --ray-workers {args.workers}` (same parts table, checked)", rows, pages, f"{many:.1f}"],
        ]),
        "",
        markdown_table(["index step", "seconds"], [
            [f"IVF: k-means training of {int(steps['nlist'])} lists on {int(steps['sample']):,} sampled vectors",
             f"{steps['ivf train']:.1f}"],
            ["IVF: assigning every vector to its list (the only shardable step)", f"{steps['ivf assign']:.1f}"],
            ["IVF: appending to the lists", f"{steps['ivf append']:.2f}"],
            ["IVF: tuning nprobe (256 queries vs exact)", f"{steps['ivf tune']:.1f}"],
            ["HNSW (default): inserting into the graph", f"{steps['hnsw insert']:.1f}"],
            ["HNSW: tuning efSearch", f"{steps['hnsw tune']:.1f}"],
        ]),
        "",
        f"{args.vectors:,} vectors of 256 dimensions; the shardable assignment is "
        f"{100 * steps['ivf assign'] / build:.0f}% of the IVF build.",
    ])
    print(body)
    if not args.no_write:
        write_section("ray", body)


if __name__ == "__main__":
    main()
