"""The page detector on held-out pages: COCO AP per class, CPU pages/s, and identities with detected boxes.

    PYTHONPATH=. python benchmarks/detection.py --detector PATH [--work DIR] [--no-write]
    PYTHONPATH=. python benchmarks/detection.py --prepare-only --work DIR   # training + held-out pages

Pages (all drawn by ``comicid synth`` into ``--work``; see docs/DETECTION.md):

* training (``--prepare-only`` writes them; never scored here): procedural books seeds 1 and 2
  (``--speech manga`` for the second, for narration boxes) and pages composed from the comicgen
  drawings of the ``split=dev`` identities (seed 1);
* held-out procedural books: seed 1001, a seed no training run uses;
* held-out composed pages: the comicgen drawings of the ``split=test`` identities only (seed 1001),
  so neither the pages nor the characters were seen in training.

Reported, in the ``detection`` section of docs/BENCHMARKS.md: COCO mAP@[.5:.95] and AP@0.5 overall and
per class (pycocotools, through ``comicid evaluate-detection``'s code), pages/s of detection on the
CPU (load, detect, link, panel assignment; one thread, on a shared machine), and the end-to-end
clustering AMI of ``comicid evaluate`` on the same pages with ground-truth boxes and with detected
boxes. A detected instance takes the identity of the ground-truth instance it matches (IoU >= 0.5 of
the body box, else of the face box; Hungarian per page); unmatched detections stay unlabelled (they
are clustered but not scored) and missed instances are absent, so the recall is reported beside AMI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment


from common import DATASETS, ROOT, markdown_table, write_section  # noqa: E402

from comicid.data.detection import DETECTION_KINDS, read_page_boxes  # noqa: E402
from comicid.data.images import load_image  # noqa: E402
from comicid.data.manifest import from_records, instance_keys, read_manifest, write_manifest  # noqa: E402
from comicid.data.page_links import intersection_areas  # noqa: E402
from comicid.data.synth import generate_books  # noqa: E402
from comicid.data.synth.real_art import generate_art_books  # noqa: E402
from comicid.evaluation.detection import evaluate_boxes  # noqa: E402
from comicid.models.detector import DEFAULT_DETECTOR, detect_pages, load_detector  # noqa: E402
from comicid.runtime import tune_allocator  # noqa: E402
from comicid.workflows.detect import DEFAULT_MIN_SCORE, page_rows  # noqa: E402
from comicid.workflows.evaluate import EvaluationOptions, evaluate_manifest  # noqa: E402

CHARACTERS = DATASETS / "comicgen" / "face_body.csv"
HELD_OUT_SEED = 1001


def _characters(work: Path, split: str) -> Path:
    """The comicgen manifest restricted to one split, beside a copy of its images (paths stay inside)."""
    folder = work / "comicgen"
    if not (folder / "images").is_dir():
        shutil.copytree(CHARACTERS.parent / "images", folder / "images")
    frame = pd.read_csv(CHARACTERS, dtype=str, keep_default_na=False)
    path = folder / f"{split}.csv"
    frame[frame["split"] == split].to_csv(path, index=False)
    return path


def prepare(work: Path, training: bool) -> dict[str, Path]:
    """Draw the page sets that are missing; return name -> manifest."""
    sets: dict[str, Path] = {}

    def once(name: str, draw) -> None:  # type: ignore[no-untyped-def]
        manifest = work / name / "manifest.csv"
        if not manifest.is_file():
            print(f"drawing {name} ...", file=sys.stderr)
            draw(work / name)
        sets[name] = manifest

    if training:
        once("synth_train", lambda out: generate_books(out, books=8, pages=6, seed=1, progress=False))
        once("synth_train_manga", lambda out: generate_books(out, books=4, pages=6, seed=2, speech="manga",
                                                             progress=False))
        once("art_train", lambda out: generate_art_books(out, _characters(work, "dev"), books=20, cast=5, pages=6,
                                                         seed=1, progress=False))
    once("synth_heldout", lambda out: generate_books(out, books=3, pages=4, seed=HELD_OUT_SEED, progress=False))
    once("art_heldout", lambda out: generate_art_books(out, _characters(work, "test"), books=4, cast=6, pages=4,
                                                       seed=HELD_OUT_SEED, progress=False))
    return sets


def detect_set(model: torch.nn.Module, manifest: Path, min_score: float) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """All detections (box table with scores), the detected manifest rows, and pages/s of the whole step."""
    truth = read_page_boxes(manifest)
    pages = list(dict.fromkeys(truth["image"]))
    boxes, rows = [], []
    started = time.perf_counter()
    for image_path in pages:
        path = Path(image_path)
        found = detect_pages(model, [load_image(path)], "cpu")[0]
        rows.extend(page_rows(image_path, path.parent.name, path.stem, found, min_score))
        for box, score, label in zip(found["boxes"], found["scores"], found["labels"]):
            boxes.append({"image": image_path, "kind": DETECTION_KINDS[int(label)], "x0": box[0], "y0": box[1],
                          "x1": box[2], "y1": box[3], "score": float(score)})
    rate = len(pages) / (time.perf_counter() - started)
    return pd.DataFrame(boxes), pd.DataFrame(rows), rate


def label_detections(detected: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Give each detected instance the identity (and split) of the ground-truth instance it matches."""
    truth = truth.assign(_key=instance_keys(truth).to_numpy())
    detected = detected.assign(identity="", split="", _key=instance_keys(detected).to_numpy())
    matched = 0
    for image, gt_page in truth.groupby("image"):
        det_page = detected[detected["image"] == image]
        gt_keys, det_keys = list(dict.fromkeys(gt_page["_key"])), list(dict.fromkeys(det_page["_key"]))
        if not gt_keys or not det_keys:
            continue
        iou = np.zeros((len(det_keys), len(gt_keys)))
        for kind in ("body", "face"):
            d = det_page[det_page["kind"] == kind].set_index("_key")
            g = gt_page[gt_page["kind"] == kind].set_index("_key")
            for i, dk in enumerate(det_keys):
                for j, gk in enumerate(gt_keys):
                    if dk in d.index and gk in g.index and iou[i, j] == 0:
                        a = d.loc[[dk], ["x0", "y0", "x1", "y1"]].to_numpy()
                        b = g.loc[[gk], ["x0", "y0", "x1", "y1"]].to_numpy()
                        inter = intersection_areas(a, b)[0, 0]
                        union = np.prod(a[0, 2:] - a[0, :2]) + np.prod(b[0, 2:] - b[0, :2]) - inter
                        iou[i, j] = inter / max(union, 1e-9)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        for r, c in zip(rows, cols):
            if iou[r, c] >= 0.5:
                source = gt_page[gt_page["_key"] == gt_keys[c]].iloc[0]
                mask = detected["_key"] == det_keys[r]
                detected.loc[mask, "identity"] = source["identity"]
                detected.loc[mask, "split"] = source["split"]
                matched += 1
    recall = matched / max(1, truth["_key"].nunique())
    return detected.drop(columns=["_key"]), recall


