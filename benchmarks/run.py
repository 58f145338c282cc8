"""Evaluate every backbone with every clustering method on every development set and on synthetic books.

    .venv/bin/python benchmarks/run.py [--models default,default:fp32,effnet-lite0-imagenet,...] [--methods ...]

A model is ``NAME`` (at the precision every command takes by default: ``auto``, which is the int8
graph on the CPU for the shipped model) or ``NAME:PRECISION`` (``fp32`` or ``int8``).

Writes the ``evaluate`` section of docs/BENCHMARKS.md: one table per dataset (test identities when the
manifest has dev/test splits; dev identities calibrate the threshold), and the embedding and clustering
cost in seconds per 1,000 instances. Collections and feature caches are kept under
``--cache`` (default ``build/benchmarks``) so re-runs only pay for what changed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import ROOT, available_dev_sets, markdown_table, write_section  # the script's folder is on sys.path

import comicid
from comicid.data.synth import generate_books
from comicid.runtime import tune_allocator

DEFAULT_MODELS = "default,default:fp32,effnet-lite0-imagenet,mobilenetv2-imagenet,color-hist,random"
DEFAULT_METHODS = "agglomerative,hdbscan"
SYNTH = {"books": 4, "characters": 12, "pages": 10, "seed": 101}  # held-out seed: never used for training


def row(model: str, method: str, result: dict, embed_seconds: float) -> list[object]:
    r, c, s = result["retrieval"], result["clustering"], result["seconds"]
    per_k = 1000.0 / max(1, result["instances"])
    per_k_images = 1000.0 / max(1, result["images"])
    return [model, method, r["rank1"], r["rank5"], r["mAP"], r["mINP"], r["map_at_r"], c["ami"], c["ari"],
            c["bcubed_f"], c["pairwise_f"], c["wcp"], f"{c['pred_clusters']}/{c['true_clusters']}",
            f"{embed_seconds * per_k_images:.1f}", f"{s['cluster'] * per_k:.2f}"]


HEADER = ["model", "method", "rank-1", "rank-5", "mAP", "mINP", "MAP@R", "AMI", "ARI", "B3-F", "pair-F", "WCP",
          "pred/true", "embed s/1k crops", "cluster s/1k inst."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "benchmarks",
                        help="where synthetic books are drawn (collections are temporary: embedding is cold)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    tune_allocator()

    synth_manifest = args.cache / "synth" / "manifest.csv"
    if not synth_manifest.is_file():
        generate_books(synth_manifest.parent, progress=False, **SYNTH)
    datasets = [(dev.name, dev.manifest, dev.note) for dev in available_dev_sets()]
    datasets.append((f"synthetic books (seed {SYNTH['seed']})", synth_manifest,
                     f"{SYNTH['books']} books x {SYNTH['characters']} characters x {SYNTH['pages']} pages, "
                     "face+body instances, clustering per book"))
    sections = []
    for name, manifest, note in datasets:
        rows = []
        for model_name in args.models.split(","):
            name_only, _, precision = model_name.partition(":")
            model = comicid.load_model(name_only, precision=precision or "auto")
            with tempfile.TemporaryDirectory(prefix="comicid-bench-") as scratch:
                cold_embed = None  # the first method embeds from scratch; the others reuse its cache
                for method in args.methods.split(","):
                    started = time.perf_counter()
                    result = comicid.evaluate(manifest, model=model, method=method,
                                              collection=Path(scratch) / "collection")
                    cold_embed = result["seconds"]["embed"] if cold_embed is None else cold_embed
                    print(f"{name:36s} {model_name:24s} {method:14s} rank-1 {result['retrieval']['rank1']:.3f} "
                          f"mAP {result['retrieval']['mAP']:.3f} AMI {result['clustering']['ami']:.3f} "
                          f"({time.perf_counter() - started:.0f} s)", flush=True)
                    rows.append(row(model_name, method, result, cold_embed))
        split = result["split"]
        sections.append(f"### {name}\n{note}; scored rows: `{split}`; {result['instances']} instances.\n\n"
                        + markdown_table(HEADER, rows))
    body = ("## Evaluate: backbones x clustering methods (`benchmarks/run.py`)\n\n"
            "Command: `.venv/bin/python benchmarks/run.py`. Embedding cost is cold (fresh collection, "
            "including import and crop decoding) per 1,000 crops; clustering cost per 1,000 instances "
            "includes threshold calibration on dev rows.\n\n"
            + "\n\n".join(sections))
    if not args.no_write:
        write_section("evaluate", body)
    print(body)


if __name__ == "__main__":
    main()
