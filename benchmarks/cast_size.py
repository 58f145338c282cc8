"""Cast size without labels: predicted/true clusters on every test set, with and without dev labels.

    PYTHONPATH=. python benchmarks/cast_size.py [--models default,effnet-lite0-imagenet] [--no-write]

For every development manifest of ../shared/datasets, the composed real-art pages and the held-out
synthetic books (benchmarks/sets.py), the ``split=test`` instances are clustered per book
(agglomerative, the default method) three ways:

* **dev labels**: ``--threshold auto`` calibrated on the set's own ``split=dev`` identities (what
  ``comicid evaluate`` does when a manifest has them; B-cubed F objective), and the same rows with the
  ``cluster_count`` objective (the threshold whose cast size is right on dev);
* **no labels, constant**: the dev rows dropped, as a user's new book has none, and the old fallback
  (the constant 0.5 of ``DEFAULT_THRESHOLDS``);
* **no labels, model threshold**: the dev rows dropped, and the model's label-free threshold from its
  calibration file as one constant for every book;
* **no labels, model rule**: the same, with the whole label-free rule of the calibration file (for
  the default, each book's own silhouette cut with the threshold as fallback; docs/CLUSTERING.md,
  "Without labels"): what ``comicid cluster`` does with a user's unlabelled book.

Writes the ``cast_size`` section of docs/BENCHMARKS.md: predicted/true cluster counts (target ratio
0.8-1.25), and B-cubed F and AMI of the label-free rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


from common import markdown_table, write_section
from sets import PartData, all_sets, part_data

import comicid
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.workflows.cluster import assign_identities, describe_threshold
from comicid.identity.calibration import DEFAULT_THRESHOLDS, auto_threshold
from comicid.models.model_calibration import calibration_path, read_calibration
from comicid.runtime import tune_allocator

RATIO = (0.8, 1.25)
MODES = ("dev labels", "dev labels, count objective", "no labels, constant", "no labels, model threshold",
         "no labels, model")


def cluster_test(data: PartData, mode: str) -> dict[str, float]:
    """Cluster the test instances of ``data`` per book under ``mode``; counts and scores."""
    table, vectors = data.table, data.fused()
    test = (table["split"] == "test").to_numpy()
    if not test.any():  # a set without splits: every labelled instance
        test = (table["identity"] != "").to_numpy()
    embedded = data.embedded(vectors)
    evaluated = embedded.subset(test)
    threshold: str | float = "auto"
    params = {"silhouette_tolerance": None} if mode == "no labels, model threshold" else None
    calibration = embedded.subset((table["split"] == "dev").to_numpy())
    if mode == "dev labels, count objective":  # the same dev rows, choosing for the right cast size
        calibration = calibration.subset(np.any(calibration.vectors != 0, axis=1))
        threshold = auto_threshold(calibration.vectors, calibration.table, objective="cluster_count").value
    elif mode != "dev labels":
        evaluated.table["split"] = ""
        calibration = None
        if mode == "no labels, constant":
            threshold = DEFAULT_THRESHOLDS["agglomerative"]
    assignment = assign_identities(evaluated, threshold=threshold, calibration=calibration, params=params,
                                   progress=False)
    predicted = assignment.table["identity_id"].to_numpy(dtype=object)
    predicted = np.where(predicted == "", -1, predicted)
    scores = clustering_metrics_by_group(evaluated.table["identity"].to_numpy(), predicted,
                                         evaluated.table["book"].to_numpy())
    return {"pred": scores["pred_clusters"], "true": scores["true_clusters"], "bcubed_f": scores["bcubed_f"],
            "ami": scores["ami"], "threshold": float(assignment.info["threshold"]),
            "source": assignment.info["threshold_source"], "rule": describe_threshold(assignment.info)}


def selection(name: str) -> str:
    """How the model's label-free rule was chosen: the scores its calibration file records (measured on
    labelled non-test data, never on these test rows), or "" when it records none."""
    source = Path(name) if Path(name).is_file() else name
    data = read_calibration(calibration_path(source)) or {}
    record = (data.get("fit") or {}).get("fp32/agglomerative") or {}
    tolerance = record.get("silhouette_tolerance")
    if not tolerance:
        return ""
    scores = tolerance["scores"]
    chosen = "none" if tolerance["chosen"] is None else f"{tolerance['chosen']:g}"
    rows = [["constant" if key == "none" else f"silhouette, tolerance {key}", value,
             "**chosen**" if key == chosen else ""] for key, value in scores.items()]
    return ("How its label-free rule was chosen, as its calibration file records it: "
            f"{data['fit'].get('rule')}, {record.get('instances')} instances in {record.get('books')} books, "
            f"threshold {record.get('threshold')}; score = mean over sets of the mean per-book "
            "-|log(predicted/true clusters)|, higher is better. No test row is read.\n\n"
            + markdown_table(["rule", "calibration score", ""], rows) + "\n\n")


def _cell(result: dict[str, float]) -> str:
    ratio = result["pred"] / result["true"]
    mark = "" if RATIO[0] <= ratio <= RATIO[1] else " ✗"
    return f"{result['pred']}/{result['true']} = {ratio:.2f}{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,effnet-lite0-imagenet")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    tune_allocator()
    sets = all_sets()
    sections = []
    for name in args.models.split(","):
        model = comicid.load_model(name)
        rows, inside, log_ratio = [], {mode: 0 for mode in MODES}, {mode: [] for mode in MODES}
        for set_name, manifest in sets:
            data = part_data(set_name, manifest, model)
            results = {mode: cluster_test(data, mode) for mode in MODES}
            for mode, result in results.items():
                inside[mode] += RATIO[0] <= result["pred"] / result["true"] <= RATIO[1]
                log_ratio[mode].append(abs(np.log(result["pred"] / result["true"])))
            free = results["no labels, model"]
            count = results["dev labels, count objective"]
            rows.append([set_name, _cell(results["dev labels"]), f"{results['dev labels']['threshold']:.2f}",
                         _cell(count), f"{count['threshold']:.2f}",
                         _cell(results["no labels, constant"]), _cell(results["no labels, model threshold"]),
                         _cell(free), free["rule"], free["bcubed_f"], free["ami"], results["dev labels"]["bcubed_f"]])
            print(name, rows[-1], flush=True)
        rows.append(["**sets within 0.8-1.25**", f"{inside['dev labels']}/{len(sets)}", "",
                     f"{inside['dev labels, count objective']}/{len(sets)}", "",
                     f"{inside['no labels, constant']}/{len(sets)}", f"{inside['no labels, model threshold']}/{len(sets)}",
                     f"{inside['no labels, model']}/{len(sets)}", "", "", "", ""])
        means = {mode: f"{np.mean(values):.2f}" for mode, values in log_ratio.items()}
        rows.append(["**mean \\|log(pred/true)\\|** (0 = right size)", means["dev labels"], "",
                     means["dev labels, count objective"], "", means["no labels, constant"],
                     means["no labels, model threshold"], means["no labels, model"], "", "", "", ""])
        sections.append(f"### {name} (`{model.model_id}`)\n\n" + selection(name) + markdown_table(
            ["test set", "pred/true, dev labels (B3-F)", "dev threshold", "pred/true, dev labels (count)",
             "dev threshold (count)", "pred/true, no labels (constant 0.5)",
             "pred/true, no labels (model threshold)", "pred/true, no labels (model rule)", "model rule",
             "B3-F (no labels, rule)", "AMI (no labels, rule)", "B3-F (dev labels)"], rows))
    body = ("## Cast size without labels\n\n`PYTHONPATH=. python benchmarks/cast_size.py`: the `split=test` "
            "instances of every set clustered per book (agglomerative), with the threshold calibrated on the "
            "set's dev identities (`--threshold auto`, B-cubed F objective; and the `cluster_count` objective, which "
            "chooses for the right cast size), and with the dev rows dropped (a user's book has no labels): the old "
            "constant 0.5, the model's label-free threshold as one constant, and the model's whole label-free rule "
            "(for the default: each book's own silhouette cut, the threshold as fallback; docs/CLUSTERING.md, "
            "\"Without labels\"). "
            "Target predicted/true ratio 0.8-1.25; ✗ marks a miss.\n\n" + "\n\n".join(sections) + "\n")
    print(body)
    if not args.no_write:
        write_section("cast_size", body)


if __name__ == "__main__":
    main()