def clustering_ami(manifest: Path) -> float:
    options = EvaluationOptions(progress=False)
    return float(evaluate_manifest(manifest, options)["clustering"]["ami"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    parser.add_argument("--work", type=Path, default=Path("runs/detector_pages"))
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
    parser.add_argument("--prepare-only", action="store_true", help="draw the training and held-out pages, then stop")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end clustering comparison")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/BENCHMARKS.md")
    parser.add_argument("--note", default="", help="a line about how the detector was trained (written as is)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tune_allocator()
    if not CHARACTERS.is_file():
        print(f"skipping: {CHARACTERS} not found (set COMICID_DATASETS to the datasets folder)", file=sys.stderr)
        return
    sets = prepare(args.work, training=args.prepare_only)
    if args.prepare_only:
        for name, path in sets.items():
            print(f"{name}: {path}")
        return
    model, spec = load_detector(args.detector)
    load_start = os.getloadavg()[0]
    ap_rows, e2e_rows = [], []
    for name, label in (("synth_heldout", "procedural, seed 1001"), ("art_heldout", "comicgen test identities")):
        manifest = sets[name]
        truth_boxes = read_page_boxes(manifest)
        found, rows, rate = detect_set(model, manifest, args.min_score)
        metrics = evaluate_boxes(found, truth_boxes, DETECTION_KINDS)
        pages = truth_boxes["image"].nunique()
        ap_rows.append([f"{name} ({label}, {pages} pages)", metrics["mAP"], metrics["AP50"],
                        *[metrics[f"AP50/{kind}"] for kind in DETECTION_KINDS], f"{rate:.2f}"])
        print(name, {k: round(v, 3) for k, v in metrics.items()}, f"{rate:.2f} pages/s", file=sys.stderr)
        if args.no_e2e:
            continue
        truth = read_manifest(manifest, check_files=False)
        detected, recall = label_detections(read_manifest_rows(rows), truth)
        detected_path = write_manifest(detected, args.work / name / "detected.csv")
        ami_truth, ami_detected = clustering_ami(manifest), clustering_ami(detected_path)
        e2e_rows.append([name, truth["instance"].str.cat(truth["book"]).nunique(), ami_truth,
                         detected["instance"].str.cat(detected["book"]).nunique(), recall, ami_detected])
        print(name, "AMI gt", ami_truth, "detected", ami_detected, "recall", recall, file=sys.stderr)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").is_file() else "unknown CPU"
    detector = args.detector.resolve()
    shown = detector.relative_to(ROOT) if detector.is_relative_to(ROOT) else detector
    body = [
        "## Page detector (panels, bodies, faces, text balloons)",
        "",
        f"`PYTHONPATH=. python benchmarks/detection.py --detector {shown}` (detector: FCOS, MobileNetV2-FPN, "
        f"{spec.min_size}-{spec.max_size} px input; `--min-score {args.min_score}` for the instances). "
        "Held-out pages only: a procedural seed no training run uses, and pages composed from the comicgen "
        "`split=test` identities (training used `split=dev` drawings only). COCO metrics by pycocotools.",
    ]
    if args.note:
        body += ["", args.note]
    body += ["", markdown_table(["pages", "mAP@[.5:.95]", "AP@0.5", *[f"AP@0.5 {k}" for k in DETECTION_KINDS],
                                 "pages/s"], ap_rows),
             "", f"pages/s: load + detect + link + panels, one thread of a {cpu}, on a machine shared with other "
                 f"jobs (1-minute load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on 2 cores): "
                 "a contended figure, not the machine's speed."]
    if e2e_rows:
        body += ["", "End to end (`comicid evaluate` defaults: default model, agglomerative, per book), the same pages "
                     "with ground-truth boxes and with detected boxes (a detection takes the identity of the "
                     "ground-truth instance it matches at IoU >= 0.5; unmatched detections are clustered, not scored):",
                 "", markdown_table(["pages", "instances (GT)", "AMI (GT boxes)", "instances (detected)",
                                     "instance recall", "AMI (detected)"], e2e_rows)]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section("detection", text)


def read_manifest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Detected rows (absolute image paths) as a validated manifest frame."""
    return from_records(rows.to_dict("records"), check_files=False)


if __name__ == "__main__":
    main()
