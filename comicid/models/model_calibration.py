"""What is calibrated for a model after training, kept beside it: label-free thresholds, fusion weights.

A model's embedding space fixes the distance at which two instances stop being one character, so the
threshold that ``--threshold auto`` uses when a collection has no labelled ``split=dev`` rows is
measured once per model, on labelled data it was built with (:mod:`comicid.workflows.label_free`), and
stored with it. Likewise the weight of faces against bodies in the instance fusion.

Why a sidecar file (``default.pt`` -> ``default.calibration.json``) and not a field of the checkpoint:
the int8 graph and every feature cache are tied to the checkpoint's sha256
(:mod:`comicid.models.int8`, ``model_id``). Writing a threshold into the checkpoint would change that
hash for a number that changes no feature: the graph would have to be re-quantised (and its accuracy
re-checked) and every cached feature recomputed. The sidecar records the checkpoint sha256 the same
way the int8 graph does, so a retrained checkpoint never picks up a stale calibration (it is ignored
with a warning), and it is small JSON a reader can audit. A registry backbone with pip-shipped weights
has no checkpoint; its file is ``comicid/models/weights/<name>.calibration.json``.

Format (``version`` 1)::

    {"format": "comicid-model-calibration", "version": 1, "model": "default",
     "source_sha256": sha256 of the checkpoint, or null for a registry backbone,
     "int8_graph_sha256": sha256 of the int8 graph the "int8" thresholds were measured with, or null,
     "thresholds": {"fp32": {"agglomerative": 0.45}, "int8": {"agglomerative": 0.44}},
     "part_weights": {"face": 0.5, "body": 1.0} or null (the plain sum),
     "rules": {"agglomerative": {"silhouette_tolerance": 0.2},   # optional: more clusterer
               # parameters of the label-free rule (per method; absent or {}: cut at the threshold)
               "bank": {"naming_threshold": 0.4, "bank_size_4": 0.425, ...}},   # optional: prototype
               # distance under which a cluster takes a bank character's name, overall and per measured
               # bank size (comicid.workflows.naming_calibration)
     "fit": {...}}   # provenance: rule, data, counts (read by people, not by code)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comicid.errors import ModelError
from comicid.atomic import atomic_write_text

if TYPE_CHECKING:
    from comicid.models.embedding_model import EmbeddingModel

CALIBRATION_FORMAT = "comicid-model-calibration"
CALIBRATION_VERSION = 1
CALIBRATION_SUFFIX = ".calibration.json"
#: Where the shipped weights live; registry backbones keep their calibration files here too.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def calibration_path(source: str | Path) -> Path:
    """The calibration file of a checkpoint path (beside it) or of a registry backbone name."""
    if isinstance(source, Path):
        return source.with_name(source.stem + CALIBRATION_SUFFIX)
    return WEIGHTS_DIR / f"{source}{CALIBRATION_SUFFIX}"


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The parsed file, or ``None`` when there is none.

    Raises:
        ModelError: the file exists but is not a comicid model calibration.
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"'{path}' is not a readable model calibration ({error})") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise ModelError(f"'{path}' is not a comicid model calibration file")
    if data.get("version") != CALIBRATION_VERSION:
        raise ModelError(f"'{path}' has calibration version {data.get('version')}; this comicid reads "
                         f"version {CALIBRATION_VERSION}")
    return data


def apply_calibration(model: EmbeddingModel, source: str | Path) -> None:
    """Give ``model`` the part weights and label-free thresholds of its calibration file, in place.

    A file made for another checkpoint (sha256 differs) is ignored with a warning. The thresholds
    are those of the model's precision; an int8 model whose graph is not the one the int8 values were
    measured with takes the fp32 values (int8 features are within about 0.01 cosine of fp32).
    """
    path = calibration_path(source)
    data = read_calibration(path)
    if data is None:
        return
    if data.get("source_sha256") != model.checkpoint_sha256:
        warnings.warn(f"ignoring '{path}': made for another checkpoint (sha256 {str(data.get('source_sha256'))[:12]}, "
                      f"this one {str(model.checkpoint_sha256)[:12]}); recompute it with "
                      "comicid.workflows.label_free", stacklevel=3)
        return
    thresholds: dict[str, dict[str, float]] = data.get("thresholds") or {}
    precision = model.precision
    if precision == "int8" and data.get("int8_graph_sha256") != getattr(model.backbone, "sha256", None):
        precision = "fp32"
    model.label_free_thresholds = {method: float(value) for method, value in
                                   (thresholds.get(precision) or thresholds.get("fp32") or {}).items()}
    model.label_free_params = {str(method): {str(key): float(value) for key, value in params.items()}
                               for method, params in (data.get("rules") or {}).items()}
    weights = data.get("part_weights")
    model.part_weights = {str(kind): float(w) for kind, w in weights.items()} if weights else None


def write_calibration(path: Path, model_name: str, source_sha256: str | None, thresholds: dict[str, dict[str, float]],
                      part_weights: dict[str, float] | None = None, int8_graph_sha256: str | None = None,
                      fit: dict[str, Any] | None = None, rules: dict[str, dict[str, float]] | None = None) -> Path:
    """Write a calibration file atomically (see the module docstring for the fields); returns ``path``."""
    if part_weights is not None and any(not w > 0 for w in part_weights.values()):
        raise ValueError(f"part weights must be positive, got {part_weights}")
    data = {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "model": model_name,
            "source_sha256": source_sha256, "int8_graph_sha256": int8_graph_sha256,
            "thresholds": {precision: {method: round(float(value), 6) for method, value in values.items()}
                           for precision, values in thresholds.items()},
            "part_weights": part_weights,
            "rules": {method: {key: round(float(value), 6) for key, value in params.items()}
                      for method, params in (rules or {}).items()},
            "fit": fit or {}}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
