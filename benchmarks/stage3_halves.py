"""The dev halves both stage-3 selections score on: sets, halves, tuning, discriminant, scores.

Shared by ``tail_selection.py`` (which tuning, every source seen) and ``source_holdout.py`` (the shipped
tuning with one source left out). The ``split=dev`` identities of every set of ``sets.py`` are halved
by a hash of their name (the halves of ``discriminant_selection.py``): half A is fitted, half B scored.
On the sprite sets stage 2 was trained on, half B is cut to the identities stage 2 never saw, so no
variant is scored on what it fitted. No ``split=test`` row is read.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import normalize
from torch import nn

from discriminant_selection import half
from label_free import fusion_weights
from sets import all_sets, part_data

import comicid
from comicid.models.embedding_model import EmbeddingModel

from comicid.models.embed import embed_crops, sum_parts
from comicid.store.embeddings import InstanceEmbeddings
from comicid.training.discriminant import extend_head, fit_discriminant
from comicid.training.style_tail import TailConfig, tune_tail
from comicid.workflows.evaluate import retrieval_scores

#: Never fitted (DiceBear: its licence keeps it out of shipped weights); scored only.
NOT_FITTED = ("dicebear",)
#: Sets stage 2 was trained on (part of their identities: ``train_manifest.csv`` beside the stage-2 model).
STAGE2_SETS = ("tuxemon", "supertux")


def stage2_model(path: Path) -> EmbeddingModel:
    """The stage-2 model stage 3 starts from, fp32, with the part weights stage 3 fits and ships with
    (``benchmarks/train_default.py``)."""
    model = comicid.load_model(path, precision="fp32")
    model.part_weights = fusion_weights()
    return model


def source_of(name: str) -> str:
    """The source a set's drawings come from: sets sharing drawings share a source."""
    lowered = name.lower()
    return "comicgen" if "comicgen" in lowered else lowered.split()[0]


def score(entry: dict, vectors: np.ndarray) -> tuple[float, float] | None:
    """Rank-1 and mAP of ``vectors`` over the half-B rows of one set (None: under two identities)."""
    b = entry["b"]
    if entry["table"]["identity"][b].nunique() < 2:
        return None
    scored = InstanceEmbeddings(entry["table"][b].reset_index(drop=True).assign(split=""),
                                normalize(vectors[b]).astype(np.float32), "candidate")
    result = retrieval_scores(scored)
    return float(result["rank1"]), float(result["mAP"])


def load_sets(model, stage2_manifest: Path) -> list[dict]:
    """Every set embedded by ``model`` with its halves (as ``tail_selection.py`` builds them)."""
    stage2_ids = set(pd.read_csv(stage2_manifest)["identity"].astype(str)) if stage2_manifest.is_file() else None
    if stage2_ids is None:
        print(f"warning: {stage2_manifest} not found; sprite sets are scored on every half-B identity")
    sets = []
    for name, manifest in all_sets():
        parts = part_data(name, manifest, model)
        table = parts.table.reset_index(drop=True)
        dev = (table["split"] == "dev").to_numpy() & (table["identity"] != "").to_numpy()
        side = half(table["identity"].to_numpy())
        b = dev & (side == 1)
        if stage2_ids is not None and name.startswith(STAGE2_SETS):
            b &= ~table["identity"].astype(str).isin(stage2_ids).to_numpy()
        sets.append({"name": name, "source": source_of(name), "table": table, "parts": parts,
                     "a": dev & (side == 0), "b": b, "fitted": not any(skip in name for skip in NOT_FITTED)})
    return sets


def head_inputs(model, entry: dict, tuned=None) -> np.ndarray:
    """The head inputs (fused parts) of a set's instances; dev parts re-embedded by ``tuned`` if given."""
    parts = entry["parts"]
    features = parts.features.copy()
    if tuned is not None:
        dev_parts = np.flatnonzero((entry["a"] | entry["b"])[parts.instance_index])
        features[dev_parts] = embed_crops([parts.crop_paths[i] for i in dev_parts], tuned, progress=False)
    return sum_parts(features, parts.instance_index, len(entry["table"]), model.part_weight_array(parts.kinds))


def stage3(head: nn.Module, sets: list[dict], fit_sets: list[dict],
           inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stage-3 embedding of every set: ``head`` extended by a discriminant (shipped settings) fitted
    on half A of ``fit_sets``."""
    fit_rows = np.concatenate([inputs[e["name"]][e["a"]] for e in fit_sets])
    labels = np.concatenate([[f"{e['name']}|{i}" for i in e["table"]["identity"][e["a"]]] for e in fit_sets])
    head = extend_head(head, fit_rows.shape[1], fit_discriminant(fit_rows, labels), fit_rows).eval()
    with torch.no_grad():
        return {e["name"]: head(torch.from_numpy(inputs[e["name"]]).float()).numpy() for e in sets}


def tuned_copy(model, fit_sets: list[dict], config: TailConfig | None = None):
    """A copy of ``model`` whose last stages are tuned on half A of ``fit_sets`` (default: shipped settings)."""
    tuned = copy.deepcopy(model)
    crops, labels, domains = [], [], []
    for entry in fit_sets:
        parts = entry["parts"]
        chosen = entry["a"][parts.instance_index]
        crops += [crop for crop, keep in zip(parts.crop_paths, chosen, strict=True) if keep]
        ids = entry["table"]["identity"].astype(str).to_numpy()[parts.instance_index]
        labels += [f"{entry['name']}|{i}" for i in ids[chosen]]
        domains += [entry["name"]] * int(chosen.sum())
    tune_tail(tuned, crops, labels, config or TailConfig(), progress=True, domains=domains)
    return tuned
