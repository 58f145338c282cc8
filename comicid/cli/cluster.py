"""Assign identities: cluster a collection's instances with comic constraints.

Two instances in one panel are never merged (cannot-link); the face and body of one instance are
fused into one embedding first (must-link). Writes COLLECTION/assignments.parquet atomically and
prints a summary; --out also writes the table as CSV or Parquet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import add_cluster_options, add_model_options, output_file
from comicid.identity import write_assignments
from comicid.models.ensemble import load_model
from comicid.store.collection import Collection
from comicid.workflows.cluster_collection import cluster_collection
from comicid.workflows.cluster import describe_threshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    add_cluster_options(parser)
    add_model_options(parser)
    parser.add_argument("--out", type=Path, help="also write the assignment table here (.csv or .parquet)")
    parser.add_argument("--keep-edits", action=argparse.BooleanOptionalAction, default=None,
                        help="honour the collection's edit log (must-/cannot-links, identity ids and names); "
                             "default: on once any edit exists")
    parser.add_argument("--bank", type=Path, metavar="DIR",
                        help="name clusters after the characters of this bank when they match "
                             "(see `comicid bank`); unmatched clusters stay new identities")
    parser.add_argument("--bank-threshold", type=float, metavar="DISTANCE",
                        help="with --bank: prototype cosine distance under which a cluster takes a character's "
                             "name (default: the model's calibrated naming threshold, else the clustering's)")


def run(args: argparse.Namespace) -> int:
    if args.out:
        output_file(args.out, "--out")
    collection = Collection.open(args.collection)
    with collection.writer("cluster"):
        return _run(args, collection)


def _run(args: argparse.Namespace, collection: Collection) -> int:
    model = load_model(args.model, device=args.device, precision=args.precision)
    assignment = cluster_collection(collection, model, method=args.method, scope=args.scope,
                                    threshold=args.threshold, device=args.device, batch_size=args.batch_size,
                                    progress=not args.quiet, keep_edits=args.keep_edits, bank=args.bank,
                                    bank_threshold=args.bank_threshold)
    if args.out:
        write_assignments(assignment.table, args.out)
    if not args.quiet:
        info = assignment.info
        print(f"{collection.root}: {info['instances']} instances -> {info['identities']} identities "
              f"[{info['method']}, scope {info['scope']}, threshold {describe_threshold(info)}]")
        if "edits" in info:
            edits = info["edits"]
            print(f"kept edits: {edits['confirmed']} confirmed instances, {edits['must_links']} must-links, "
                  f"{edits['cannot_links']} cannot-links, {edits['identities_kept']} identities kept their id")
        if "bank" in info:
            bank = info["bank"]
            print(f"bank: {bank['clusters_named']} clusters named, {bank['clusters_new']} kept as new identities "
                  f"[naming threshold {bank['threshold']:.3g} ({bank['threshold_source']})]")
    return 0
