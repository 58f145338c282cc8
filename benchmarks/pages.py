"""Face+body fusion on comic pages composed from real art: the shipped model vs its ImageNet backbone.

    PYTHONPATH=. python benchmarks/pages.py [--models default,effnet-lite0-imagenet] [--no-write]

The pages are ``comicid synth --characters ../shared/datasets/comicgen/face_body.csv`` (4 books x 6
characters x 8 pages, seed 7; see benchmarks/sets.py): real drawings by the comicgen artists with a
face box and a body box per instance, placed in synthetic panels. Rows with ``split=dev`` choose,
rows with ``split=test`` report.

Two tables, written to the ``pages`` section of docs/BENCHMARKS.md:

1. each model as shipped (its own fusion weights), on the test identities: rank-1, mAP,
   clustering AMI and predicted/true clusters with the threshold calibrated on the dev identities
   (what ``comicid evaluate`` does), and with no labels at all (the model's label-free rule);
2. fusion variants, face-only to body-only through weighted sums: dev mAP (the selection score) and
   the test numbers of each, so the choice can be audited. The variant with the best dev mAP is the
   one a model should carry (``part_weights`` in its calibration file).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


from common import markdown_table, write_section
from sets import COMPOSED, COMPOSED_NAME, PartData, all_sets, composed_pages, part_data

import comicid
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.workflows.evaluate import retrieval_scores
from comicid.workflows.cluster import assign_identities, describe_threshold
from comicid.runtime import tune_allocator

#: Face weight w (bodies get 1 - w); 0.5 is the plain sum, the extremes one part only when both exist.
FACE_WEIGHTS = (1.0, 0.8, 0.65, 0.5, 0.35, 0.2, 0.0)
#: Sets with face and body boxes whose dev identities choose the weight (mean dev mAP), beside the pages.
SELECTION_SETS = ("comicgen face+body", "synthetic books (seed 101)")


def score(data: PartData, vectors: np.ndarray, split: str, label_free: bool = False) -> dict[str, float]:
    """Retrieval and clustering of ``split`` rows; the threshold from dev rows, or the model's own."""
    table = data.table
    embedded = data.embedded(vectors)
    rows = (table["split"] == split).to_numpy()
    evaluated = embedded.subset(rows)
    calibration = None if label_free else embedded.subset((table["split"] == "dev").to_numpy())
    if label_free:
        evaluated.table["split"] = ""  # no labels: nothing to calibrate on
    retrieval = retrieval_scores(evaluated)
    assignment = assign_identities(evaluated, calibration=calibration, progress=False)
    predicted = assignment.table["identity_id"].to_numpy(dtype=object)
    predicted = np.where(predicted == "", -1, predicted)
    clustering = clustering_metrics_by_group(evaluated.table["identity"].to_numpy(), predicted,
                                             evaluated.table["book"].to_numpy())
    return {"rank1": retrieval["rank1"], "mAP": retrieval["mAP"], "AMI": clustering["ami"],
            "pred": clustering["pred_clusters"], "true": clustering["true_clusters"],
            "threshold": assignment.info["threshold"], "rule": describe_threshold(assignment.info)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="default,effnet-lite0-imagenet")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    tune_allocator()
    manifest = composed_pages()
    if manifest is None:
        print("no composed pages (comicgen missing): nothing to benchmark", file=sys.stderr)
        return
    shipped_rows, variant_rows, best = [], [], {}
    for name in args.models.split(","):
        model = comicid.load_model(name)
        data = part_data(COMPOSED_NAME, manifest, model)
        own = data.fused()
        dev_cal, no_labels = score(data, own, "test"), score(data, own, "test", label_free=True)
        weights = model.part_weights or {"face": 1.0, "body": 1.0}
        shipped_rows.append([name, f"face {weights.get('face', 1.0):g} / body {weights.get('body', 1.0):g}",
                             dev_cal["rank1"], dev_cal["mAP"], dev_cal["AMI"], f"{dev_cal['pred']}/{dev_cal['true']}",
                             f"{dev_cal['threshold']:.2f}", no_labels["AMI"], f"{no_labels['pred']}/{no_labels['true']}",
                             no_labels["rule"]])
        print(shipped_rows[-1], flush=True)
        others = [part_data(set_name, path, model) for set_name, path in all_sets() if set_name in SELECTION_SETS]
        dev_maps = {}
        for w in FACE_WEIGHTS:
            vectors = data.fused(face_weight=w)
            dev, test = score(data, vectors, "dev"), score(data, vectors, "test")
            dev_maps[w] = float(np.mean([dev["mAP"]] + [score(o, o.fused(face_weight=w), "dev")["mAP"] for o in others]))
            label = {1.0: "face only", 0.0: "body only", 0.5: "sum (w 0.5)"}.get(w, f"w {w:g}")
            variant_rows.append([name, label, dev["mAP"], dev_maps[w], dev["AMI"], test["rank1"], test["mAP"],
                                 test["AMI"], f"{test['pred']}/{test['true']}"])
            print(variant_rows[-1], flush=True)
        # a part that is present must count: one-part extremes are measured, not chosen; ties: nearer the sum
        best[name] = max(FACE_WEIGHTS[1:-1], key=lambda w: (round(dev_maps[w], 4), -abs(w - 0.5)))
    body = (f"## Comic pages composed from real art (face + body)\n\n"
            f"`PYTHONPATH=. python benchmarks/pages.py` on `comicid synth --characters comicgen/face_body.csv "
            f"--books {COMPOSED['books']} --cast {COMPOSED['cast']} --pages {COMPOSED['pages']} --seed {COMPOSED['seed']}` "
            "(real comicgen drawings, synthetic panels; identities split as in the source). Clustering per book, "
            "agglomerative. Contended 2-core machine; no timing here.\n\n"
            "Each model as it ships, on the test identities: threshold calibrated on the dev identities of the "
            "pages (`comicid evaluate`), and with no labels (the model's label-free rule, docs/CLUSTERING.md).\n\n"
            + markdown_table(["model", "fusion", "rank-1", "mAP", "AMI (dev-cal.)", "pred/true (dev-cal.)",
                              "threshold", "AMI (no labels)", "pred/true (no labels)", "label-free rule"],
                             shipped_rows)
            + "\n\nFusion variants: instance = normalise(head(w * face + (1 - w) * body)) of L2-normalised parts "
              "(w 0.5 is the plain sum; a lone part is unaffected). Selection by the **mean dev mAP** over the "
              f"pages and the other face+body sets ({', '.join(SELECTION_SETS)}), among 0 < w < 1; the test "
              "columns (pages) report.\n\n"
            + markdown_table(["model", "fusion", "pages dev mAP", "mean dev mAP (selection)", "pages dev AMI",
                              "test rank-1", "test mAP", "test AMI", "test pred/true"], variant_rows)
            + "\n\nBest on dev: " + ", ".join(f"{name}: {'sum' if w == 0.5 else f'w {w:g}'}" for name, w in best.items())
            + ".\n")
    print(body)
    if not args.no_write:
        write_section("pages", body)


if __name__ == "__main__":
    main()
