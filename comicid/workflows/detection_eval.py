"""`comicid evaluate-detection PRED GT`: COCO metrics of page detections (pycocotools).

GT: a synth folder's ``manifest.csv`` (face and body rows plus ``page_boxes.csv``), a box table
(CSV/Parquet: ``image kind x0 y0 x1 y1``) or a COCO JSON file. PRED: a box table with ``score``, a
COCO results JSON (a list of ``image_id category_id bbox score`` over GT's image ids), or a detector
checkpoint (``.pt``), which is run on GT's pages first. Image paths of tables are matched to GT after
resolving them against the table's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from comicid.data.detection import DETECTION_KINDS, PAGE_BOX_COLUMNS, read_page_boxes
from comicid.data.images import load_image
from comicid.data.synth import PAGE_BOXES_FILE
from comicid.errors import ConfigError
from comicid.evaluation.detection import coco_metrics, to_coco
from comicid.models.detector import detect_pages, load_detector
from comicid.runtime import resolve_device

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def read_box_table(path: Path, need_score: bool) -> pd.DataFrame:
    """A box table (see the module docstring) with image paths resolved against its folder."""
    table = pd.read_parquet(path) if path.suffix.lower() != ".csv" else pd.read_csv(path, keep_default_na=False)
    columns = PAGE_BOX_COLUMNS + (["score"] if need_score else [])
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"'{path}' lacks the column(s) {missing} of a box table")
    table = table[table["kind"].isin(DETECTION_KINDS)].copy()
    table["image"] = [str((path.parent / str(image)).resolve()) for image in table["image"]]
    for column in ("x0", "y0", "x1", "y1", *(["score"] if need_score else [])):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.dropna(subset=["x0", "y0", "x1", "y1"]).reset_index(drop=True)


def read_truth(path: str | Path) -> dict[str, Any]:
    """Ground truth as a COCO dict (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ground truth '{path}' not found")
    if path.suffix.lower() == ".json":
        try:
            gt = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"'{path}' is not JSON ({error})") from None
        if not isinstance(gt, dict) or not {"images", "annotations", "categories"} <= set(gt):
            raise ConfigError(f"'{path}' is not COCO ground truth (images, annotations, categories)")
        return gt
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ConfigError(f"ground truth '{path}' must be .json (COCO), .csv or .parquet")
    table = read_page_boxes(path) if (path.parent / PAGE_BOXES_FILE).is_file() and path.name != PAGE_BOXES_FILE \
        else read_box_table(path, need_score=False)
    return to_coco(table, DETECTION_KINDS)[0]


def _run_detector(checkpoint: Path, gt: dict[str, Any], device: str, progress: bool) -> list[dict[str, Any]]:
    target = resolve_device(device)
    model, _ = load_detector(checkpoint, target)
    names = {category["name"]: category["id"] for category in gt["categories"]}
    predictions = []
    for image in tqdm(gt["images"], desc="detecting", unit="page", disable=not progress):
        found = detect_pages(model, [load_image(image["file_name"])], target)[0]
        for box, score, label in zip(found["boxes"], found["scores"], found["labels"]):
            kind = DETECTION_KINDS[int(label)]
            if kind in names:
                x0, y0, x1, y1 = (float(v) for v in box)
                predictions.append({"image_id": image["id"], "category_id": names[kind],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return predictions


def read_predictions(path: str | Path, gt: dict[str, Any], device: str = "cpu",
                     progress: bool = False) -> list[dict[str, Any]]:
    """Predictions as a COCO results list over ``gt``'s image ids (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"predictions '{path}' not found")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return _run_detector(path, gt, device, progress)
    if suffix == ".json":
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"'{path}' is not JSON ({error})") from None
        if isinstance(results, dict):
            results = results.get("annotations", [])
        if not isinstance(results, list) or any(not isinstance(r, dict) or "score" not in r for r in results):
            raise ConfigError(f"'{path}' is not a COCO results list (image_id, category_id, bbox, score)")
        return results
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"predictions '{path}' must be .pt (a detector), .json (COCO results), .csv or .parquet")
    table = read_box_table(path, need_score=True)
    ids = {image["file_name"]: image["id"] for image in gt["images"]}
    names = {category["name"]: category["id"] for category in gt["categories"]}
    table = table[table["image"].isin(set(ids)) & table["kind"].isin(set(names))]
    return [{"image_id": ids[row.image], "category_id": names[row.kind],
             "bbox": [row.x0, row.y0, row.x1 - row.x0, row.y1 - row.y0], "score": float(row.score)}
            for row in table.itertuples(index=False)]


def evaluate_detection(predictions: str | Path, truth: str | Path, device: str = "cpu",
                       progress: bool = False) -> dict[str, float]:
    """COCO mAP@[.5:.95], AP@0.5 and AP@0.75, overall and per class, of ``predictions`` against ``truth``."""
    gt = read_truth(truth)
    return coco_metrics(gt, read_predictions(predictions, gt, device, progress))
