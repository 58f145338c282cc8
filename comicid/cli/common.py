"""Options shared by several commands, declared once."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "default"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|CKPT",
                        help="registry name (see `comicid embed --list-models`) or checkpoint file; "
                             "default: the shipped model")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"),
                        help="auto: the model's int8 graph on the CPU when it has one (the shipped model "
                             "does; see `comicid quantize`), else fp32 (default: auto)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="crops per batch (default: 64)")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    from comicid.identity import CLUSTERERS, SCOPES

    parser.add_argument("--method", default="auto", choices=[*sorted(CLUSTERERS), "auto"],
                        help="clustering method; auto: agglomerative up to 5,000 instances per scope, graph "
                             "beyond (default: auto)")
    parser.add_argument("--scope", default="book", choices=SCOPES,
                        help="cluster each sequence, page, book, or the whole collection (default: book)")
    parser.add_argument("--threshold", default="auto", metavar="auto|FLOAT",
                        help="distance threshold; auto = calibrated on split=dev rows, else the documented "
                             "default (default: auto)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
