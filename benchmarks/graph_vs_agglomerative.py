"""Benchmark: graph clustering (kNN + Leiden + merge) against agglomerative on the development sets.

The graph method is meant to replace agglomerative beyond 5,000 instances per scope (``--method
auto``), so it must not cluster worse where both run. For each development manifest, instances are
embedded once with the shipped model (cached), each method's threshold is chosen by ``--threshold
auto`` (calibrated on ``split=dev`` rows, the same rule for both), and each book's ``split=test``
instances are clustered on their own with same-panel cannot-links. Results go to the
``graph-vs-agglomerative`` section of docs/BENCHMARKS.md.

    nice -n 10 .venv/bin/python benchmarks/graph_vs_agglomerative.py
    nice -n 10 .venv/bin/python benchmarks/graph_vs_agglomerative.py --sets supertux --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

from clustering_methods import MANIFESTS, _crops, cache_stem, instance_rows  # noqa: E402
from common import markdown_table, write_section  # noqa: E402

from comicid.data.manifest import read_manifest  # noqa: E402
from comicid.evaluation.clustering import clustering_metrics  # noqa: E402
from comicid.identity import Constraints, create_clusterer  # noqa: E402
from comicid.identity.calibration import auto_threshold  # noqa: E402

SECTION = "graph-vs-agglomerative"
METHODS = ("agglomerative", "graph")


def embed(manifest: Path, cache: Path, model_name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per instance (identity, book, page, panel, split) and its embedding, cached on disk."""
    from comicid.models import embed_crops, fuse_parts, load_embedding_model

    frame = read_manifest(manifest)
    table, codes, n_instances = instance_rows(frame)
    path = cache / f"{cache_stem(manifest, model_name)}.npy"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        model = load_embedding_model(model_name)
        np.save(path, fuse_parts(embed_crops(_crops(frame), model, progress=True), codes, n_instances, model.head))
    return table, np.load(path)


def run_set(name: str, table: pd.DataFrame, vectors: np.ndarray) -> list[list[object]]:
    rows = []
    for method in METHODS:
        choice = auto_threshold(vectors, table, method=method, scope="book")
        clusterer = create_clusterer(method, distance_threshold=choice.value)
        true, predicted, seconds = [], [], 0.0
        for book in sorted(table["book"].unique()):
            members = np.flatnonzero((table["book"] == book).to_numpy() & (table["split"] == "test").to_numpy()
                                     & (table["identity"] != "").to_numpy())
            if len(members) == 0:
                continue
            started = time.perf_counter()
            labels = clusterer.fit_predict(vectors[members],
                                           Constraints.from_instances(table.iloc[members].reset_index(drop=True)))
            seconds += time.perf_counter() - started
            true += [f"{book}/{identity}" for identity in table["identity"].to_numpy()[members]]
            predicted += [f"{book}/{label}" for label in labels]
        if not true:
            continue
        scores = clustering_metrics(np.array(true, dtype=object), np.array(predicted, dtype=object))
        rows.append([name, method, f"{choice.value:.2f} ({choice.source})", len(true), scores["ami"],
                     scores["pairwise_f"], scores["bcubed_f"], f"{scores['pred_clusters']}/{scores['true_clusters']}",
                     f"{seconds:.2f}"])
        print(" | ".join(str(value) for value in rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(MANIFESTS), help="which development sets to run")
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "comicid" / "benchmarks")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    rows: list[list[object]] = []
    deltas = []
    for name in args.sets:
        manifest = MANIFESTS[name]
        if not manifest.is_file():
            print(f"skipping {name}: {manifest} not found (set COMICID_DATASETS to the datasets folder)",
                  file=sys.stderr)
            continue
        table, vectors = embed(manifest, args.cache, args.model)
        found = run_set(name, table, vectors)
        rows += found
        if len(found) == 2:
            deltas.append((name, found[1][4] - found[0][4]))
    if not rows:
        print("no development set found; nothing to compare", file=sys.stderr)
        return 0
    body = (f"## Graph vs agglomerative on the development sets (`benchmarks/graph_vs_agglomerative.py`)\n\n"
            f"Command: `nice -n 10 .venv/bin/python benchmarks/graph_vs_agglomerative.py`. Model `{args.model}`; "
            "each method's threshold from `--threshold auto` (calibrated on `split=dev` rows, B-cubed F); scored on "
            "`split=test` rows, each book clustered on its own with same-panel cannot-links. Seconds: the "
            "clustering calls, 2 shared cores.\n\n"
            + markdown_table(["set", "method", "threshold", "instances", "AMI", "pairwise F", "B-cubed F",
                              "clusters pred/true", "seconds"], rows)
            + "\n\nAMI graph - agglomerative: " + ", ".join(f"{name} {delta:+.3f}" for name, delta in deltas) + ".\n")
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
