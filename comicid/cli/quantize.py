"""Make the int8 CPU graph of a model checkpoint (about 2.3x faster embedding on CPU, end to end).

Crops of the calibration manifests set the activation ranges, so give crops like the ones the model
will embed (a few hundred suffice). The graph is written beside the checkpoint (MODEL.int8.onnx),
where `--precision auto` (the default of every command) picks it up on the CPU; the cosine of its
features to the fp32 model's, on rows not used for calibration, is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comicid.cli.common import output_file, positive_int
from comicid.errors import ConfigError, ModelError
from comicid.models.embedding_model import DEFAULT_MODEL, DEFAULT_MODEL_PATH
from comicid.models.quantize import quantize_checkpoint

#: Below this mean cosine to fp32 the graph is written but flagged: rankings may change noticeably.
LOW_COSINE = 0.97


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CKPT", help="a comicid checkpoint (or 'default', the shipped model)")
    parser.add_argument("--calibration", nargs="+", required=True, type=Path, metavar="MANIFEST",
                        help="manifest(s) whose crops calibrate the graph")
    parser.add_argument("--crops", type=positive_int, default=512, help="calibration crops (default: 512)")
    parser.add_argument("--check", type=int, default=128,
                        help="other crops on which int8 is compared with fp32 (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="which rows are drawn (default: 0)")
    parser.add_argument("--out", type=Path, help="where the graph goes (default: beside the checkpoint)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing graph (the shipped model's included) without the minimum "
                             "crop counts and cosine check; the old graph is kept as .bak")


def run(args: argparse.Namespace) -> int:
    checkpoint = DEFAULT_MODEL_PATH if args.model == DEFAULT_MODEL else Path(args.model)
    if not checkpoint.is_file():
        raise ModelError(f"checkpoint '{checkpoint}' not found (registry backbones have no checkpoint to quantise; "
                         "save one with `comicid train` first)")
    if args.model == DEFAULT_MODEL and args.out is None and not args.force:
        raise ConfigError(f"`quantize default` would replace the shipped graph beside '{checkpoint}'; write it "
                          "elsewhere with --out FILE, or pass --force (the shipped graph is kept as .bak)")
    if args.out is not None:
        output_file(args.out, "--out")
    report = quantize_checkpoint(checkpoint, args.calibration, args.out, n_crops=args.crops,
                                 n_check=max(args.check, 0), seed=args.seed, progress=not args.quiet,
                                 force=args.force)
    if not args.quiet:
        print(f"{report.path}: int8 graph calibrated on {report.calibration_crops} crops")
        if report.check_crops:
            print(f"  cosine to fp32 on {report.check_crops} other crops: mean {report.mean_cosine:.4f}, "
                  f"min {report.min_cosine:.4f}")
    if report.check_crops and report.mean_cosine < LOW_COSINE:
        print(f"warning: mean cosine {report.mean_cosine:.3f} < {LOW_COSINE}: compare both precisions with "
              "`comicid evaluate --precision int8|fp32` before relying on it")
    return 0
