"""Ensembles with and without a BoT model: weights chosen on held-out dev identities, scored on test.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/ensemble.py \
        [--out out/bench_bot] [--models-from out/bench_bot] [--variants base cross mdl adam]

Candidates: the BoT models ``benchmarks/bot.py`` trained (``--models-from/<variant>/model.pt``), the
shipped ``default`` and ``effnet-lite0-imagenet``, all fp32 as bot.py scores them. ``pseudo`` is
not a candidate: it was re-trained on pseudo-labels of the very rows used here to choose weights.

1. **Weights on dev.** For each BoT variant, every ``(w_bot, w_default, w_imagenet)`` on the simplex
   grid of step 0.1 (66 points; ``w_bot = 0`` is the ensemble without BoT) is scored by the mean
   MAP@R over sets on **held-out dev rows**: ``split=dev`` rows of identities no candidate trained
   on, i.e. bot.py's unlabelled fifth and validation fifth, and on the sprite sets the default
   model was fine-tuned on (``benchmarks/train_default.py``) only its validation third. Rows a model
   trained on would favour that model. The best point with ``w_bot > 0`` over all variants is *the
   best ensemble with BoT*; the best with ``w_bot = 0`` is *the best without BoT*.
2. **Test.** Those two, their members alone and ``retrieval_dev.py``'s earlier choice (default 0.7 +
   ImageNet 0.3, chosen on all dev rows) are scored on the ``split=test`` rows of every development
   manifest by bot.py's scoring (``evaluate_manifest``: rank-1, mAP, mINP, clustering AMI with
   predicted/true counts), without and with k-reciprocal re-ranking.

Features come from bot.py's collections (``--out/eval``), so a model bot.py already scored is not
embedded again; scores are cached in ``--out/log``. Writes the ``ensemble`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bot import NOT_TRAINED, VAL_SHARE, Record, all_sets, eval_workdir, score
from common import ROOT, DevSet, markdown_table, write_section
from train_default import TRAIN_SETS
from train_default import _held_out as default_validation

from comicid.data.manifest import instance_keys, read_manifest
from comicid.models.embedding_model import load_embedding_model
from comicid.models.ensemble import combine_embeddings
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.store.ingest import ingest
from comicid.training.bot import _held_out as bot_validation
from comicid.workflows.embed import embed_collection
from comicid.workflows.evaluate import retrieval_scores

CANDIDATE_VARIANTS = ("base", "cross", "mdl", "adam")
BASELINES = ("default", "effnet-lite0-imagenet")
#: retrieval_dev.py's earlier choice (weight of default against ImageNet, on all dev rows).
EARLIER = {"default": 0.7, "effnet-lite0-imagenet": 0.3}
STEP = 0.1
WITH, WITHOUT = "best with BoT (held-out dev)", "best without BoT (held-out dev)"


def simplex(step: float = STEP) -> list[tuple[float, float, float]]:
    """``(w_bot, w_default, w_imagenet)`` with each weight a multiple of ``step`` and the three summing to 1."""
    n = round(1 / step)
    return [(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)]


def bot_trained_labels(train_csv: Path) -> set[str]:
    """``book\\x1fidentity`` labels bot.py's runs trained on (``train.csv`` less the validation fifth)."""
    frame = read_manifest(train_csv, check_files=False, allow_outside=True)
    labels = frame["book"] + "\x1f" + frame["identity"]
    return {label for label in labels if not bot_validation(label, VAL_SHARE)}


def held_out_dev(table: pd.DataFrame, dev_set: DevSet, bot_trained: set[str]) -> np.ndarray:
    """Mask of ``split=dev`` rows whose identity neither the BoT runs nor the default model trained on."""
    dev = (table["split"] == "dev").to_numpy() & (table["identity"] != "").to_numpy()
    # bot.py prefixed books with the set name; comicgen's two derived sets are figures' drawings
    prefix = "comicgen figures" if dev_set.name in NOT_TRAINED else dev_set.name
    labels = f"{prefix}:" + table["book"] + "\x1f" + table["identity"]
    keep = dev & ~labels.isin(bot_trained).to_numpy()
    if dev_set.name in {s.name for s in TRAIN_SETS}:
        keep &= table["identity"].map(default_validation).to_numpy(dtype=bool)
    return keep


