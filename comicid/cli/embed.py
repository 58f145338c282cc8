"""Embed every crop of a collection (cached per crop and model, resumable).

Part features are stored in COLLECTION/embeddings/<model>/; running again with the same model only
embeds crops imported since, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import add_model_options
from comicid.models.backbones import list_backbones
from comicid.models.ensemble import load_model
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


def run(args: argparse.Namespace) -> int:
    collection = Collection.open(args.collection)
    model = load_model(args.model, device=args.device, precision=args.precision)
    embedded = embed_collection(collection, model, device=args.device, batch_size=args.batch_size,
                                progress=not args.quiet)
    if not args.quiet:
        print(f"{collection.root}: {len(embedded)} instances embedded with {model.model_id} "
              f"({embedded.vectors.shape[1]}-d)")
    return 0
