"""Build or update the approximate nearest-neighbour index that `search` uses (faiss HNSW).

Stored in COLLECTION/index/<model>/ with its measured recall@10 against exact search. Instances
imported since the last build are added; --rebuild retrains it from scratch. `embed` does this by
itself from 20,000 instances on. It runs on one machine, using all its cores: unlike import and embed
it has no --ray, since the graph cannot be built in shards (docs/RAY.md gives the measurement).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import add_model_options, positive_int
from comicid.models.embedding_model import load_embedding_model
from comicid.store.index import update_collection_index
from comicid.store.collection import Collection
from comicid.workflows.embed import embed_collection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    parser.add_argument("--rebuild", action="store_true", help="retrain the index instead of adding new instances")
    parser.add_argument("--kind", default="hnsw", choices=("hnsw", "ivf"),
                        help="hnsw: fast high-recall search (default); ivf: quicker to build, slower to search")
    parser.add_argument("--nlist", type=positive_int, help="inverted lists of an ivf index (default: about 4 sqrt(N))")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    collection = Collection.open(args.collection)
    model = load_embedding_model(args.model, device=args.device, precision=args.precision)
    embedded = embed_collection(collection, model, device=args.device, batch_size=args.batch_size,
                                progress=not args.quiet)
    info, _, _ = update_collection_index(collection, embedded, rebuild=args.rebuild, nlist=args.nlist,
                                         kind=args.kind)
    if not args.quiet:
        done = "built" if info.rebuilt else f"{info.added} instances added"
        print(f"{collection.root}: index of {info.instances} instances {done} in {info.seconds:.1f} s; "
              f"recall@10 vs exact {info.recall_at_10:.3f} ({info.kind}, search effort {info.effort})")
    return 0
