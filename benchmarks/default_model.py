"""The shipped default against the previous default and its ImageNet starting point, on every test split.

    PYTHONPATH=. python benchmarks/default_model.py --previous build/previous-default/default.pt [--no-write]

``--previous`` is the earlier release's checkpoint (e.g. ``git show 05d1bff:comicid/models/weights/default.pt``
with its ``default.int8.onnx`` and ``default.calibration.json`` beside it under the same stem). For every
set of ``benchmarks/sets.py`` (the development manifests of ../shared/datasets, the composed real-art
pages and the held-out synthetic books), the ``split=test`` instances are scored per model: rank-1 and
mAP, clustering AMI with the threshold calibrated on the set's dev identities (what ``comicid evaluate``
does), and with no labels at all (the model's label-free threshold): AMI and predicted/true clusters.
Each model is used as it ships (its fusion weights and calibration file). Writes the ``default_model``
section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import markdown_table, write_section
from embed_speed import cpu_flags, cpu_name
from pages import score
from sets import all_sets, part_data

import comicid
from comicid.runtime import tune_allocator

RATIO = (0.8, 1.25)
METRICS = ("rank1", "mAP", "AMI")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", type=Path, help="the previous default's checkpoint (a column when given)")
    parser.add_argument("--models", default="default,effnet-lite0-imagenet")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    tune_allocator()
    names = args.models.split(",")
    columns = {names[0]: names[0]}
    if args.previous is not None:
        columns["previous default"] = str(args.previous)
    columns.update({name: name for name in names[1:]})
    models = {label: comicid.load_model(source) for label, source in columns.items()}
    rows, wins, inside, means = [], {m: 0 for m in METRICS}, {label: 0 for label in models}, {}
    sets = all_sets()
    for set_name, manifest in sets:
        results = {}
        for label, model in models.items():
            data = part_data(set_name, manifest, model)
            vectors = data.fused()
            results[label] = {**score(data, vectors, "test"),
                              **{f"free_{k}": v for k, v in score(data, vectors, "test", label_free=True).items()}}
            ratio = results[label]["free_pred"] / results[label]["free_true"]
            inside[label] += RATIO[0] <= ratio <= RATIO[1]
            for key in (*METRICS, "free_AMI"):
                means.setdefault((label, key), []).append(results[label][key])
        first, others = names[0], [label for label in models if label != names[0]]
        for metric in METRICS:
            wins[metric] += all(results[first][metric] > results[o][metric] for o in others)
        cells = [set_name]
        for metric in METRICS:
            cells.append(" / ".join(f"{results[label][metric]:.3f}" for label in models))
        cells.append(" / ".join(f"{results[label]['free_AMI']:.3f} ({results[label]['free_pred']}/"
                                f"{results[label]['free_true']})" for label in models))
        rows.append(cells)
        print(rows[-1], flush=True)
    rows.append(["**mean**"] + [" / ".join(f"{np.mean(means[(label, metric)]):.3f}" for label in models)
                                for metric in METRICS]
                + [" / ".join(f"{np.mean(means[(label, 'free_AMI')]):.3f}" for label in models)])
    order = " / ".join(f"{label} (`{model.model_id}`)" for label, model in models.items())
    body = ("## The default model against the previous default and ImageNet\n\n"
            f"`PYTHONPATH=. python benchmarks/default_model.py{' --previous ' + str(args.previous) if args.previous else ''}`"
            f": `split=test` instances of every set, each model as it ships. Cells are {order}. AMI uses the "
            "threshold calibrated on the set's dev identities; the last column has no labels at all (the model's "
            "label-free rule), with predicted/true clusters. The int8 graphs run on this CPU "
            f"({cpu_name()}, {cpu_flags()}): ONNX Runtime's int8 kernels differ between CPU classes, so int8 "
            "numbers move by a few rank-1 points from one machine to another (fp32 ones do not).\n\n"
            + markdown_table(["test set", "rank-1", "mAP", "AMI (dev-calibrated)", "AMI, no labels (pred/true)"], rows)
            + f"\n\n{names[0]} is best of all columns on {wins['rank1']}/{len(sets)} sets in rank-1, "
              f"{wins['mAP']}/{len(sets)} in mAP and {wins['AMI']}/{len(sets)} in AMI. Predicted/true clusters "
              f"within {RATIO[0]}-{RATIO[1]} without labels: "
            + ", ".join(f"{label} {count}/{len(sets)}" for label, count in inside.items()) + ".\n")
    print(body)
    if not args.no_write:
        write_section("default_model", body)


if __name__ == "__main__":
    main()
