"""Assign identities: cluster a collection's instances with comic constraints.

Two instances in one panel are never merged (cannot-link); the face and body of one instance are
fused into one embedding first (must-link). Writes COLLECTION/assignments.parquet atomically and
prints a summary; --out also writes the table as CSV or Parquet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import add_cluster_options, add_model_options
from comicid.data.manifest import display_key
from comicid.identity import write_assignments
from comicid.identity.assign import assign_identities, collection_params, save_learnt_state, views_needed
from comicid.models.ensemble import load_model
from comicid.store.collection import Collection
from comicid.store.embeddings import embed_collection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    add_cluster_options(parser)
    add_model_options(parser)
    parser.add_argument("--out", type=Path, help="also write the assignment table here (.csv or .parquet)")


def run(args: argparse.Namespace) -> int:
    collection = Collection.open(args.collection)
    model = load_model(args.model, device=args.device, precision=args.precision)
    embedded = embed_collection(collection, model, device=args.device, batch_size=args.batch_size,
                                progress=not args.quiet, n_views=views_needed(args.method))
    assignment = assign_identities(embedded, method=args.method, scope=args.scope, threshold=args.threshold,
                                   params=collection_params(args.method, collection.models_dir),
                                   progress=not args.quiet,
                                   on_fitted=save_learnt_state(collection.adapters_dir))
    collection.write_assignments(assignment.table, assignment.info)
    if args.out:
        table = assignment.table.rename(columns={"instance_key": "instance", "identity_id": "identity"})
        table["instance"] = table["instance"].map(display_key)
        write_assignments(table, args.out)
    if not args.quiet:
        info = assignment.info
        threshold = "n/a" if info["threshold"] is None else f"{info['threshold']:.3g} ({info['threshold_source']})"
        print(f"{collection.root}: {info['instances']} instances -> {info['identities']} identities "
              f"[{info['method']}, scope {info['scope']}, threshold {threshold}]")
    return 0
