"""Draw synthetic comic books with recurring characters and write their manifest.

Writes OUT/pages/<book>/<page>.png and OUT/manifest.csv (manifest v1: face and body boxes, instances,
panels, sequences of four panels, balloon text, dev/test split by identity). Characters keep their
identity (hair, face, accessories, shirt pattern, build) across panels drawn in colour, grayscale,
halftone and line art. The same arguments always give the same files. See docs/SYNTH.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from comicid.data.synth import SPEECH_MODES, generate_books


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", type=Path, help="output folder (created if missing)")
    parser.add_argument("--books", type=int, default=2, help="number of books (default: 2)")
    parser.add_argument("--characters", type=int, default=8, help="identities per book, at least 2 (default: 8)")
    parser.add_argument("--pages", type=int, default=4, help="pages per book (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: 0)")
    parser.add_argument("--speech", default="catchphrase", choices=SPEECH_MODES,
                        help="what balloons say: catchphrase (the original books) or manga (book worlds, "
                             "character voices, narration; see docs/SYNTH.md) (default: catchphrase)")


def run(args: argparse.Namespace) -> int:
    quiet = bool(getattr(args, "quiet", False))
    path = generate_books(args.out, books=args.books, characters=args.characters, pages=args.pages,
                          seed=args.seed, progress=not quiet, speech=args.speech)
    if not quiet:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        kinds = frame["kind"].value_counts()
        instances = frame[["book", "instance"]].drop_duplicates()
        print(f"{path}: {args.books} books x {args.pages} pages, {frame['identity'].nunique()} identities, "
              f"{frame['panel'].str.cat(frame['book']).nunique()} panels, {len(instances)} instances "
              f"({kinds.get('face', 0)} faces, {kinds.get('body', 0)} bodies)")
    return 0
