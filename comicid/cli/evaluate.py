"""Evaluate a labelled manifest end to end: import, embed, cluster, score retrieval and clustering.

With dev and test rows, test rows are scored and dev rows calibrate the threshold. Prints a summary
(or nothing with --quiet) and writes the full result as JSON with --json. See docs/EVALUATION.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comicid.atomic import atomic_write_text
from comicid.cli.common import add_cluster_options, add_model_options, add_rerank_options, output_file, printable
from comicid.workflows.evaluate import PROTOCOLS, SPLITS, EvaluationOptions, evaluate_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="MANIFEST", type=Path, help="manifest-v1 CSV or Parquet file")
    add_model_options(parser)
    add_cluster_options(parser)
    parser.add_argument("--split", default="auto", choices=SPLITS,
                        help="rows to score; auto = test when dev and test exist, else all (default: auto)")
    parser.add_argument("--protocol", default="standard", choices=PROTOCOLS,
                        help="also score the identity-aware re-ID paper's local or global protocol")
    parser.add_argument("--collection", type=Path, metavar="DIR",
                        help="keep the collection (crops, features, assignments) here for report/search")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")
    parser.add_argument("--skip-bad", action="store_true", help="skip rows whose image is missing or unreadable")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read images outside the manifest's folder (refused by default)")
    add_rerank_options(parser)


def format_summary(result: dict) -> str:
    r, c = result["retrieval"], result["clustering"]
    lines = [f"{result['manifest']}: {result['instances']} instances ({result['split']}), model {result['model']}",
             f"  retrieval ({r['protocol']}{', re-ranked' if r.get('reranked') else ''}, {r['queries']} queries): rank-1 {r['rank1']:.3f}  rank-5 {r['rank5']:.3f}"
             f"  rank-10 {r['rank10']:.3f}  mAP {r['mAP']:.3f}  mINP {r['mINP']:.3f}  MAP@R {r['map_at_r']:.3f}",
             f"  clustering ({result['method']}, threshold {c.get('threshold_rule', 'n/a')}, mean of {c['books']} books): "
             f"AMI {c['ami']:.3f}  ARI {c['ari']:.3f}  "
             f"NMI {c['nmi']:.3f}  V {c['v_measure']:.3f}  B3-F {c['bcubed_f']:.3f}  pair-F {c['pairwise_f']:.3f}  "
             f"WCP {c['wcp']:.3f}  clusters {c['pred_clusters']} predicted / {c['true_clusters']} true"]
    pooled = c.get("pooled")
    if pooled:
        lines.append(f"  clustering pooled over {pooled['instances']} instances: AMI {pooled['ami']:.3f}  "
                     f"ARI {pooled['ari']:.3f}  B3-F {pooled['bcubed_f']:.3f}  pair-F {pooled['pairwise_f']:.3f}"
                     + (f"  ({c['books_skipped']} books under 2 instances left out of the means)"
                        if c.get("books_skipped") else ""))
    if "protocol" in result:
        p = result["protocol"]
        lines.append(f"  {p['name']} protocol: MAP@R {p['map_at_r']:.3f}  P@1 {p['precision_at_1']:.3f}  "
                     f"MRR {p['mrr']:.3f}  R-precision {p['r_precision']:.3f}")
    s = result["seconds"]
    lines.append(f"  seconds: embed {s['embed']:.1f}  cluster {s['cluster']:.1f}  total {s['total']:.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    options = EvaluationOptions(model=args.model, method=args.method, scope=args.scope, threshold=args.threshold,
                                split=args.split, protocol=args.protocol, device=args.device, precision=args.precision,
                                batch_size=args.batch_size, skip_bad=args.skip_bad, progress=not args.quiet,
                                allow_outside=args.allow_outside, rerank=args.rerank, aqe=args.aqe)
    if args.json:
        output_file(args.json, "--json")
    result = evaluate_manifest(args.manifest, options, workdir=args.collection)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2, default=float) + "\n")
    if not args.quiet:
        print(printable(format_summary(result), keep_newlines=True))
    return 0
