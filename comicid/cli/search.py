"""Find the instances most similar to an image or to an instance of the collection (cosine).

Prints a table, or JSON with --json. Uses the collection's ANN index when it has one (`comicid index`,
built by `embed` from 20,000 instances on) and exact search otherwise; --index exact forces exact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comicid.cli.common import add_model_options, add_rerank_options, positive_int, printable
from comicid.models.ensemble import load_model
from comicid.workflows.search import SEARCH_BACKENDS, search_collection
from comicid.store.collection import Collection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    parser.add_argument("image", metavar="IMAGE", type=Path, nargs="?", help="query image (a character crop)")
    parser.add_argument("--instance", metavar="ID", help="query with an instance of the collection (BOOK/INSTANCE)")
    parser.add_argument("--top", type=positive_int, default=10, help="results to show (default: 10)")
    parser.add_argument("--index", default="auto", choices=SEARCH_BACKENDS,
                        help="auto: the stored ANN index if there is one, else exact; ann: build it if missing "
                             "(default: auto)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_rerank_options(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    collection = Collection.open(args.collection)
    model = load_model(args.model, device=args.device, precision=args.precision)
    result = search_collection(collection, model, image=args.image, instance=args.instance, top=args.top,
                               backend=args.index, device=args.device, progress=not args.quiet,
                               rerank=args.rerank, aqe=args.aqe)
    if args.json:
        print(json.dumps(result.to_dict(orient="records"), indent=2))
    else:
        shown = result.map(lambda value: printable(value) if isinstance(value, str) else value)
        print(shown.to_string(index=False))
    return 0