def embedded_sets(out: Path, sets: list[DevSet], models: dict[str, str]) -> dict[str, dict[str, InstanceEmbeddings]]:
    """``{set: {candidate: instance embeddings of the manifest's instances}}`` from bot.py's collections."""
    loaded = {name: load_embedding_model(path, precision="fp32") for name, path in models.items()}
    found: dict[str, dict[str, InstanceEmbeddings]] = {}
    for dev_set in sets:
        collection = Collection.create(eval_workdir(out, dev_set))
        frame = read_manifest(dev_set.manifest)
        # as evaluate_manifest does: rows already in the collection are kept, their crops and features reused
        ingest(frame, collection, progress=False, source=str(Path(dev_set.manifest).resolve()))
        keys = set(instance_keys(frame))
        by_model = {}
        for name, model in loaded.items():
            everything = embed_collection(collection, model, progress=False)
            by_model[name] = everything.subset(everything.table["instance_key"].isin(keys).to_numpy())
        found[dev_set.name] = by_model
        print(f"features of {dev_set.name}: {len(next(iter(by_model.values())))} instances", flush=True)
    return found


def usable_sets(data: dict[str, dict[str, InstanceEmbeddings]], masks: dict[str, np.ndarray]) -> list[str]:
    """Sets with at least two identities among their held-out dev rows (MAP@R needs a wrong answer to exist)."""
    return [name for name, mask in masks.items()
            if len(set(data[name]["default"].table["identity"].to_numpy()[mask])) >= 2]


def held_out_map_at_r(by_model: dict[str, InstanceEmbeddings], mask: np.ndarray, variant: str,
                      weights: tuple[float, float, float]) -> float:
    """MAP@R of the ensemble ``weights`` = (BoT ``variant``, default, ImageNet) on one set's held-out dev rows."""
    members = [by_model[variant], by_model["default"], by_model["effnet-lite0-imagenet"]]
    vectors = combine_embeddings([m.vectors[mask] for m in members], weights)
    held = members[1].subset(mask)
    return float(retrieval_scores(InstanceEmbeddings(held.table, vectors, "grid"))["map_at_r"])


def dev_curve(data: dict[str, dict[str, InstanceEmbeddings]], masks: dict[str, np.ndarray],
              variant: str) -> pd.DataFrame:
    """Mean held-out dev MAP@R over the usable sets at every simplex point."""
    usable = usable_sets(data, masks)
    records = []
    for w_bot, w_default, w_imagenet in simplex():
        values = [held_out_map_at_r(data[name], masks[name], variant, (w_bot, w_default, w_imagenet))
                  for name in usable]
        records.append({"variant": variant, "w_bot": w_bot, "w_default": w_default, "w_imagenet": w_imagenet,
                        "dev_map_at_r": float(np.nanmean(values))})
    return pd.DataFrame(records)


