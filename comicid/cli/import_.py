"""Import crops or pages with boxes into a collection (idempotent, incremental).

Reads SRC in one of the supported formats (a manifest-v1 CSV/Parquet, a folder of images per identity,
COCO JSON, the COMICS character-instance/sequence files, Manga109), cuts and caches every crop, and
writes or updates the collection folder OUT. Unreadable images stop the import with the row named,
unless --skip-bad is given, in which case they are skipped, counted and listed. --ocr reads the text
of every page with boxes (RapidOCR, models shipped in its wheel) and gives it to the instances of the
panel it belongs to, where the source had no text (docs/MULTIMODAL.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.data.importers import IMPORTERS, load_source
from comicid.data.ocr import attach_ocr_text
from comicid.store.collection import Collection
from comicid.store.ingest import ingest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", type=Path, help="manifest file, folder or annotation file")
    parser.add_argument("--format", default="auto", choices=["auto", *sorted(IMPORTERS)],
                        help="format of SRC (default: detected from SRC)")
    parser.add_argument("--out", required=True, type=Path, metavar="COLLECTION", help="collection folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip rows whose image is missing or unreadable (counted and listed)")
    parser.add_argument("--ocr", action="store_true",
                        help="read page text by OCR and assign it to the instances of its panel (rows without text)")


def run(args: argparse.Namespace) -> int:
    frame = load_source(args.source, args.format, check_files=not args.skip_bad)
    left_out = list(frame.attrs.get("skipped", []))  # entries the importer listed rather than imported
    if args.ocr:
        frame = attach_ocr_text(frame, progress=not args.quiet)
        if not args.quiet:
            ocr = frame.attrs["ocr"]
            print(f"ocr: {ocr['pages']} pages read, {ocr['blocks']} text blocks, {ocr['assigned']} assigned")
    collection = Collection.create(args.out)
    report = ingest(frame, collection, skip_bad=args.skip_bad, progress=not args.quiet,
                    source=str(args.source.resolve()))
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
