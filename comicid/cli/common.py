"""Options shared by several commands, declared once."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from comicid.errors import ConfigError

from comicid.identity import CLUSTERERS, SCOPES

DEFAULT_MODEL = "default"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CKPT",
                        help="registry name (see `comicid embed --list-models`) or checkpoint file; "
                             "A,B or A=0.7,B=0.3 or ensemble.yaml: an ensemble (docs/SEARCH.md); "
                             "default: the shipped model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"),
                        help="auto: the model's int8 graph on the CPU when it has one (the shipped model "
                             "does; see `comicid quantize`), else fp32 (default: auto)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="crops per batch (default: 64)")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="auto", choices=[*sorted(CLUSTERERS), "auto"],
                        help="clustering method; auto: agglomerative up to 5,000 instances per scope, graph "
                             "beyond (default: auto)")
    parser.add_argument("--scope", default="book", choices=SCOPES,
                        help="cluster each sequence, page, book, or the whole collection (default: book)")
    parser.add_argument("--threshold", default="auto", metavar="auto|FLOAT",
                        help="distance threshold; auto = calibrated on split=dev rows, else the documented "
                             "default (default: auto)")


def add_rerank_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rerank", action="store_true",
                        help="k-reciprocal re-ranking (Zhong et al. 2017; k1 20, k2 6, lambda 0.3) of the results")
    parser.add_argument("--aqe", type=non_negative_int, default=0, metavar="K",
                        help="average query expansion with the K nearest instances (default: 0, off)")


def non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# C0 and C1 control characters (ESC starts ANSI sequences that recolour, move or retitle a terminal).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object, keep_newlines: bool = False) -> str:
    """``text`` safe for a terminal: control characters (ANSI escapes in a manifest's names, a carriage
    return that hides a line) are shown as ``\\xNN`` instead of being obeyed."""
    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return char if keep_newlines and char == "\n" else f"\\x{ord(char):02x}"

    return _CONTROL.sub(escape, str(text))


def output_file(path: Path, option: str) -> Path:
    """Check that ``path`` can be written as a file before any work is done.

    Raises:
        ConfigError: ``path`` is a folder, or its parent is a file.
    """
    if path.is_dir():
        raise ConfigError(f"{option} '{path}' is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} '{path}': '{parent}' is a file, not a folder")
    return path
