"""Embed every crop of a collection (cached per crop and model, resumable).

Part features are stored in COLLECTION/embeddings/<model>/; running again with the same model only
embeds crops imported since, and an interrupted run resumes where it stopped. From 20,000 instances on
(or with --index) the ANN index that `search` uses is built or updated too (see `comicid index`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import add_model_options, positive_int
from comicid.errors import ConfigError
from comicid.models.backbones import list_backbones
from comicid.models.ensemble import load_model
from comicid.store.index import INDEX_MIN_INSTANCES, index_folder, update_collection_index
from comicid.workflows.ray_embed import embed_collection_ray
from comicid.store.collection import Collection
from comicid.workflows.embed import embed_collection


class _ListModels(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        print("\n".join(["default", *list_backbones()]))
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    add_model_options(parser)
    parser.add_argument("--list-models", nargs=0, action=_ListModels, help="list model names and exit")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="embed on a Ray cluster (HOST:PORT, auto, or local for a private one on this machine); "
                             "see docs/RAY.md")
    parser.add_argument("--ray-workers", type=positive_int, metavar="N",
                        help="with --ray: single-threaded embedding actors on the cluster (default: one per CPU)")
    parser.add_argument("--index", action=argparse.BooleanOptionalAction, default=None,
                        help=f"build/update the ANN index (default: from {INDEX_MIN_INSTANCES:,} instances on, or "
                             "when the collection already has one)")


def run(args: argparse.Namespace) -> int:
    if args.ray_workers and not args.ray:
        raise ConfigError("--ray-workers needs --ray ADDRESS")  # it sizes the Ray actors; one machine has none
    collection = Collection.open(args.collection)
    model = load_model(args.model, device=args.device, precision=args.precision)
    if args.ray:
        embedded = embed_collection_ray(collection, args.model, address=args.ray, precision=args.precision,
                                        batch_size=args.batch_size, workers=args.ray_workers, progress=not args.quiet)
    else:
        embedded = embed_collection(collection, model, device=args.device, batch_size=args.batch_size,
                                    progress=not args.quiet)
    if not args.quiet:
        print(f"{collection.root}: {len(embedded)} instances embedded with {model.model_id} "
              f"({embedded.vectors.shape[1]}-d)")
    index = args.index
    if index is None:
        index = len(embedded) >= INDEX_MIN_INSTANCES or (index_folder(collection, model.model_id) / "index.json").is_file()
    if index:
        info, _, _ = update_collection_index(collection, embedded)
        if not args.quiet:
            print(f"index: {info.instances} instances ({'built' if info.rebuilt else f'{info.added} added'}), "
                  f"recall@10 vs exact {info.recall_at_10:.3f} ({info.kind}, search effort {info.effort})")
    return 0
