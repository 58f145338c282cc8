"""Import crops or pages with boxes into a collection (idempotent, incremental).

Reads SRC in one of the supported formats (a manifest-v1 CSV/Parquet, a folder of images per identity,
COCO JSON, the COMICS character-instance/sequence files, Manga109), cuts and caches every crop, and
writes or updates the collection folder OUT. Unreadable images stop the import with the row named,
unless --skip-bad is given, in which case they are skipped, counted and listed. --ocr reads the text
of every page with boxes (RapidOCR, models shipped in its wheel) and gives it to the instances of the
panel it belongs to, where the source had no text (docs/MULTIMODAL.md). --detect reads SRC as pages
without boxes (a folder of page images, a .txt page list or a manifest of pages) and finds panels,
bodies, faces and text balloons with the page detector, links each face to its body and each instance
to its panel, and imports the result (docs/DETECTION.md). --ray ADDRESS decodes the pages and cuts the
crops on a Ray cluster (same collection; an interrupted run resumes; docs/RAY.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from comicid.cli.common import positive_int, printable
from comicid.data.importers import IMPORTERS
from comicid.errors import ConfigError
from comicid.workflows.detect import DEFAULT_MIN_SCORE
from comicid.workflows.imports import import_source
from comicid.workflows.ray_import import import_source_ray


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", type=Path, help="manifest file, folder or annotation file")
    parser.add_argument("--format", default="auto", choices=["auto", *sorted(IMPORTERS)],
                        help="format of SRC (default: detected from SRC)")
    parser.add_argument("--out", required=True, type=Path, metavar="COLLECTION", help="collection folder")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip rows whose image is missing or unreadable, or whose box does not fit its "
                             "image (counted and listed)")
    parser.add_argument("--ocr", action="store_true",
                        help="read page text by OCR and assign it to the instances of its panel (rows without text)")
    parser.add_argument("--detect", action="store_true",
                        help="SRC holds pages without boxes: detect the characters (docs/DETECTION.md)")
    parser.add_argument("--detector", type=Path, default=None, metavar="PATH",
                        help="with --detect: a detector checkpoint (default: the shipped one)")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help=f"with --detect: drop detections scored below this (default: {DEFAULT_MIN_SCORE})")
    parser.add_argument("--device", default="cpu", help="with --detect: cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read images outside SRC's folder (../ paths, absolute paths, links leading out); "
                             "refused by default")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the format's importer (docs/IMPORTERS.md), e.g. "
                             "--option skip_without_bbox=true or --option panels=DIR; repeatable")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="cut the crops on a Ray cluster (HOST:PORT, auto, or local for a private one on this "
                             "machine); SRC and COLLECTION must be on storage every node mounts; see docs/RAY.md")
    parser.add_argument("--ray-workers", type=positive_int, metavar="N",
                        help="with --ray: pages cut at once on the cluster (default: one per CPU)")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as importer keyword options: true/false become booleans, a comma list a list
    for ``books``/``splits``, anything else stays text (paths included)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--option {pair!r} is not NAME=VALUE")
        name, value = name.strip().replace("-", "_"), value.strip()
        if value.lower() in ("true", "false"):
            options[name] = value.lower() == "true"
        elif name in ("books", "splits"):
            options[name] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            options[name] = value
    return options


def run(args: argparse.Namespace) -> int:
    options = dict(format=args.format, skip_bad=args.skip_bad, progress=not args.quiet,
                   allow_outside=args.allow_outside, ocr=args.ocr, detect=args.detect, detector=args.detector,
                   min_score=args.min_score, device=args.device, **parse_options(args.option))
    if args.ray:
        result = import_source_ray(args.source, args.out, args.ray, args.ray_workers, **options)
    elif args.ray_workers:
        raise ConfigError("--ray-workers needs --ray ADDRESS")
    else:
        result = import_source(args.source, args.out, **options)
    collection, report, left_out = result.collection, result.report, result.left_out
    if args.detect and not args.quiet:
        found = result.detected
        print(f"detect: {found['panel']} panels, {found['body']} bodies, {found['face']} faces, "
              f"{found['text']} text balloons; {found['skipped_pages']} unreadable pages skipped")
    if args.ocr and not args.quiet:
        ocr = result.ocr
        print(f"ocr: {ocr['pages']} pages read, {ocr['blocks']} text blocks, {ocr['assigned']} assigned")
    if not args.quiet:
        print(printable(f"{collection.root}: {report.summary()}"))
        if result.ray:
            print(f"  ray: {result.ray['pages_cut']} pages cut on the cluster, {result.ray['pages_resumed']} "
                  "resumed from an interrupted run")
        if left_out:
            print(f"  the importer left out {len(left_out)} source entries:")
            for entry in left_out[:20]:
                print(printable(f"    {entry}"))
        for row, reason in report.skipped[:20]:
            print(printable(f"  skipped row {row}: {reason}"))
        if len(report.skipped) > 20:
            print(f"  ... and {len(report.skipped) - 20} more skipped rows")
        if report.removed:
            print(f"  removed {len(report.removed)} parts that the source no longer has:")
            for entry in report.removed[:20]:
                print(printable(f"    {entry}"))
    return 0
