"""Whether stage 3 tunes the trunk's last stages, and how: chosen on held-out dev identities only.

    PYTHONPATH=. python benchmarks/tail_selection.py [--model PATH] [--variants none shipped ...] [--no-write]

``--model`` is the stage-2 model stage 3 starts from (default: ``out/train_default/stage2.pt``;
``benchmarks/recover_stage2.py`` recovers it from the last release whose trunk stage 3 did not tune, as
``OUT/stage2-recovered.pt``). The ``split=dev`` identities of every set of ``benchmarks/sets.py`` are
halved by a hash of their name (the halves of ``discriminant_selection.py``). For each variant, a copy
of the model is tuned (``comicid.training.style_tail``) on the crops of half A of every set but
DiceBear (kept out of shipped weights for its licence), the discriminant head is fitted on half A with
the shipped settings, and half B is scored: rank-1 / mAP of the backbone features alone and of the
whole stage-3 embedding, per set and on average. On the three sprite sets stage 2 was trained on,
half B is cut to the identities stage 2 never saw (``OUT/train_manifest.csv`` names them), so no
variant is scored on what it fitted. No ``split=test`` row is read. Writes the ``tail_selection``
section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common import ROOT, markdown_table, write_section
from stage3_halves import head_inputs, load_sets, score, stage2_model, stage3, tuned_copy

from comicid.runtime import tune_allocator
from comicid.training.style_tail import TailConfig

VARIANTS: dict[str, TailConfig | None] = {
    "none": None,
    "shipped": TailConfig(),
    "shorter (300 steps)": replace(TailConfig(), steps=300),
    "stronger distillation (1.0), lr 1e-4, 300 steps": replace(TailConfig(), distillation=1.0, lr=1e-4, steps=300),
    "from stage 4": replace(TailConfig(), first_block=4),
    "batches of one set": replace(TailConfig(), batches="per_domain"),
}


def _cells(sets: list[dict], vectors: dict[str, np.ndarray]) -> tuple[list[str], float, float]:
    """Per-set ``rank-1 / mAP`` cells and the means over the sets that can be scored."""
    cells, r1, maps = [], [], []
    for entry in sets:
        result = score(entry, vectors[entry["name"]])
        if result is None:
            cells.append("-")
            continue
        r1.append(result[0])
        maps.append(result[1])
        cells.append(f"{result[0]:.3f} / {result[1]:.3f}")
    return cells, float(np.mean(r1)), float(np.mean(maps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "out" / "train_default" / "stage2.pt")
    parser.add_argument("--train-manifest", type=Path, default=None,
                        help="stage 2's training manifest (default: train_manifest.csv beside --model)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    model = stage2_model(args.model)
    sets = load_sets(model, args.train_manifest or args.model.parent / "train_manifest.csv")
    fitted = [entry for entry in sets if entry["fitted"]]
    rows, summary = [], []
    for variant in args.variants:
        config, started = VARIANTS[variant], time.time()
        tuned = model if config is None else tuned_copy(model, fitted, config)
        inputs = {entry["name"]: head_inputs(model, entry, None if config is None else tuned) for entry in sets}
        stage3_vectors = stage3(tuned.head, sets, fitted, inputs)
        raw = {name: x[:, :tuned.backbone.feature_dim] for name, x in inputs.items()}
        minutes = (time.time() - started) / 60
        for what, vectors in (("backbone features", raw), ("stage-3 embedding", stage3_vectors)):
            cells, r1, mean_ap = _cells(sets, vectors)
            rows.append([variant, what, f"{r1:.3f} / {mean_ap:.3f}", *cells])
            print(rows[-1], flush=True)
        summary.append(f"{variant}: {minutes:.1f} min")
    header = ["tail", "features", "mean rank-1 / mAP", *[entry["name"] for entry in sets]]
    halves = ", ".join(f"{e['name']} {int(e['a'].sum())}/{int(e['b'].sum())}" for e in sets)
    body = ("## Tuning the trunk's last stages: chosen on held-out dev identities\n\n"
            f"`PYTHONPATH=. python benchmarks/tail_selection.py --model {args.model.name} --variants "
            f"{' '.join(repr(v) if ' ' in v else v for v in args.variants)}` (stage-2 model `{model.model_id}`, fp32): "
            "each variant tunes a copy on half A of every set's dev identities (DiceBear never), fits the "
            "discriminant (shipped settings) on half A, and scores half B (rank-1 / mAP); sprite sets only on "
            "identities stage 2 never saw. No test row read. Instances half A / half B scored: " + halves + ".\n\n"
            + markdown_table(header, rows) + "\n\nTime per variant (tuning + embedding, 2 CPU cores): "
            + "; ".join(summary) + ".\n")
    print(body)
    if not args.no_write:
        write_section("tail_selection", body)


if __name__ == "__main__":
    main()
