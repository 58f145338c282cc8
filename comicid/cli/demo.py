"""Run the main job on embedded synthetic data: draw books, evaluate them, write the HTML report.

Synthesises a small set of comic books with recurring characters, imports them, embeds every face and
body with the default model, clusters instances into identities per book, scores retrieval and
clustering on the test identities (dev identities calibrate the threshold), writes a report, and ends
with the `comicid serve` command that opens the collection in the browser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comicid.cli.common import add_model_options, positive_int
from comicid.cli.evaluate import format_summary
from comicid.data.synth import generate_books
from comicid.workflows.evaluate import EvaluationOptions, evaluate_manifest
from comicid.report import write_report
from comicid.atomic import atomic_write_text
from comicid.store.collection import Collection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    parser.add_argument("--books", type=positive_int, default=2, help="books to draw (default: 2)")
    parser.add_argument("--characters", type=positive_int, default=10, help="characters per book (default: 10)")
    parser.add_argument("--pages", type=positive_int, default=8, help="pages per book (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--method", default="agglomerative", help="clustering method (default: agglomerative)")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    progress = not args.quiet
    manifest = generate_books(args.out / "books", books=args.books, characters=args.characters, pages=args.pages,
                              seed=args.seed, progress=progress)
    collection_dir = args.out / "collection"
    options = EvaluationOptions(model=args.model, method=args.method, device=args.device,
                                precision=args.precision, batch_size=args.batch_size, progress=progress)
    result = evaluate_manifest(manifest, options, workdir=collection_dir)
    atomic_write_text(args.out / "metrics.json", json.dumps(result, indent=2, default=float) + "\n")
    report = write_report(Collection.open(collection_dir), args.out / "report.html", progress=progress)
    print(format_summary(result))
    print(f"metrics: {args.out / 'metrics.json'}")
    print(f"report:  {report}")
    print(f"browse and correct the identities: comicid serve {collection_dir}")
    return 0
