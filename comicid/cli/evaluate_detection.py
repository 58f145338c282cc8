"""Score page detections with COCO metrics: mAP@[.5:.95] and AP@0.5 overall and per class (pycocotools).

PRED is a detector checkpoint (.pt, run on GT's pages), a box table (CSV/Parquet with image, kind,
x0, y0, x1, y1, score) or COCO results JSON; GT is a synth folder's manifest.csv (with page_boxes.csv
beside it), a box table or COCO JSON. Classes: panel, body, face, text. See docs/DETECTION.md.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from comicid.atomic import atomic_write_text
from comicid.data.detection import DETECTION_KINDS
from comicid.workflows.detection_eval import evaluate_detection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", metavar="PRED", type=Path, help="detector .pt, box table or COCO results")
    parser.add_argument("truth", metavar="GT", type=Path, help="synth manifest.csv, box table or COCO JSON")
    parser.add_argument("--device", default="cpu", help="with a detector PRED: cpu (default), cuda or auto")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the metrics as JSON")


def _cell(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    quiet = bool(getattr(args, "quiet", False))
    metrics = evaluate_detection(args.predictions, args.truth, device=args.device, progress=not quiet)
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=1, allow_nan=True))
    if not quiet:
        print(f"mAP@[.5:.95] {_cell(metrics['mAP'])}  AP@0.5 {_cell(metrics['AP50'])}  AP@0.75 {_cell(metrics['AP75'])}")
        for kind in DETECTION_KINDS:
            if f"AP50/{kind}" in metrics:
                print(f"  {kind:<6} AP@0.5 {_cell(metrics[f'AP50/{kind}'])}  mAP {_cell(metrics[f'mAP/{kind}'])}")
    return 0
