"""Export the corrected collection: roster (JSON/CSV), labels (manifest v1), COCO, Manga109 XML, edit log.

Everything reflects the last clustering with every edit applied. `labels` is a manifest v1 that
`comicid import` reads back; `manga109` writes one XML file per book into the folder given by --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.report.exports import FORMATS, export
from comicid.store.collection import Collection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("collection", metavar="COLLECTION", type=Path)
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--out", required=True, type=Path, help="output file (a folder for manga109)")


def run(args: argparse.Namespace) -> int:
    written = export(Collection.open(args.collection), args.format, args.out)
    if not args.quiet:
        for path in written:
            print(path)
    return 0
