"""Recover the stage-2 model the shipped default was built from, on a fresh clone, without retraining.

    PYTHONPATH=. python benchmarks/recover_stage2.py [--out out/train_default]

Why: the stage-3 selections (``tail_selection.py``, ``source_holdout.py``) and the label-free
re-measurement (``train_default.py --label-free-only``) start from stage 2's model, which is not shipped
(stages 1-2 take hours on 2 cores). The shipped weights cannot give it back either: stage 3 tunes the
trunk's last stages. The release *before* the tuned last stages can: its stage 3 only appended the
discriminant's rows below stage 2's head (``comicid.training.discriminant.extend_head``), so its first
``out_dim - dims`` head rows and its whole backbone are stage 2's model exactly. That release's weights
are in git (``RELEASE``); this script reads them with ``git show``, drops the discriminant rows, checks
the model id the benchmarks record (``EXPECTED_ID``) and writes ``OUT/stage2-recovered.pt``. It also
writes ``OUT/train_manifest.csv`` (``train_default.build_manifests``: fixed seeds), which the selections
read to score sprite sets only on identities stage 2 never saw.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from common import ROOT
from train_default import build_manifests

import comicid
from comicid.models.facebody import save_finetuned_model
from comicid.training.discriminant import DEFAULT_DIMS

#: The last commit whose shipped default is stage 2 + an appended discriminant (trunk not tuned).
RELEASE = "93484d5^"
WEIGHTS = "comicid/models/weights/default.pt"
#: The stage-2 model id every stage-3 section of docs/BENCHMARKS.md names.
EXPECTED_ID = "effnet-lite0-imagenet@866d9c59c0a8"


def recover(out: Path, release: str = RELEASE) -> Path:
    """Write ``out/stage2-recovered.pt`` from the weights of ``release``; return its path."""
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "default.pt"
        try:
            staged.write_bytes(subprocess.run(["git", "show", f"{release}:{WEIGHTS}"], cwd=ROOT, check=True,
                                              capture_output=True).stdout)
        except (OSError, subprocess.CalledProcessError) as error:
            raise SystemExit(f"error: cannot read {WEIGHTS} at {release} (a git clone with its history is needed): "
                             f"{error}") from error
        model = comicid.load_model(staged, precision="fp32")
    rows = model.head.out_features - DEFAULT_DIMS
    head = torch.nn.Linear(model.head.in_features, rows)
    with torch.no_grad():
        head.weight.copy_(model.head.weight[:rows])
        head.bias.copy_(model.head.bias[:rows])
    model.head, model.out_dim, model.model_id = head, rows, model.backbone.name
    out.mkdir(parents=True, exist_ok=True)
    path = save_finetuned_model(model, out / "stage2-recovered.pt", half=True)
    recovered_id = comicid.load_model(path, precision="fp32").model_id
    if recovered_id != EXPECTED_ID:
        print(f"warning: recovered {recovered_id}, the benchmarks' sections name {EXPECTED_ID}", file=sys.stderr)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "train_default")
    parser.add_argument("--release", default=RELEASE, help="git revision whose default.pt is stage 2 + discriminant")
    args = parser.parse_args()
    out = args.out.resolve()
    build_manifests(out, quick=False)
    path = recover(out, args.release)
    print(f"stage 2 recovered from {args.release}: {path} ({comicid.load_model(path, precision='fp32').model_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
