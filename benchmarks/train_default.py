"""Train the shipped default model in one command, then compare it with its ImageNet starting point.

    python benchmarks/train_default.py            # the real recipe (about 15-25 minutes on 2 CPU cores)
    python benchmarks/train_default.py --quick    # a 1-2 minute end-to-end check into out/, not shipped
    python benchmarks/train_default.py --int8-only   # only rebuild default.int8.onnx from default.pt (20 s)
    python benchmarks/train_default.py --discriminant-only --stage2 PATH   # only stage 3 over a stage-2 model

Steps: draw synthetic training, validation and evaluation books (fixed seeds); build the training
manifest from the synthetic training books (``split=train``) plus the ``split=dev`` identities of the
sprite sets in ../shared/datasets (skipped with a message when absent; ``split=test`` identities are
never trained on); run ``configs/ssl_default.yaml`` then ``configs/finetune_default.yaml`` (stage 2's
fp16 model goes to ``OUT/stage2.pt``, checked < 25 MB); then stage 3: the trunk's last stages tuned
across drawing styles (``comicid.training.style_tail``) and the discriminant head
(``comicid.workflows.discriminant``, docs/TRAINING.md), both fitted on the dev identities of every open
development set and generated books, writing ``comicid/models/weights/default.pt``, its int8 CPU graph
``default.int8.onnx`` (``comicid.models.int8``, calibrated on 512 non-test crops, checked on 128
others; ``--quick`` stops at stage 2 and calibrates on the training manifest), and its calibration file
``default.calibration.json`` (fusion weights and the label-free threshold of ``--threshold auto``,
``benchmarks/label_free.py``; ``--label-free-only --stage2 PATH`` re-measures it alone); then score it against ``effnet-lite0-imagenet`` on the ``split=test`` identities of the
dev sets and on the held-out synthetic books of ``benchmarks/run.py`` (seed 101, never trained on),
writing the table (rank-1, mAP, clustering AMI) to docs/BENCHMARKS.md and docs/MODEL_CARD.md.

Model selection uses validation data only: a third of each sprite set's ``split=dev`` identities
(chosen by a hash of the name) and two synthetic books of their own seed; ``split=test`` rows and the
seed-101 books are only read by the final comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from common import DEV_SETS, ROOT, available_dev_sets, markdown_table, write_section
from label_free import calibration_manifests, fusion_weights
from run import SYNTH as HELD_OUT_SYNTH  # noqa: E402  (the benchmark's held-out books, seed 101)

import comicid
from comicid.data.manifest import read_manifest, write_manifest
from comicid.data.synth import generate_books
from comicid.workflows.evaluate import EvaluationOptions, evaluate_manifest
from comicid.models.int8 import int8_graph_path
from comicid.models.quantize import QuantizeReport, quantize_checkpoint
from comicid.runtime import tune_allocator
from comicid.training.config import FinetuneConfig, SSLConfig, load_config
from comicid.training.finetune import train_finetune
from comicid.workflows.discriminant import measure_label_free_rule, train_discriminant
from comicid.training.discriminant import DiscriminantConfig
from comicid.training.style_tail import TailConfig
from comicid.training.ssl import train_ssl

MAX_BYTES = 25 * 1024 * 1024
#: Left out of stage 3's labelled data for its licence (see TRAIN_SETS).
DISCRIMINANT_SKIP = "dicebear"
#: The sprite sets whose split=dev identities are training labels (licences allow redistribution of
#: derived weights with attribution, see docs/MODEL_CARD.md). DiceBear is left out: some of its
#: styles are only "free for personal and commercial use", not an open licence.
TRAIN_SETS = DEV_SETS[:3]
BASELINE = "effnet-lite0-imagenet"
#: Share of each sprite set's dev identities held out for validation (model selection only).
VAL_SHARE = 1 / 3
#: (books, characters, pages, seed) of each synthetic set; --quick shrinks them. "eval" is the
#: benchmark's held-out set (benchmarks/run.py), drawn with the same arguments.
SYNTH = {"train": (12, 8, 8, 1000), "val": (2, 8, 6, 2000),
         "eval": tuple(HELD_OUT_SYNTH[k] for k in ("books", "characters", "pages", "seed"))}
SYNTH_QUICK = {"train": (2, 6, 3, 1000), "val": (1, 6, 2, 2000), "eval": (1, 6, 2, 3000)}
QUICK_SSL = {"train": {"steps": 6, "batch_size": 16, "val_every": 3, "checkpoint_every": 3, "warmup_steps": 1},
             "data": {"max_instances": 200}}
QUICK_FINETUNE = {"train": {"steps": 40, "batch_size": 24, "val_every": 10, "warmup_steps": 2},
                  "feature_views": 1, "data": {"max_instances": 300}}


def _synth(out: Path, name: str, shape: tuple[int, int, int, int], split: str) -> Path:
    """Draw a synthetic set once (reused when its manifest exists); every row gets ``split``."""
    books, characters, pages, seed = shape
    folder = out / f"synth_{name}"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        generate_books(folder, books=books, characters=characters, pages=pages, seed=seed, progress=True)
    frame = read_manifest(manifest)
    frame["book"] = f"synth-{name}-" + frame["book"]
    frame["split"] = split
    return write_manifest(frame, folder / f"manifest_{split}.csv")


def _held_out(identity: str) -> bool:
    """About VAL_SHARE of the dev identities, chosen by a hash of the name (stable across runs)."""
    return int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < VAL_SHARE


def build_manifests(out: Path, quick: bool) -> tuple[Path, Path, Path, list[str]]:
    """The training, validation and synthetic evaluation manifests; and the sources used.

    Validation holds synthetic books *and* a slice of each sprite set's dev identities, so that early
    stopping also watches the drawn-sprite domain and not only the synthetic one.
    """
    shapes = SYNTH_QUICK if quick else SYNTH
    frames = [read_manifest(_synth(out, "train", shapes["train"], "train"))]
    val_frames = [read_manifest(_synth(out, "val", shapes["val"], "dev"))]
    sources = ["synthetic training books"]
    available = {dev_set.name: dev_set for dev_set in available_dev_sets()}
    for dev_set in TRAIN_SETS:
        if dev_set.name in available:
            frame = read_manifest(available[dev_set.name].manifest)
            frame = frame[frame["split"] == "dev"]
            held = frame["identity"].map(_held_out).to_numpy(dtype=bool)
            frames.append(frame[~held])
            val_frames.append(frame[held])
            sources.append(f"{dev_set.name} (split=dev, {int(held.sum())} rows held out for validation)")
    train = write_manifest(pd.concat(frames, ignore_index=True), out / "train_manifest.csv")
    val = write_manifest(pd.concat(val_frames, ignore_index=True), out / "val_manifest.csv")
    evaluation = _synth(out, "eval", shapes["eval"], "")
    return train, val, evaluation, sources


def evaluate(model_path: Path, synth_eval: Path, quick: bool) -> list[dict[str, Any]]:
    """rank-1 and mAP of the trained model and the baseline, per set (split=test of the dev sets)."""
    models = {"default (trained)": comicid.load_model(model_path, precision="fp32"), BASELINE: comicid.load_model(BASELINE)}
    trained_on = {dev_set.name for dev_set in TRAIN_SETS}
    sets = [(f"{d.name} (test)", d.manifest, "test") for d in available_dev_sets() if d.name in trained_on]
    seed = (SYNTH_QUICK if quick else SYNTH)["eval"][3]
    sets.append((f"synthetic books (seed {seed}, unseen)", synth_eval, "all"))
    rows = []
    for name, manifest, split in sets:
        row: dict[str, Any] = {"set": name}
        for label, model in models.items():
            options = EvaluationOptions(split=split, progress=not quick)
            result = evaluate_manifest(manifest, options, model=model)
            row[label] = {"rank1": result["retrieval"]["rank1"], "mAP": result["retrieval"]["mAP"],
                          "AMI": result["clustering"]["ami"]}
        rows.append(row)
        print(json.dumps(row))
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["set", "default rank-1", "default mAP", "default AMI",
              f"{BASELINE} rank-1", f"{BASELINE} mAP", f"{BASELINE} AMI"]
    cells = [[row["set"], *(row[model][key] for model in ("default (trained)", BASELINE)
                            for key in ("rank1", "mAP", "AMI"))] for row in rows]
    return markdown_table(header, cells)


def _replace_block(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    if start in text and end in text:
        before, rest = text.split(start, 1)
        path.write_text(before + f"{start}\n{body.rstrip()}\n{end}" + rest.split(end, 1)[1], encoding="utf-8")


def build_int8(weights: Path, train_manifest: Path) -> QuantizeReport:
    """The int8 graph beside ``weights``, calibrated on crops of the training manifest (seed 0)."""
    report = quantize_checkpoint(weights, [train_manifest], n_crops=512, n_check=128, seed=0, progress=True)
    print(f"int8 graph {report.path}: cosine to fp32 on {report.check_crops} other training crops "
          f"mean {report.mean_cosine:.4f}, min {report.min_cosine:.4f}")
    return report


def discriminant_manifests(out: Path) -> list[Path]:
    """Stage 3's labelled data: the label-free calibration manifests without DiceBear (licence, as in
    TRAIN_SETS): dev identities of every open development set, synthetic and composed books."""
    return [path for path in calibration_manifests(out) if DISCRIMINANT_SKIP not in str(path)]


def discriminant_config(stage2: Path, weights: Path, out: Path) -> DiscriminantConfig:
    """Stage 3's recipe: fitted on :func:`discriminant_manifests`, its label-free rule also measured on
    the calibration sets it is not fitted on (DiceBear)."""
    fitted = discriminant_manifests(out)
    config = DiscriminantConfig(base_model=str(stage2), manifests=fitted, output=weights, workdir=out / "discriminant",
                                calibration_manifests=[path for path in calibration_manifests(out) if path not in fitted],
                                tail=TailConfig())
    config.check()
    return config


def build_discriminant(stage2: Path, weights: Path, out: Path) -> tuple[str, float | None]:
    """Stage 3: the discriminant head over stage 2's model (docs/TRAINING.md), its int8 graph and its
    calibration file; returns a summary line and the int8 graph's mean cosine to fp32."""
    config = discriminant_config(stage2, weights, out)
    result = train_discriminant(config, progress=True, part_weights=fusion_weights(), name="default")
    tail = "" if result.tail is None else (f"last stages tuned on {result.tail.n_crops} crops of "
                                           f"{result.tail.n_identities} identities ({result.tail.history[-1]['step']} "
                                           "steps), then ")
    line = (f"stage 3: {tail}discriminant head on {result.n_instances} instances of {result.n_identities} identities, "
            f"{result.dims} directions, embedding {result.out_dim}-d")
    print(line)
    return line, result.int8_cosine


