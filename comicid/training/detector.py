"""`comicid train detector CONFIG`: the page detector trained on synthetic and composed pages.

Data are synth folders (``data.manifests``: each a ``manifest.csv`` with ``page_boxes.csv`` beside
it). Pages are scaled once to the network's input size and kept in memory as uint8 (about 1 MB a
page), so a step costs the network only; augmentation is a horizontal flip. Validation pages are
``data.val_manifests`` or, without them, the last ``val_fraction`` of the pages of every folder (whole
books drawn from their own seeds: no page is both trained and validated); the monitored figure is
COCO AP@0.5 over the four classes. Runs on the shared loop (:func:`comicid.training.loop.fit`):
checkpoints, ``--resume``, progress bar, best weights. Writes ``output_dir/detector.pt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from comicid.data.detection import DETECTION_KINDS, pages_of, read_page_boxes
from comicid.data.images import load_image
from comicid.errors import ConfigError
from comicid.evaluation.detection import evaluate_boxes
from comicid.models.detector import DetectorSpec, build_detector, detect_pages, detection_loss, page_tensor, \
    save_detector
from comicid.runtime import resolve_device
from comicid.training.config import TrainConfig
from comicid.training.loop import TrainResult, fit

log = logging.getLogger(__name__)
DETECTOR_NAME = "detector.pt"


@dataclass
class DetectorDataConfig:
    """Synth folders to train on (their ``manifest.csv``); ``max_pages`` caps the training pages (0 = all)."""

    manifests: list[Path] = field(default_factory=list)
    val_manifests: list[Path] = field(default_factory=list)
    val_fraction: float = 0.1
    max_val_pages: int = 16
    max_pages: int = 0


@dataclass
class DetectorConfig:
    """``comicid train detector``: data, network (:class:`DetectorSpec`) and loop settings."""

    output_dir: Path
    data: DetectorDataConfig = field(default_factory=DetectorDataConfig)
    model: DetectorSpec = field(default_factory=DetectorSpec)
    pretrained: bool = True
    flip: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=2, lr=1e-3, weight_decay=1e-4, warmup_steps=50, grad_clip=5.0, amp=False,
        channels_last=False, checkpoint_every=50, val_every=150, patience=0, log_every=10))

    def check(self) -> None:
        """Value checks a type cannot express (called by :func:`~comicid.training.config.load_config`)."""
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        try:
            self.model.check()
        except Exception as error:  # ModelError -> a config mistake here
            raise ConfigError(f"model: {error}") from None


@dataclass
class _Page:
    """A page scaled to the network's size: uint8 (3, H, W), boxes (N, 4) at that scale, labels (N,)."""

    pixels: Tensor
    boxes: Tensor
    labels: Tensor


def _scale(width: int, height: int, spec: DetectorSpec) -> float:
    """torchvision's GeneralizedRCNNTransform rule, so the in-model resize is a no-op on cached pages."""
    return min(spec.min_size / min(width, height), spec.max_size / max(width, height))


def load_pages(boxes: pd.DataFrame, spec: DetectorSpec) -> list[_Page]:
    """Decode and scale every page of a box table once."""
    pages = []
    for image_path, rows in boxes.groupby("image", sort=False):
        image = load_image(image_path)
        factor = _scale(*image.size, spec)
        size = (round(image.size[0] * factor), round(image.size[1] * factor))
        pixels = (page_tensor(image.resize(size)) * 255).round().to(torch.uint8)
        xyxy = torch.tensor(rows[["x0", "y0", "x1", "y1"]].to_numpy(np.float32) * factor)
        labels = torch.tensor([DETECTION_KINDS.index(kind) for kind in rows["kind"]], dtype=torch.int64)
        pages.append(_Page(pixels, xyxy, labels))
    return pages


def _flip(page: _Page) -> _Page:
    width = page.pixels.shape[-1]
    boxes = page.boxes.clone()
    boxes[:, [0, 2]] = width - page.boxes[:, [2, 0]]
    return _Page(page.pixels.flip(-1), boxes, page.labels)


