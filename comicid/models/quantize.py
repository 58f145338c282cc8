"""`comicid quantize`: the int8 graph of a checkpoint, calibrated on crops of manifests and checked
against fp32 on held-out ones. It sits above :mod:`comicid.models.int8` (the graph) and the checkpoint
loader, which itself runs that graph."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from comicid.data.datasets import CropCache
from comicid.data.manifest import read_manifest
from comicid.errors import ConfigError
from comicid.models.embed import normalised_crops, run_forward
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


#: Replacing an existing graph needs this much evidence that the new one is good: a graph calibrated on
#: a handful of crops can be much worse than the one it would overwrite.
MIN_CALIBRATION_CROPS = 64
MIN_CHECK_CROPS = 32
MIN_MEAN_COSINE = 0.97


def quantize_checkpoint(checkpoint: str | Path, manifests: Sequence[str | Path], out: str | Path | None = None,
                        n_crops: int = 512, n_check: int = 128, seed: int = 0,
                        progress: bool = False, force: bool = False, exclude_test: bool = False) -> QuantizeReport:
    """Make the int8 graph of a comicid checkpoint, calibrated on crops of ``manifests``.

    ``n_crops`` manifest rows (faces and bodies alike, drawn at random with ``seed``) calibrate the
    activation ranges; ``n_check`` other rows measure the cosine of int8 to fp32 part features, which
    the report returns (the shipped model: about 0.99 mean). The graph goes to ``out``, by default
    beside the checkpoint where ``--precision int8|auto`` looks for it.

    An existing graph at the destination is only replaced when the new one was calibrated on at least
    :data:`MIN_CALIBRATION_CROPS` crops and checked on :data:`MIN_CHECK_CROPS` others with a mean
    cosine of at least :data:`MIN_MEAN_COSINE` (``force`` skips these checks); the old graph is
    kept as ``<name>.bak``. The new graph is written beside it first, so a refused or failed run
    changes nothing.

    Raises:
        ModelError: the checkpoint cannot be read.
        ConfigError: the manifests have no rows, or the new graph may not replace the existing one.
    """
    checkpoint = Path(checkpoint)
    model = load_embedding_model(checkpoint, precision="fp32")
    # Calibration manifests may be training manifests that combine sets (see read_training_frame).
    frame = pd.concat([read_manifest(path, allow_outside=True) for path in manifests], ignore_index=True)
    if exclude_test and "split" in frame:  # a model built on dev identities never sees a test crop, not even here
        frame = frame[frame["split"] != "test"].reset_index(drop=True)
    if frame.empty:
        raise ConfigError("the calibration manifests have no rows")
    order = np.random.default_rng(seed).permutation(len(frame))
    calibrate_rows = order[:n_crops].tolist()
    check_rows = order[n_crops:n_crops + n_check].tolist()
    crops = CropCache(frame, calibrate_rows + check_rows, progress=progress)

    def normalised(rows: list[int]) -> Tensor:
        return normalised_crops([crops.get(row) for row in rows], model)

    path = Path(out) if out is not None else int8_graph_path(checkpoint)
    guarded = path.is_file() and not force
    if guarded and (len(calibrate_rows) < MIN_CALIBRATION_CROPS or len(check_rows) < MIN_CHECK_CROPS):
        raise ConfigError(f"'{path}' exists; replacing it needs at least {MIN_CALIBRATION_CROPS} calibration and "
                          f"{MIN_CHECK_CROPS} other check crops (got {len(calibrate_rows)} and {len(check_rows)}); "
                          "give more rows, another --out, or --force")
    assert model.checkpoint_sha256 is not None  # loaded from a file
    fresh = path.with_name(path.name + ".new")
    try:
        quantize_backbone(model.backbone, normalised(calibrate_rows), fresh, model.checkpoint_sha256)
        report = QuantizeReport(path, len(calibrate_rows), 0, float("nan"), float("nan"))
        if check_rows:  # a small manifest may leave nothing to check on
            images = normalised(check_rows)
            graph = Int8Backbone(fresh)
            expected = run_forward(model.backbone, images, torch.device("cpu"))
            with torch.inference_mode():
                cosine = torch.nn.functional.cosine_similarity(graph(images), expected, dim=1)
            report = QuantizeReport(path, len(calibrate_rows), len(check_rows), float(cosine.mean()),
                                    float(cosine.min()))
        if guarded and not report.mean_cosine >= MIN_MEAN_COSINE:
            raise ConfigError(f"the new graph's mean cosine to fp32 is {report.mean_cosine:.3f} < "
                              f"{MIN_MEAN_COSINE}; '{path}' was left as it was (--force replaces it anyway)")
        if path.is_file():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.replace(fresh, path)
    finally:
        fresh.unlink(missing_ok=True)
    return report
