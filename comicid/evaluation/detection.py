"""COCO detection metrics with pycocotools: mAP@[.5:.95] and AP@0.5, overall and per class.

Inputs are COCO JSON dicts (``images``, ``annotations``, ``categories``; predictions as a list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``), or box tables
(:mod:`comicid.data.detection`) turned into them by :func:`to_coco`. Per-class figures are read from
COCOeval's precision array the way its own summary does (mean over recall thresholds and the listed
IoU thresholds, areas ``all``, up to 100 detections); a class with no ground truth is NaN.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import pandas as pd
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from comicid.errors import ConfigError


def to_coco(boxes: pd.DataFrame, kinds: tuple[str, ...], images: list[str] | None = None,
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A box table as (COCO ground-truth dict, COCO prediction list); ``score`` column → predictions.

    ``images`` fixes the image ids (so predictions and ground truth share them); by default the
    table's own pages in order. Category ids are 1-based positions in ``kinds``.
    """
    pages = images if images is not None else list(dict.fromkeys(boxes["image"]))
    ids = {image: number + 1 for number, image in enumerate(pages)}
    annotations, predictions = [], []
    for number, row in enumerate(boxes.itertuples(index=False), start=1):
        if row.image not in ids or row.kind not in kinds:
            continue
        w, h = float(row.x1 - row.x0), float(row.y1 - row.y0)
        item = {"image_id": ids[row.image], "category_id": kinds.index(row.kind) + 1,
                "bbox": [float(row.x0), float(row.y0), w, h]}
        annotations.append({**item, "id": number, "area": w * h, "iscrowd": 0})
        if "score" in boxes.columns:
            predictions.append({**item, "score": float(row.score)})
    gt = {"images": [{"id": i, "file_name": image} for image, i in ids.items()], "annotations": annotations,
          "categories": [{"id": k + 1, "name": kind} for k, kind in enumerate(kinds)]}
    return gt, predictions


def coco_metrics(gt: dict[str, Any], predictions: list[dict[str, Any]]) -> dict[str, float]:
    """``mAP`` (@[.5:.95]), ``AP50``, ``AP75`` and ``AP50/<class>``, ``mAP/<class>`` for each category.

    Raises:
        ConfigError: ground truth without images or categories, or predictions for unknown images.
    """
    if not gt.get("images") or not gt.get("categories"):
        raise ConfigError("the ground truth has no images or no categories")
    known = {image["id"] for image in gt["images"]}
    stray = sorted({p["image_id"] for p in predictions} - known)
    if stray:
        raise ConfigError(f"predictions for {len(stray)} images the ground truth does not have (e.g. {stray[0]})")
    gt = {"info": {}, "licenses": [], **gt}
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        truth = COCO()
        truth.dataset = gt
        truth.createIndex()
        detected = truth.loadRes(predictions) if predictions else COCO()
        if not predictions:
            detected.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            detected.createIndex()
        evaluator = COCOeval(truth, detected, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # (iou, recall, class, area, max dets)
    iou_50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    iou_75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else float("nan")

    metrics = {"mAP": mean(precision[:, :, :, 0, -1]), "AP50": mean(precision[iou_50, :, :, 0, -1]),
               "AP75": mean(precision[iou_75, :, :, 0, -1])}
    for index, category in enumerate(evaluator.params.catIds):
        name = next(c["name"] for c in gt["categories"] if c["id"] == category)
        metrics[f"AP50/{name}"] = mean(precision[iou_50, :, index, 0, -1])
        metrics[f"mAP/{name}"] = mean(precision[:, :, index, 0, -1])
    return metrics


def evaluate_boxes(predicted: pd.DataFrame, truth: pd.DataFrame, kinds: tuple[str, ...]) -> dict[str, float]:
    """:func:`coco_metrics` of two box tables over the ground truth's pages."""
    pages = list(dict.fromkeys(truth["image"]))
    gt, _ = to_coco(truth.drop(columns=["score"], errors="ignore"), kinds, pages)
    _, predictions = to_coco(predicted[predicted["image"].isin(set(pages))], kinds, pages)
    return coco_metrics(gt, predictions)
