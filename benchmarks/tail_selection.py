"""Whether stage 3 tunes the trunk's last stages, and how: chosen on held-out dev identities only.

    PYTHONPATH=. python benchmarks/tail_selection.py [--model PATH] [--variants none shipped ...] [--no-write]

``--model`` is the stage-2 model stage 3 starts from (default: ``out/train_default/stage2.pt``;
``benchmarks/train_default.py --label-free-only`` recovers it from the shipped default as
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
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import ROOT, markdown_table, write_section
from sets import all_sets, part_data
from discriminant_selection import half
from label_free import fusion_weights

import comicid
from comicid.models.embed import embed_crops, sum_parts
from comicid.runtime import tune_allocator
from comicid.store.embeddings import InstanceEmbeddings
from comicid.training.discriminant import extend_head, fit_discriminant
from comicid.training.style_tail import TailConfig, tune_tail
from comicid.workflows.evaluate import retrieval_scores

NOT_FITTED = ("dicebear",)
STAGE2_SETS = ("tuxemon", "supertux")
VARIANTS: dict[str, TailConfig | None] = {
    "none": None,
    "shipped": TailConfig(),
    "shorter (300 steps)": replace(TailConfig(), steps=300),
    "stronger distillation (1.0), lr 1e-4, 300 steps": replace(TailConfig(), distillation=1.0, lr=1e-4, steps=300),
    "from stage 4": replace(TailConfig(), first_block=4),
    "batches of one set": replace(TailConfig(), batches="per_domain"),
}


def _score(sets: list[dict], vectors: dict[str, np.ndarray]) -> tuple[list[str], float, float]:
    cells, r1, maps = [], [], []
    for entry in sets:
        b = entry["b"]
        if entry["table"]["identity"][b].nunique() < 2:
            cells.append("-")
            continue
        unit = vectors[entry["name"]][b]
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        scored = InstanceEmbeddings(entry["table"][b].reset_index(drop=True).assign(split=""), unit.astype(np.float32),
                                    "candidate")
        result = retrieval_scores(scored)
        r1.append(result["rank1"])
        maps.append(result["mAP"])
        cells.append(f"{result['rank1']:.3f} / {result['mAP']:.3f}")
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
    model = comicid.load_model(args.model, precision="fp32")
    model.part_weights = fusion_weights()  # stage 3 fits and ships with these (benchmarks/train_default.py)
    train_manifest = args.train_manifest or args.model.parent / "train_manifest.csv"
    stage2_ids = set(pd.read_csv(train_manifest)["identity"].astype(str)) if train_manifest.is_file() else None
    if stage2_ids is None:
        print(f"warning: {train_manifest} not found; sprite sets are scored on every half-B identity")
    sets = []
    for name, manifest in all_sets():
        parts = part_data(name, manifest, model)
        table = parts.table.reset_index(drop=True)
        dev = (table["split"] == "dev").to_numpy() & (table["identity"] != "").to_numpy()
        side = half(table["identity"].to_numpy())
        b = dev & (side == 1)
        if stage2_ids is not None and name.startswith(STAGE2_SETS):
            b &= ~table["identity"].astype(str).isin(stage2_ids).to_numpy()
        sets.append({"name": name, "table": table, "parts": parts, "a": dev & (side == 0), "b": b,
                     "crops": parts.crop_paths,
                     "fitted": not any(skip in name for skip in NOT_FITTED)})
    fitted = [entry for entry in sets if entry["fitted"]]
    rows, summary = [], []
    for variant in args.variants:
        config, started = VARIANTS[variant], time.time()
        tuned = copy.deepcopy(model)
        if config is not None:
            crops, labels, domains = [], [], []
            for entry in fitted:
                chosen = entry["a"][entry["parts"].instance_index]
                crops += [crop for crop, keep in zip(entry["crops"], chosen, strict=True) if keep]
                ids = entry["table"]["identity"].astype(str).to_numpy()[entry["parts"].instance_index]
                labels += [f"{entry['name']}|{i}" for i in ids[chosen]]
                domains += [entry["name"]] * int(chosen.sum())
            tune_tail(tuned, crops, labels, config, progress=True, domains=domains)
        inputs = {}
        for entry in sets:
            parts = entry["parts"]
            features = parts.features.copy()
            dev_parts = np.flatnonzero((entry["a"] | entry["b"])[parts.instance_index])
            if config is not None:
                features[dev_parts] = embed_crops([entry["crops"][i] for i in dev_parts], tuned, progress=False)
            inputs[entry["name"]] = sum_parts(features, parts.instance_index, len(entry["table"]),
                                              tuned.part_weight_array(parts.kinds))
        fit_rows = np.concatenate([inputs[e["name"]][e["a"]] for e in fitted])
        labels = np.concatenate([[f"{e['name']}|{i}" for i in e["table"]["identity"][e["a"]]] for e in fitted])
        fit = fit_discriminant(fit_rows, labels)
        head = extend_head(tuned.head, fit_rows.shape[1], fit, fit_rows).eval()
        backbone_dim = tuned.backbone.feature_dim
        with torch.no_grad():
            stage3 = {name: head(torch.from_numpy(x).float()).numpy() for name, x in inputs.items()}
        raw = {name: x[:, :backbone_dim] for name, x in inputs.items()}
        minutes = (time.time() - started) / 60
        for what, vectors in (("backbone features", raw), ("stage-3 embedding", stage3)):
            cells, r1, mean_ap = _score(sets, vectors)
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
