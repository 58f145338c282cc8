"""`comicid quantize`: the int8 graph of a checkpoint, calibrated on crops of manifests and checked
against fp32 on held-out ones. It sits above :mod:`comicid.models.int8` (the graph) and the checkpoint
loader, which itself runs that graph."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from comicid.data.datasets import CropCache
from comicid.data.manifest import read_manifest
from comicid.data.preprocess import letterbox_uint8, normalise_batch
from comicid.errors import ConfigError
from comicid.models.embedding_model import load_embedding_model
from comicid.models.int8 import Int8Backbone, int8_graph_path, quantize_backbone


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize_checkpoint` wrote and how close the graph is to its fp32 model."""

    path: Path
    calibration_crops: int
    check_crops: int
    mean_cosine: float
    min_cosine: float


def quantize_checkpoint(checkpoint: str | Path, manifests: Sequence[str | Path], out: str | Path | None = None,
                        n_crops: int = 512, n_check: int = 128, seed: int = 0,
                        progress: bool = False) -> QuantizeReport:
    """Make the int8 graph of a comicid checkpoint, calibrated on crops of ``manifests``.

    ``n_crops`` manifest rows (faces and bodies alike, drawn at random with ``seed``) calibrate the
    activation ranges; ``n_check`` other rows measure the cosine of int8 to fp32 part features, which
    the report returns (the shipped model: about 0.99 mean). The graph goes to ``out``, by default
    beside the checkpoint where ``--precision int8|auto`` looks for it.

    Raises:
        ModelError: the checkpoint cannot be read.
        ConfigError: the manifests have no rows.
    """
    checkpoint = Path(checkpoint)
    model = load_embedding_model(checkpoint, precision="fp32")
    frame = pd.concat([read_manifest(path) for path in manifests], ignore_index=True)
    if frame.empty:
        raise ConfigError("the calibration manifests have no rows")
    order = np.random.default_rng(seed).permutation(len(frame))
    calibrate_rows = order[:n_crops].tolist()
    check_rows = order[n_crops:n_crops + n_check].tolist()
    crops = CropCache(frame, calibrate_rows + check_rows, progress=progress)

    def normalised(rows: list[int]) -> Tensor:
        pixels = torch.stack([letterbox_uint8(crops.get(row), model.input_size) for row in rows])
        return normalise_batch(pixels, model.mean, model.std)

    path = Path(out) if out is not None else int8_graph_path(checkpoint)
    assert model.checkpoint_sha256 is not None  # loaded from a file
    quantize_backbone(model.backbone, normalised(calibrate_rows), path, model.checkpoint_sha256)
    if not check_rows:  # a small manifest: every row calibrated, nothing left to check on
        return QuantizeReport(path, len(calibrate_rows), 0, float("nan"), float("nan"))
    images = normalised(check_rows)
    graph = Int8Backbone(path)
    with torch.inference_mode():
        expected = model.backbone(images.contiguous(memory_format=torch.channels_last))
        cosine = torch.nn.functional.cosine_similarity(graph(images), expected.float(), dim=1)
    return QuantizeReport(path, len(calibrate_rows), len(check_rows), float(cosine.mean()), float(cosine.min()))