def model_string(weights: dict[str, float]) -> str:
    """``--model`` text for these weights: members at weight 0 are dropped; one member is the model itself."""
    kept = {name: weight for name, weight in weights.items() if weight > 0}
    return next(iter(kept)) if len(kept) == 1 else ",".join(f"{name}={weight:g}" for name, weight in kept.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_bot",
                        help="bot.py's output folder: its eval/ collections and train.csv (scores cached in log/)")
    parser.add_argument("--models-from", type=Path, default=None,
                        help="where the BoT variants' model.pt are (default: --out)")
    parser.add_argument("--variants", nargs="*", default=list(CANDIDATE_VARIANTS), choices=CANDIDATE_VARIANTS)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    out, models_from = args.out.resolve(), (args.models_from or args.out).resolve()
    sets = all_sets()
    train_csv = out / "train.csv"
    paths = {v: models_from / v / "model.pt" for v in args.variants}
    missing = [str(p) for p in paths.values() if not p.is_file()] + ([] if train_csv.is_file() else [str(train_csv)])
    if not sets or missing:
        print("nothing to do: " + ("no development set found" if not sets else
                                   f"run benchmarks/bot.py first (missing {', '.join(missing)})"), file=sys.stderr)
        return 0
    data = embedded_sets(out, sets, {**{name: name for name in BASELINES}, **{v: str(p) for v, p in paths.items()}})
    bot_trained = bot_trained_labels(train_csv)
    masks = {s.name: held_out_dev(data[s.name]["default"].table, s, bot_trained) for s in sets}

    grid = pd.concat([dev_curve(data, masks, variant) for variant in args.variants], ignore_index=True)
    grid.to_csv(out / "ensemble_grid.csv", index=False)
    with_bot = grid[grid["w_bot"] > 0].sort_values(["dev_map_at_r", "w_bot"], ascending=[False, True]).iloc[0]
    without_bot = grid[grid["w_bot"] == 0].sort_values("dev_map_at_r", ascending=False).iloc[0]
    chosen_variant = str(with_bot["variant"])
    print(f"best with BoT: {with_bot.to_dict()}\nbest without BoT: {without_bot.to_dict()}", flush=True)

    bot_path = str(paths[chosen_variant])
    listed = [
        ("default", "default"),
        ("effnet-lite0-imagenet", "effnet-lite0-imagenet"),
        (f"BoT {chosen_variant}", bot_path),
        ("earlier choice (retrieval-dev, all dev rows)", model_string(EARLIER)),
        (WITHOUT, model_string({"default": without_bot["w_default"],
                                "effnet-lite0-imagenet": without_bot["w_imagenet"]})),
        (WITH, model_string({bot_path: with_bot["w_bot"], "default": with_bot["w_default"],
                             "effnet-lite0-imagenet": with_bot["w_imagenet"]})),
    ]
    candidates: dict[str, str] = {}  # one row per distinct model; labels of one model joined
    for label, model in listed:
        same = next((known for known, text in candidates.items() if text == model), None)
        candidates = {(f"{known} = {label}" if known == same else known): text for known, text in candidates.items()}
        if same is None:
            candidates[label] = model
    per_set_dev = {name: (held_out_map_at_r(data[name], masks[name], chosen_variant, (0.0, without_bot["w_default"],
                                                                                      without_bot["w_imagenet"])),
                          held_out_map_at_r(data[name], masks[name], chosen_variant, (with_bot["w_bot"],
                                                                                      with_bot["w_default"],
                                                                                      with_bot["w_imagenet"])))
                   for name in usable_sets(data, masks)}
    log = Record(out)
    baseline_ids = ",".join(load_embedding_model(name, precision="fp32").model_id for name in BASELINES)
    args.baseline_ids = baseline_ids
    scores: dict[str, dict[str, dict]] = {}
    args.fresh = 0  # scorings computed in this run (the rest come from --out/log)
    for label, model in candidates.items():
        for dev_set in sets:
            key = f"ensemble-bench|{model}|{baseline_ids}|{dev_set.name}"  # registry weights change per release
            scored = log.get(key)
            if scored is None:
                scored = score(model, label, dev_set, out, rerank=False)
                scored["rerank"] = score(model, label, dev_set, out, rerank=True)
                log.set(key, scored)
                args.fresh += 1
                print(label, dev_set.name, scored, flush=True)
            scores.setdefault(label, {})[dev_set.name] = scored

    text = render(grid, masks, data, per_set_dev, with_bot, without_bot, candidates, scores, sets, args,
                  time.perf_counter() - started, models_from)
    print(text)
    if not args.no_docs:
        write_section("ensemble", text)
    return 0