def _split(config: DetectorConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    train_parts, val_parts = [], []
    for manifest in config.data.manifests:
        table = read_page_boxes(manifest)
        pages = pages_of(table)
        held = 0 if config.data.val_manifests else int(round(len(pages) * config.data.val_fraction))
        val_pages = set(pages[len(pages) - held:]) if held else set()
        train_parts.append(table[~table["image"].isin(val_pages)])
        val_parts.append(table[table["image"].isin(val_pages)])
    for manifest in config.data.val_manifests:
        val_parts.append(read_page_boxes(manifest))
    train = pd.concat(train_parts, ignore_index=True)
    val = pd.concat(val_parts, ignore_index=True) if val_parts else train.iloc[:0]
    if config.data.max_pages:
        keep = set(pages_of(train)[:config.data.max_pages])
        train = train[train["image"].isin(keep)]
    val_keep = set(pages_of(val)[:config.data.max_val_pages])
    return train.reset_index(drop=True), val[val["image"].isin(val_keep)].reset_index(drop=True)


def predict_boxes(model: torch.nn.Module, images: list[str], device: torch.device,
                  batch_size: int = 1) -> pd.DataFrame:
    """Detections of ``images`` as a box table with ``score`` (the evaluation's input)."""
    rows = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        for image, found in zip(chunk, detect_pages(model, [load_image(p) for p in chunk], device)):
            for box, score, label in zip(found["boxes"], found["scores"], found["labels"]):
                rows.append({"image": image, "kind": DETECTION_KINDS[label], "x0": box[0], "y0": box[1],
                             "x1": box[2], "y1": box[3], "score": float(score)})
    return pd.DataFrame(rows, columns=["image", "kind", "x0", "y0", "x1", "y1", "score"])


def train_detector(config: DetectorConfig, device: str = "cpu", resume: bool = False,
                   progress: bool = True) -> tuple[TrainResult, Path]:
    """Train the detector of ``config``; returns the loop's result and the written checkpoint path."""
    target = resolve_device(device)
    train_boxes, val_boxes = _split(config)
    if train_boxes.empty:
        raise ConfigError("data.manifests: no training pages with boxes")
    log.info("detector: %d training pages, %d validation pages", train_boxes["image"].nunique(),
             val_boxes["image"].nunique())
    pages = load_pages(train_boxes, config.model)
    model = build_detector(config.model, pretrained=config.pretrained).to(target)
    batch_size = config.train.batch_size

    def data(epoch: int, skip: int) -> Iterator[tuple[list[Tensor], list[dict[str, Tensor]]]]:
        rng = random.Random(f"{config.train.seed}/{epoch}")
        order = list(range(len(pages)))
        rng.shuffle(order)
        flips = [config.flip and rng.random() < 0.5 for _ in order]
        for start in range(skip * batch_size, len(order) - batch_size + 1, batch_size):
            chosen = [_flip(pages[i]) if flips[k] else pages[i]
                      for k, i in zip(range(start, start + batch_size), order[start:start + batch_size])]
            yield ([page.pixels.float().div(255.0) for page in chosen],
                   [{"boxes": page.boxes, "labels": page.labels} for page in chosen])

    def step(batch: tuple[list[Tensor], list[dict[str, Tensor]]]) -> dict[str, Tensor]:
        return detection_loss(model, *batch)

    val_pages = pages_of(val_boxes)

    def validate() -> dict[str, float]:
        found = predict_boxes(model, val_pages, target)
        metrics = evaluate_boxes(found, val_boxes, DETECTION_KINDS)
        return {"ap50": metrics["AP50"], "map": metrics["mAP"],
                **{f"ap50_{kind}": metrics[f"AP50/{kind}"] for kind in DETECTION_KINDS}}

    recipe = json.dumps({"data": [str(p) for p in config.data.manifests], "model": asdict(config.model),
                         "train": asdict(config.train)}, sort_keys=True, default=str)
    result = fit(model, data, step, config.train, config.output_dir, target,
                 validate=validate if val_pages else None, monitor="ap50", mode="max", resume=resume,
                 progress=progress, fingerprint=hashlib.sha256(recipe.encode()).hexdigest())
    meta = {"steps": result.steps, "best_val_ap50": result.best, "best_step": result.best_step,
            "train_pages": int(train_boxes["image"].nunique())}
    path = save_detector(model, config.model, config.output_dir / DETECTOR_NAME, meta)
    return result, path
