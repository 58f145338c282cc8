"""Character bank: enrol named characters from exemplars and suggest which exemplars to enrol.

  comicid bank add NAME IMAGE... --bank DIR            enrol from image files (embedded by --model)
  comicid bank add NAME --from COLLECTION --identity ID [--count 3 --strategy representative|diverse]
  comicid bank list --bank DIR
  comicid bank suggest COLLECTION ID [--count 3 --strategy ...]

`comicid cluster COLLECTION --bank DIR` then names the clusters that match a bank character (the
clustering threshold decides, no labels needed) and keeps every other cluster as a new identity.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from comicid.cli.common import add_model_options, positive_int
from comicid.data.manifest import display_key
from comicid.workflows.bank import STRATEGIES, BankError, CharacterBank, enrol_identity, suggest_exemplars
from comicid.identity.curation import Curator
from comicid.models.embedding_model import load_embedding_model
from comicid.store.collection import Collection
from comicid.store.vectors import load_instance_vectors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("add", "list", "suggest"))
    parser.add_argument("args", nargs="*", metavar="ARG", help="add: NAME [IMAGE...]; suggest: COLLECTION ID")
    parser.add_argument("--bank", type=Path, default=Path("bank"), help="bank folder (default: ./bank)")
    parser.add_argument("--from", dest="source", type=Path, metavar="COLLECTION",
                        help="add: enrol from an identity of this collection")
    parser.add_argument("--identity", help="add --from: the identity id to enrol")
    parser.add_argument("--count", type=positive_int, default=3, help="exemplars to take/suggest (default: 3)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="representative",
                        help="which instances: closest to the centre, or spread out (default: representative)")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    bank = CharacterBank(args.bank)
    if args.action == "list":
        for name, character in bank.characters().items():
            print(f"{name}\t{len(character.exemplars)} exemplars")
        return 0
    if args.action == "suggest":
        if len(args.args) != 2:
            raise BankError("usage: comicid bank suggest COLLECTION IDENTITY")
        collection = Collection.open(args.args[0])
        keys, vectors = load_instance_vectors(collection)
        members = set(Curator(collection).state().members().get(args.args[1], []))
        rows = np.array([i for i, key in enumerate(keys) if key in members])
        if not len(rows):
            raise BankError(f"no identity {args.args[1]!r} in '{collection.root}'")
        for index in rows[suggest_exemplars(np.asarray(vectors[rows]), args.count, args.strategy)]:
            print(display_key(keys[index]))
        return 0
    if not args.args:
        raise BankError("usage: comicid bank add NAME [IMAGE...] [--from COLLECTION --identity ID]")
    name, images = args.args[0], [Path(p) for p in args.args[1:]]
    if args.source is not None:
        if images or not args.identity:
            raise BankError("--from takes --identity ID and no images")
        character = enrol_identity(bank, name, Collection.open(args.source), args.identity, args.count, args.strategy)
    else:
        model = load_embedding_model(args.model, device=args.device, precision=args.precision)
        character = bank.add_images(name, images, model, device=args.device)
    if not args.quiet:
        print(f"{bank.root}: {character.name} has {len(character.exemplars)} exemplars")
    return 0