def build_label_free(weights: Path, out: Path, stage2: Path) -> Path:
    """The model's calibration file beside it: fusion weights and the label-free rule of
    ``--threshold auto`` measured as stage 3 does (cross-fitted halves over the stage-2 model, whose
    last stages are tuned again on each half). Stage 3 tunes the backbone, so stage 2 cannot be read
    back from the shipped weights: it must exist (``OUT/stage2.pt`` of a full run, or ``--stage2``)."""
    path = measure_label_free_rule(discriminant_config(stage2, weights, out), weights, progress=True, name="default",
                                   part_weights=fusion_weights())
    print(f"label-free calibration {path}")
    return path


def _evaluate_and_write(path: Path, synth_eval: Path, summary: str, args: argparse.Namespace) -> int:
    """Score the model against the baseline on test identities; write the doc tables unless told not to."""
    rows = evaluate(path, synth_eval, args.quick)
    print(_table(rows))
    if not args.quick and not args.no_docs:
        body = (f"## Default model vs its starting point\n\n`python benchmarks/train_default.py` "
                f"({summary}).\nRetrieval on identities never trained on.\n\n{_table(rows)}\n")
        write_section("train_default", body)
        _replace_block(ROOT / "docs" / "MODEL_CARD.md", "metrics", _table(rows) + f"\n\n{summary}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and few steps: checks the pipeline only")
    parser.add_argument("--out", type=Path, help="work folder (default out/train_default or out/train_quick)")
    parser.add_argument("--weights", type=Path, help="where the model goes (default: the shipped default.pt; "
                        "with --quick: OUT/default.pt)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--int8-only", action="store_true",
                        help="only rebuild the int8 graph of the existing weights (needs OUT/train_manifest.csv "
                             "from an earlier run, or builds it)")
    parser.add_argument("--label-free-only", action="store_true",
                        help="only re-measure the label-free rule of the existing weights (calibration file), as "
                             "stage 3 does: over --stage2 (default OUT/stage2.pt, else recovered from the weights)")
    parser.add_argument("--discriminant-only", action="store_true",
                        help="only stage 3 (+ int8 graph + calibration) over the stage-2 model --stage2")
    parser.add_argument("--stage2", type=Path, help="stage 2's model (default: OUT/stage2.pt)")
    parser.add_argument("--no-eval", action="store_true", help="skip the comparison with the baseline")
    parser.add_argument("--no-docs", action="store_true", help="print the table, write no doc (controls)")
    parser.add_argument("--no-ssl", action="store_true",
                        help="control: skip stage 1, stage 2 on the ImageNet backbone (ssl_checkpoint: null)")
    args = parser.parse_args(argv)
    tune_allocator()
    out = (args.out or ROOT / "out" / ("train_quick" if args.quick else "train_default")).resolve()
    weights = (args.weights or (out / "default.pt" if args.quick else
                                ROOT / "comicid" / "models" / "weights" / "default.pt")).resolve()
    started = time.perf_counter()
    train, val, synth_eval, sources = build_manifests(out, args.quick)
    print("training data:", "; ".join(sources))
    if args.int8_only:
        build_int8(weights, train)
        return 0
    stage2 = (args.stage2 or out / "stage2.pt").resolve()
    if args.label_free_only:
        if not stage2.is_file():
            print(f"error: no stage-2 model at {stage2} (give --stage2: stage 3 tunes the backbone, so stage 2 "
                  "cannot be recovered from the shipped weights)", file=sys.stderr)
            return 1
        build_label_free(weights, out, stage2)
        return 0
    if args.discriminant_only:
        if not stage2.is_file():
            print(f"error: no stage-2 model at {stage2} (give --stage2)", file=sys.stderr)
            return 1
        stage3, cosine = build_discriminant(stage2, weights, out)
        summary = (f"stage 3 only, over {comicid.load_model(stage2, precision='fp32').model_id}: {stage3}; "
                   f"{comicid.load_model(weights, precision='fp32').model_id}, {weights.stat().st_size / 2**20:.1f} MB; "
                   f"int8 graph cosine to fp32 {cosine if cosine is not None else float('nan'):.4f}")
        print(summary)
        return 0 if args.no_eval else _evaluate_and_write(weights, synth_eval, summary, args)
    data = {"manifests": [str(train)], "val_manifests": [str(val)], "cache_dir": str(out / "crops")}
    ssl_over: dict[str, Any] = {"output_dir": str(out / "ssl"), "data": data}
    ft_over: dict[str, Any] = {"output_dir": str(out / "finetune"), "ssl_checkpoint": str(out / "ssl" / "ssl_model.pt"),
                               "data": data, "export": {"path": str(stage2), "half": True}}
    if args.quick:
        for over, quick in ((ssl_over, QUICK_SSL), (ft_over, QUICK_FINETUNE)):
            for key, value in quick.items():
                over[key] = {**over.get(key, {}), **value} if isinstance(value, dict) else value
    if args.no_ssl:
        ft_over["ssl_checkpoint"] = None
    else:
        ssl_config = load_config(ROOT / "configs" / "ssl_default.yaml", SSLConfig, ssl_over)
        ssl_result = train_ssl(ssl_config, args.device, progress=True)
    ssl_seconds = time.perf_counter() - started
    ft_config = load_config(ROOT / "configs" / "finetune_default.yaml", FinetuneConfig, ft_over)
    ft_result, path = train_finetune(ft_config, args.device, progress=True)
    train_seconds = time.perf_counter() - started
    assert path is not None  # the default recipe is sum fusion on a shared backbone
    size = path.stat().st_size
    if size >= MAX_BYTES:
        print(f"error: {path} is {size / 2**20:.1f} MB, over the 25 MB limit", file=sys.stderr)
        return 1
    if args.quick:  # stage 3 needs the development sets' labels; the quick check stops at stage 2
        path = Path(shutil.copyfile(path, weights))
        stage3, cosine = "no stage 3 (--quick)", build_int8(path, train).mean_cosine
    else:  # stage 3 writes the shipped file, its int8 graph and its calibration file
        stage3, cosine = build_discriminant(path, weights, out)
        path = weights
    model = comicid.load_model(path, precision="fp32")
    size = path.stat().st_size
    stage1 = "no stage 1" if args.no_ssl else f"stage 1: {ssl_result.steps} steps, best val loss {ssl_result.best:.3f}"
    summary = (f"{stage1}; stage 2: {ft_result.steps} "
               f"steps, best val MAP@R {ft_result.best:.4f} at step {ft_result.best_step}; {model.model_id}, "
               f"{size / 2**20:.1f} MB; {ssl_seconds / 60:.1f} + {(train_seconds - ssl_seconds) / 60:.1f} min; "
               f"{stage3}; int8 graph {int8_graph_path(path).stat().st_size / 2**20:.1f} MB, cosine to fp32 "
               f"{cosine if cosine is not None else float('nan'):.4f}")
    print(summary)
    if args.no_eval:
        return 0
    return _evaluate_and_write(path, synth_eval, summary, args)


if __name__ == "__main__":
    raise SystemExit(main())
