"""Draw synthetic comic books with recurring characters and write their manifest.

Writes OUT/pages/<book>/<page>.png and OUT/manifest.csv (manifest v1: face and body boxes, instances,
panels, sequences of four panels, balloon text, dev/test split by identity). Characters keep their
identity (hair, face, accessories, shirt pattern, build) across panels drawn in colour, grayscale,
halftone and line art. The same arguments always give the same files. See docs/SYNTH.md.

With --characters MANIFEST the characters are real drawings: crops of that manifest composed into the
same kind of panels (face and body boxes where the manifest has both, its identities and splits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from comicid.data.synth import SPEECH_MODES, generate_books
from comicid.data.synth.real_art import DEFAULT_CAST, generate_art_books
from comicid.data.synth.styles import STYLES
from comicid.errors import ConfigError


def _characters(value: str) -> int | Path:
    """A whole number is a cast size (procedural books); anything else is a character manifest."""
    return int(value) if value.strip().lstrip("-").isdigit() else Path(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", type=Path, help="output folder (created if missing)")
    parser.add_argument("--books", type=int, default=2, help="number of books (default: 2)")
    parser.add_argument("--characters", type=_characters, default=8, metavar="K|MANIFEST",
                        help="identities per book, at least 2 (default: 8); or a manifest of character drawings "
                             "to compose pages from (write ./8 for a file named 8)")
    parser.add_argument("--pages", type=int, default=4, help="pages per book (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: 0)")
    parser.add_argument("--cast", type=int, default=None,
                        help=f"with --characters MANIFEST: identities per book (default: {DEFAULT_CAST})")
    parser.add_argument("--styles", default=None,
                        help=f"with --characters MANIFEST: comma-separated panel styles (default: {','.join(STYLES)})")
    parser.add_argument("--speech", default="catchphrase", choices=SPEECH_MODES,
                        help="what balloons say: catchphrase (the original books) or manga (book worlds, "
                             "character voices, narration; see docs/SYNTH.md) (default: catchphrase)")


def run(args: argparse.Namespace) -> int:
    quiet = bool(getattr(args, "quiet", False))
    if isinstance(args.characters, Path):
        if args.speech != "catchphrase":
            raise ConfigError("--speech applies to procedural books only (--characters K)")
        styles = tuple(s.strip() for s in args.styles.split(",")) if args.styles else STYLES
        path = generate_art_books(args.out, args.characters, books=args.books,
                                  cast=DEFAULT_CAST if args.cast is None else args.cast, pages=args.pages,
                                  seed=args.seed, styles=styles, progress=not quiet)
    else:
        if args.cast is not None or args.styles is not None:
            raise ConfigError("--cast and --styles apply to composed pages only (--characters MANIFEST)")
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