def render(grid: pd.DataFrame, masks: dict[str, np.ndarray], data: dict[str, dict[str, InstanceEmbeddings]],
           per_set_dev: dict[str, tuple[float, float]], with_bot: pd.Series, without_bot: pd.Series,
           candidates: dict[str, str], scores: dict[str, dict[str, dict]], sets: list[DevSet],
           args: argparse.Namespace, seconds: float, models_from: Path) -> str:
    variant = str(with_bot["variant"])
    command = ("nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/ensemble.py "
               f"--variants {' '.join(args.variants)}"
               + (f" --models-from {args.models_from}" if args.models_from else ""))
    lines = ["## Ensembles with and without the BoT model (`benchmarks/ensemble.py`)", "",
             f"`{command}` ({seconds:.0f} s on the contended 2-core CPU, {args.fresh} of "
             f"{len(candidates) * len(sets)} test scorings computed in this run, the rest read from `--out/log`; BoT models and collections of `benchmarks/bot.py`, "
             "see its section for their training scale). All models fp32. Weights `(w_bot, w_default, w_imagenet)` "
             f"on the simplex grid of step {STEP} are chosen by the mean MAP@R over sets on **held-out dev rows**: "
             "`split=dev` rows of identities that no candidate trained on (bot.py's unlabelled and validation "
             "fifths; on the three sprite sets `default` was fine-tuned on, only its validation third). "
             "`split=test` rows are read only by the last two tables. `pseudo` is not a candidate (re-trained on "
             f"these rows' pseudo-labels). `{BASELINES[0]}`, `{BASELINES[1]}` = `{args.baseline_ids}`. A `default` "
             "with a discriminant head (2026-12-02 on) was fitted on every dev identity of the fitted sets, so "
             "for it these rows are not held out and the weights favour it.", ""]
    held_rows = []
    for dev_set in sets:
        mask = masks[dev_set.name]
        table = data[dev_set.name]["default"].table
        without, with_ = per_set_dev.get(dev_set.name, ("-", "-"))
        held_rows.append([dev_set.name, int(((table["split"] == "dev") & (table["identity"] != "")).sum()),
                          int(mask.sum()), len(set(table["identity"].to_numpy()[mask])), without, with_])
    lines += ["Held-out dev rows per set (sets with fewer than two identities there are left out of the mean), and "
              "their MAP@R at the two chosen ensembles:", "",
              markdown_table(["set", "dev instances", "held-out instances", "held-out identities",
                              "MAP@R best without BoT", "MAP@R best with BoT"], held_rows), ""]
    best_rows = []
    for name, part in grid.groupby("variant", sort=False):
        alone = part[np.isclose(part["w_bot"], 1.0)].iloc[0]
        best = part[part["w_bot"] > 0].sort_values(["dev_map_at_r", "w_bot"], ascending=[False, True]).iloc[0]
        best_rows.append([f"BoT {name}", alone["dev_map_at_r"],
                          f"{best['w_bot']:.1f} / {best['w_default']:.1f} / {best['w_imagenet']:.1f}",
                          best["dev_map_at_r"]])
    first = grid[grid["variant"] == grid["variant"].iloc[0]]
    for label, w_default in (("default alone", 1.0), ("effnet-lite0-imagenet alone", 0.0)):
        row = first[np.isclose(first["w_bot"], 0) & np.isclose(first["w_default"], w_default)].iloc[0]
        best_rows.append([label, row["dev_map_at_r"], "-", "-"])
    best_rows.append(["best without BoT", "-", f"0.0 / {without_bot['w_default']:.1f} / "
                      f"{without_bot['w_imagenet']:.1f}", without_bot["dev_map_at_r"]])
    lines += ["Held-out dev MAP@R (mean over sets) of each candidate alone and at its best weights with BoT:", "",
              markdown_table(["candidate", "alone", "best w_bot / w_default / w_imagenet", "dev MAP@R there"],
                             best_rows), ""]
    chosen = grid[grid["variant"] == variant]
    steps = sorted(set(chosen["w_default"]))
    triangle = []
    for w_bot in sorted(set(chosen["w_bot"])):
        row: list[object] = [f"{w_bot:.1f}"]
        for w_default in steps:
            hit = chosen[np.isclose(chosen["w_bot"], w_bot) & np.isclose(chosen["w_default"], w_default)]
            row.append(f"{hit['dev_map_at_r'].iloc[0]:.3f}" if len(hit) else "")
        triangle.append(row)
    lines += [f"Every grid point with `BoT {variant}` (the variant of the best point with BoT): held-out dev MAP@R; "
              "rows w_bot, columns w_default, w_imagenet = 1 - both (row 0.0 is the ensemble without BoT):", "",
              markdown_table(["w_bot \\ w_default", *[f"{w:.1f}" for w in steps]], triangle), ""]
    def shown(model: str) -> str:
        return model.replace(str(models_from), "MODELS")

    def chosen_text(label: str) -> str:
        return shown(next(text for known, text in candidates.items() if label in known))

    lines += [f"Chosen on held-out dev: **with BoT** `{chosen_text(WITH)}` "
              f"(dev MAP@R {with_bot['dev_map_at_r']:.3f}); **without BoT** "
              f"`{chosen_text(WITHOUT)}` (dev MAP@R {without_bot['dev_map_at_r']:.3f}). The with-BoT maximum is "
              f"taken over {int((grid['w_bot'] > 0).sum())} grid points, the without-BoT one over "
              f"{int((grid['w_bot'] == 0).sum() // grid['variant'].nunique())}: a small dev margin is partly the "
              "larger search.", ""]
    mean_rows = []
    for label in candidates:
        found = [scores[label][s.name] for s in sets]
        mean = {key: float(np.mean([s[key] for s in found])) for key in ("rank1", "mAP", "mINP", "AMI")}
        rr = {key: float(np.mean([s["rerank"][key] for s in found])) for key in ("rank1", "mAP", "mINP")}
        mean_rows.append([label, mean["rank1"], mean["mAP"], mean["mINP"], mean["AMI"],
                          f"{sum(s['pred'] for s in found)}/{sum(s['true'] for s in found)}",
                          rr["rank1"], rr["mAP"], rr["mINP"]])
    lines += ["Test rows, means over the sets (clusters: predicted/true summed over sets; AMI is the same with "
              "re-ranking, which changes retrieval only):", "",
              markdown_table(["model", "rank-1", "mAP", "mINP", "AMI", "clusters", "re-ranked rank-1",
                              "re-ranked mAP", "re-ranked mINP"], mean_rows), ""]
    with_label = next(known for known in candidates if WITH in known)
    without_label = next(known for known in candidates if WITHOUT in known)
    if with_label != without_label:
        def wins(metric: str, rerank: bool = False) -> str:
            pairs = [((scores[with_label][d.name]["rerank"] if rerank else scores[with_label][d.name])[metric],
                      (scores[without_label][d.name]["rerank"] if rerank else scores[without_label][d.name])[metric])
                     for d in sets]
            return (f"{sum(a > b for a, b in pairs)} better, {sum(a < b for a, b in pairs)} worse, "
                    f"mean {np.mean([a - b for a, b in pairs]):+.3f}")

        lines += ["Best with BoT against best without BoT, per set (of "
                  f"{len(sets)}): rank-1 {wins('rank1')}; mAP {wins('mAP')}; mINP {wins('mINP')}; "
                  f"AMI {wins('AMI')}; re-ranked mAP {wins('mAP', rerank=True)}.", ""]
    header = ["set", *[f"{label}: r1 / mAP / mINP / AMI (pred/true); re-ranked r1 / mAP / mINP" for label in candidates]]
    per_set = []
    for dev_set in sets:
        row = [dev_set.name]
        for label in candidates:
            s = scores[label][dev_set.name]
            row.append(f"{s['rank1']:.3f} / {s['mAP']:.3f} / {s['mINP']:.3f} / {s['AMI']:.3f} ({s['pred']}/{s['true']}); "
                       f"{s['rerank']['rank1']:.3f} / {s['rerank']['mAP']:.3f} / {s['rerank']['mINP']:.3f}")
        per_set.append(row)
    lines += ["Test rows per set:", "", markdown_table(header, per_set), "",
              "`--model` of each row (MODELS = the `--models-from` folder): "
              + "; ".join(f"{label}: `{shown(model)}`" for label, model in candidates.items()) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
