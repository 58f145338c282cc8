"""Import crops or pages with boxes into a collection (idempotent, incremental).

Reads SRC in one of the supported formats (a manifest-v1 CSV/Parquet, a folder of images per identity,
COCO JSON, the COMICS character-instance/sequence files, Manga109), cuts and caches every crop, and
writes or updates the collection folder OUT. Unreadable images stop the import with the row named,
unless --skip-bad is given, in which case they are skipped, counted and listed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.data.importers import IMPORTERS
from comicid.workflows.imports import import_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", type=Path, help="manifest file, folder or annotation file")
    parser.add_argument("--format", default="auto", choices=["auto", *sorted(IMPORTERS)],
                        help="format of SRC (default: detected from SRC)")
    parser.add_argument("--out", required=True, type=Path, metavar="COLLECTION", help="collection folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip rows whose image is missing or unreadable (counted and listed)")


def run(args: argparse.Namespace) -> int:
    result = import_source(args.source, args.out, args.format, skip_bad=args.skip_bad, progress=not args.quiet)
    collection, report, left_out = result.collection, result.report, result.left_out
    if not args.quiet:
        print(f"{collection.root}: {report.summary()}")
        if left_out:
            print(f"  the importer left out {len(left_out)} source entries:")
            for entry in left_out[:20]:
                print(f"    {entry}")
        for row, reason in report.skipped[:20]:
            print(f"  skipped row {row}: {reason}")
        if len(report.skipped) > 20:
            print(f"  ... and {len(report.skipped) - 20} more skipped rows")
    return 0
