"""Write a self-contained HTML report of a collection (pages, identity galleries, mistakes, metrics).

Per book: pages with boxes coloured by predicted identity (labelled with its id) and a gallery of crops
per predicted identity, largest first. When instances are labelled, a mistake (a label that differs from
the majority label of its predicted identity) is outlined in dashed red and marked with a cross. The
metrics of the last `comicid evaluate` are tabulated. Images are embedded, so the one file can be
moved or mailed; pages and gallery sizes are capped to keep it a few MB (each cut is noted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import output_file

from comicid.report import ReportOptions, write_report
from comicid.store.collection import Collection

_DEFAULTS = ReportOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path, help="collection folder")
    parser.add_argument("--out", type=Path, metavar="PATH", default=None,
                        help="HTML file to write (default: COLLECTION/report.html)")
    parser.add_argument("--max-pages-per-book", type=int, default=_DEFAULTS.max_pages_per_book, metavar="N",
                        help=f"pages shown per book, in reading order (default: {_DEFAULTS.max_pages_per_book})")
    parser.add_argument("--max-per-identity", type=int, default=_DEFAULTS.max_per_identity, metavar="N",
                        help="crops shown per identity gallery, mistakes first "
                             f"(default: {_DEFAULTS.max_per_identity})")


def run(args: argparse.Namespace) -> int:
    options = ReportOptions(max_pages_per_book=args.max_pages_per_book, max_per_identity=args.max_per_identity)
    quiet = getattr(args, "quiet", False)
    if args.out is not None:
        output_file(args.out, "--out")
    path = write_report(Collection.open(args.collection), args.out, options, progress=not quiet)
    if quiet:
        print(path)
    else:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
