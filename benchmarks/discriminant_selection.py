"""How the discriminant head's settings were chosen: on held-out dev identities only.

    PYTHONPATH=. python benchmarks/discriminant_selection.py [--model PATH] [--no-write]

``--model`` is the stage-2 model the head extends (default: ``out/train_default/stage2.pt``, which
``benchmarks/train_default.py`` writes). For every set of ``benchmarks/sets.py`` but DiceBear (left
out of stage 3 for its licence), the ``split=dev`` identities are halved by a hash of their name:
the discriminant is fitted on half A of every set together, and scored on half B: mean rank-1 and
mAP over the sets, and the cast size without labels (the label-free threshold measured on half A as
``comicid.workflows.label_free`` does, then half B clustered at it: sets whose predicted/true
clusters fall within 0.8-1.25, and mean AMI). No ``split=test`` row is read. Writes the
``discriminant_selection`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import ROOT, markdown_table, write_section
from sets import all_sets, part_data

import comicid
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.models.embed import sum_parts
from comicid.runtime import tune_allocator
from comicid.store.embeddings import InstanceEmbeddings
from comicid.training.discriminant import extend_head, fit_discriminant
from comicid.workflows.cluster import assign_identities
from comicid.workflows.evaluate import retrieval_scores
from comicid.workflows.label_free import fit_label_free_threshold

SKIP = ("dicebear",)
GRID = [(None, None, None)] + [(dims, shrinkage, weight) for dims in (128, 256) for shrinkage in (0.1, 0.3, 0.6)
                               for weight in (0.5, 1.0, 2.0)]


def half(identities: np.ndarray) -> np.ndarray:
    """0 (fit) or 1 (score) per row, by a stable hash of the identity name."""
    return np.array([zlib.crc32(str(name).encode()) % 2 for name in identities])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "out" / "train_default" / "stage2.pt")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    model = comicid.load_model(args.model)
    data = []
    for set_name, manifest in all_sets():
        if any(skip in set_name for skip in SKIP):
            continue
        parts = part_data(set_name, manifest, model)
        table = parts.table.reset_index(drop=True)
        weights = model.part_weight_array(parts.kinds)
        inputs = sum_parts(parts.features, parts.instance_index, len(table), weights)
        dev = (table["split"] == "dev").to_numpy() & (table["identity"] != "").to_numpy()
        side = half(table["identity"].to_numpy())
        data.append((set_name, table, inputs, dev & (side == 0), dev & (side == 1)))
    fit_rows = np.concatenate([inputs[a] for _, _, inputs, a, _ in data])
    labels = np.concatenate([[f"{name}|{i}" for i in table["identity"][a]] for name, table, _, a, _ in data])
    rows = []
    for dims, shrinkage, weight in GRID:
        head = model.head.to("cpu").eval()
        if dims is not None:
            fit = fit_discriminant(fit_rows, labels, dims, shrinkage)
            head = extend_head(model.head, fit_rows.shape[1], fit, fit_rows, weight)
        embedded_a, scores = [], []
        for name, table, inputs, a, b in data:
            with torch.no_grad():
                vectors = head(torch.from_numpy(inputs)).numpy()
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            part_a = InstanceEmbeddings(table[a].reset_index(drop=True).assign(set=name), vectors[a], "candidate")
            embedded_a.append(part_a)
            scores.append((table[b].reset_index(drop=True), vectors[b]))
        together = InstanceEmbeddings(pd.concat([e.table for e in embedded_a], ignore_index=True),
                                      np.concatenate([e.vectors for e in embedded_a]), "candidate")
        threshold = fit_label_free_threshold(together).threshold
        r1, maps, amis, inside = [], [], [], 0
        for table_b, vectors_b in scores:
            evaluated = InstanceEmbeddings(table_b.assign(split=""), vectors_b, "candidate")
            retrieval = retrieval_scores(evaluated)
            r1.append(retrieval["rank1"])
            maps.append(retrieval["mAP"])
            assignment = assign_identities(evaluated, threshold=threshold, progress=False)
            predicted = assignment.table["identity_id"].to_numpy(dtype=object)
            clustering = clustering_metrics_by_group(table_b["identity"].to_numpy(),
                                                     np.where(predicted == "", -1, predicted), table_b["book"].to_numpy())
            amis.append(clustering["ami"])
            inside += 0.8 <= clustering["pred_clusters"] / clustering["true_clusters"] <= 1.25
        label = "stage-2 head only" if dims is None else f"+ discriminant {dims}-d, shrinkage {shrinkage}, weight {weight}"
        rows.append([label, np.mean(r1), np.mean(maps), np.mean(amis), f"{inside}/{len(scores)}", f"{threshold:.2f}"])
        print(rows[-1], flush=True)
    body = ("## Discriminant head: settings chosen on held-out dev identities\n\n"
            f"`PYTHONPATH=. python benchmarks/discriminant_selection.py` (model `{model.model_id}`): fitted on half "
            "of every set's dev identities, scored on the other half (no test row read); DiceBear left out. "
            "Means over the sets; cast size without labels at the label-free threshold measured on the fitted half.\n\n"
            + markdown_table(["head", "rank-1", "mAP", "AMI (no labels)", "sets within 0.8-1.25", "label-free threshold"],
                             rows) + "\n")
    print(body)
    if not args.no_write:
        write_section("discriminant_selection", body)


if __name__ == "__main__":
    main()
