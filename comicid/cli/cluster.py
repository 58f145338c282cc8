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
from comicid.identity.bank import CharacterBank, apply_bank
from comicid.identity.curation import Curator
from comicid.identity.persist import recluster_keeping_edits
from comicid.models.embedding_model import load_embedding_model
from comicid.store.collection import Collection
from comicid.store.edits import EditLog
from comicid.store.embeddings import embed_collection
from comicid.store.vectors import save_instance_vectors


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


def run(args: argparse.Namespace) -> int:
    collection = Collection.open(args.collection)
    model = load_embedding_model(args.model, device=args.device, precision=args.precision)
    embedded = embed_collection(collection, model, device=args.device, batch_size=args.batch_size,
                                progress=not args.quiet, n_views=views_needed(args.method))
    options = dict(method=args.method, scope=args.scope, threshold=args.threshold,
                   params=collection_params(args.method, collection.models_dir), progress=not args.quiet,
                   on_fitted=save_learnt_state(collection.adapters_dir))
    keep = EditLog(collection.root).exists() if args.keep_edits is None else args.keep_edits
    protected: set[str] = set()
    if keep and collection.assignments_path.is_file():
        state = Curator(collection).state()
        assignment = recluster_keeping_edits(embedded, state, **options)
        protected = set(state.confirmed.values()) | {i for i, entry in state.roster.items() if entry.name}
    else:
        assignment = assign_identities(embedded, **options)
    if args.bank:
        assignment = apply_bank(assignment, embedded, CharacterBank(args.bank), protected=protected)
    collection.write_assignments(assignment.table, assignment.info)
    save_instance_vectors(collection, embedded.table["instance_key"].astype(str).tolist(), embedded.vectors,
                          embedded.model_id)
    if args.out:
        table = assignment.table.rename(columns={"instance_key": "instance", "identity_id": "identity"})
        table["instance"] = table["instance"].map(display_key)
        write_assignments(table, args.out)
    if not args.quiet:
        info = assignment.info
        threshold = "n/a" if info["threshold"] is None else f"{info['threshold']:.3g} ({info['threshold_source']})"
        print(f"{collection.root}: {info['instances']} instances -> {info['identities']} identities "
              f"[{info['method']}, scope {info['scope']}, threshold {threshold}]")
        if "edits" in info:
            edits = info["edits"]
            print(f"kept edits: {edits['confirmed']} confirmed instances, {edits['must_links']} must-links, "
                  f"{edits['cannot_links']} cannot-links, {edits['identities_kept']} identities kept their id")
        if "bank" in info:
            print(f"bank: {info['bank']['clusters_named']} clusters named, {info['bank']['clusters_new']} kept as "
                  "new identities")
    return 0
