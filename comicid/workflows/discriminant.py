"""``comicid train discriminant``: embed labelled manifests, fit the discriminant head, write the new model.

The maths is :mod:`comicid.training.discriminant`; this module feeds it the head inputs of every
labelled non-test instance of the given manifests (embedded with the base model, cached per crop),
writes the extended checkpoint, its int8 graph (the backbone is unchanged, so the graph is the same
network calibrated again under the new file's hash) and its label-free calibration file (fusion
weights carried over from the base model, thresholds measured again: the new head moves distances).

With a ``tail`` section, the trunk's last stages are first tuned on the same crops
(:mod:`comicid.training.style_tail`) and the discriminant is fitted on what the tuned network computes.

The label-free rule is measured on **cross-fitted** embeddings (:func:`held_out_embeddings`): the
discriminant (and the tuned tail) learn to pull exactly these identities together, so measured on
them the threshold would suit identities the model has seen, not a user's new characters. Each half
of the identities (a stable hash of the name) is embedded by a model fitted on the other half only.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from comicid.errors import ConfigError, ModelError
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model, save_embedding_model
from comicid.models.facebody import FineTunedFaceBodyModel, save_finetuned_model
from comicid.models.quantize import quantize_checkpoint
from comicid.store.embeddings import InstanceEmbeddings
from comicid.training.discriminant import DiscriminantConfig, extend_head, fit_discriminant
from comicid.training.style_tail import TailResult, tune_tail
from comicid.workflows.embed import embed_parts
from comicid.workflows.label_free import calibrate_model, describe_source, embed_labelled, labelled_collections

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscriminantResult:
    """What ``comicid train discriminant`` fitted and wrote."""

    path: Path
    model_id: str
    n_instances: int
    n_identities: int
    dims: int
    explained: float
    out_dim: int
    sources: list[str]
    int8_cosine: float | None  # mean cosine of the int8 graph to fp32 on check crops; None: no graph made
    tail: TailResult | None = None  # the tuning of the trunk's last stages; None: not tuned


@dataclass(frozen=True)
class HeadInputs:
    """Every labelled non-test instance of the manifests, before the head."""

    inputs: np.ndarray  # (N, part_dim) ``sum_parts`` per instance
    labels: np.ndarray  # (N,) "m<number>|<identity>": identities kept apart per manifest
    table: pd.DataFrame  # (N rows) the instance table, with ``set`` = "m<number>"
    sources: list[str]  # one line per manifest used
    crops: list[Path] = field(default_factory=list)  # every part's crop (a face+body instance has two)
    crop_instance: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (P,) its row


def head_inputs(model: EmbeddingModel, manifests: list[Path], workdir: Path, progress: bool = True) -> HeadInputs:
    """The head inputs of every labelled non-test instance of ``manifests`` through ``model``."""
    inputs, labels, tables, sources, crops, crop_instance = [], [], [], [], [], []
    offset = 0
    for number, manifest, collection in labelled_collections(manifests, workdir, progress):
        with collection.writer("embed"):
            parts = embed_parts(collection, model, progress=progress)
        inputs.append(parts.head_inputs())
        labels.append((f"m{number}|" + parts.table["identity"].astype(str)).to_numpy())
        tables.append(parts.table.assign(set=f"m{number}"))
        sources.append(describe_source(manifest, len(parts.table)))
        crops += list(parts.crop_paths)
        crop_instance.append(np.asarray(parts.instance_index) + offset)
        offset += len(parts.table)
    if not inputs:
        raise ConfigError("no labelled non-test rows in the given manifests: nothing to fit a discriminant head on")
    return HeadInputs(np.concatenate(inputs), np.concatenate(labels), pd.concat(tables, ignore_index=True), sources,
                      crops, np.concatenate(crop_instance))


def identity_halves(labels: np.ndarray) -> np.ndarray:
    """0 or 1 per row by a stable hash (crc32) of its identity label: the same split on every run."""
    return np.array([zlib.crc32(str(label).encode()) % 2 for label in labels], dtype=np.int64)


def held_out_embeddings(base_head: torch.nn.Module, data: HeadInputs, config: DiscriminantConfig,
                        model_id: str, tuned_inputs: Callable[[np.ndarray], np.ndarray] | None = None
                        ) -> InstanceEmbeddings:
    """Every instance embedded by a head whose discriminant was fitted on the *other* half of the
    identities (same settings as the shipped head), L2-normalised: what the trained model does to
    characters it has not seen, measured on labelled ones.

    ``tuned_inputs(fitted)``, when given, returns the head inputs of every row through a network whose
    last stages were tuned on the ``fitted`` rows only (a boolean mask over ``data``'s rows): the
    discriminant of that half is then fitted and applied on those inputs.
    """
    halves = identity_halves(data.labels)
    vectors: np.ndarray | None = None
    for half in (0, 1):
        fitted = halves != half
        inputs = data.inputs if tuned_inputs is None else tuned_inputs(fitted)
        fit = fit_discriminant(inputs[fitted], data.labels[fitted], config.dims, config.shrinkage,
                               config.min_instances_per_identity)
        head = extend_head(base_head, int(inputs.shape[1]), fit, inputs[fitted], config.weight).eval()
        if vectors is None:
            vectors = np.zeros((len(inputs), head.out_features), dtype=np.float32)
        with torch.no_grad():
            vectors[~fitted] = head(torch.from_numpy(inputs[~fitted]).float()).numpy()
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return InstanceEmbeddings(data.table, vectors, f"{model_id} (cross-fitted)")


def workdir_for(config: DiscriminantConfig, step: str) -> Path | None:
    """Where ``step`` keeps its collections (reused by a second run), or None for a temporary folder."""
    return None if config.workdir is None else Path(config.workdir) / step


def _check_extendable(model: object) -> None:
    """Fail before any work when the model's checkpoint kind cannot carry an extended head."""
    if not isinstance(model, FineTunedFaceBodyModel) and type(model) is not EmbeddingModel:
        raise ModelError(f"a discriminant head extends a plain or face-body model, not a {type(model).__name__}")


def _save(model: EmbeddingModel, path: Path, half: bool) -> Path:
    _check_extendable(model)
    if isinstance(model, FineTunedFaceBodyModel):
        return save_finetuned_model(model, path, half=half)
    return save_embedding_model(model, path)


def _load_base(config: DiscriminantConfig, device: str, part_weights: dict[str, float] | None) -> EmbeddingModel:
    base = load_embedding_model(config.base_model, device=device)
    _check_extendable(base)
    if part_weights is not None:
        base.part_weights = dict(part_weights)
    return base


def _base_inputs(base: EmbeddingModel, config: DiscriminantConfig, progress: bool) -> HeadInputs:
    with tempfile.TemporaryDirectory(prefix="comicid-discriminant-") as scratch:
        return head_inputs(base, list(config.manifests), workdir_for(config, "inputs") or Path(scratch), progress)


def tuned_copy(base: EmbeddingModel, data: HeadInputs, config: DiscriminantConfig, rows: np.ndarray | None = None,
               progress: bool = True) -> tuple[EmbeddingModel, TailResult]:
    """A copy of ``base`` (fp32, CPU) whose last trunk stages are tuned on the crops of ``data``'s rows
    (``rows``: a boolean mask of rows; None: all). Its ``model_id`` names the tuned weights' digest, so
    feature caches never mix it up with the base model or another tuning."""
    if config.tail is None:
        raise ConfigError("no tail section: nothing to tune")
    model = copy.deepcopy(base).to("cpu").eval()
    chosen = np.ones(len(data.crops), dtype=bool) if rows is None else np.asarray(rows)[data.crop_instance]
    crops = [crop for crop, keep in zip(data.crops, chosen, strict=True) if keep]
    domains = data.table["set"].astype(str).to_numpy()[data.crop_instance][chosen]  # one per manifest
    result = tune_tail(model, crops, data.labels[data.crop_instance][chosen], config.tail, progress=progress,
                       domains=domains)
    digest = hashlib.sha256()
    for tensor in model.backbone.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    model.model_id = f"{base.model_id}+tail@{digest.hexdigest()[:12]}"
    logger.info("tuned the last stages on %d crops of %d identities: %s", result.n_crops, result.n_identities,
                model.model_id)
    return model, result


def _tuned_inputs(base: EmbeddingModel, data: HeadInputs, config: DiscriminantConfig,
                  progress: bool) -> Callable[[np.ndarray], np.ndarray]:
    """``held_out_embeddings``' ``tuned_inputs``: tune a copy of ``base`` on the fitted rows, embed every row."""
    def inputs(fitted: np.ndarray) -> np.ndarray:
        model, _ = tuned_copy(base, data, config, rows=fitted, progress=progress)
        return _base_inputs(model, config, progress).inputs
    return inputs


def train_discriminant(config: DiscriminantConfig, device: str = "cpu", progress: bool = True,
                       part_weights: dict[str, float] | None = None,
                       name: str | None = None) -> DiscriminantResult:
    """Fit the discriminant head of ``config.base_model`` and write the new checkpoint (+ int8 graph,
    + calibration file) to ``config.output``.

    ``part_weights`` are the face/body fusion weights the new model is fitted and calibrated with and
    stores (default: the base model's own, from its calibration file); ``name`` is the model's name in
    that file.
    """
    base = _load_base(config, device, part_weights)
    output = Path(config.output)
    if output.resolve() == Path(str(config.base_model)).resolve():
        raise ConfigError(f"output '{output}' is the base model itself; write the new model to another file")
    base_data = _base_inputs(base, config, progress)
    model, tail = load_embedding_model(config.base_model, device="cpu", precision="fp32"), None
    data = base_data
    if config.tail is not None:
        model.part_weights = base.part_weights
        model, tail = tuned_copy(model, base_data, config, progress=progress)
        data = _base_inputs(model, config, progress)
    fit = fit_discriminant(data.inputs, data.labels, config.dims, config.shrinkage, config.min_instances_per_identity)
    logger.info("discriminant: %d instances of %d identities, %d directions (%.0f%% of the between-class variance)",
                fit.n_instances, fit.n_identities, fit.weight.shape[1], 100 * fit.explained)
    model.head = extend_head(model.head, int(data.inputs.shape[1]), fit, data.inputs, config.weight)
    model.out_dim = model.head.out_features
    output.parent.mkdir(parents=True, exist_ok=True)
    path = _save(model, output, config.half)
    int8 = quantize_checkpoint(path, list(config.manifests), progress=progress, exclude_test=True) \
        if config.quantize else None
    measure_label_free_rule(config, path, base, base_data, progress=progress, name=name)
    written = load_embedding_model(path)
    return DiscriminantResult(path=path, model_id=written.model_id, n_instances=fit.n_instances,
                              n_identities=fit.n_identities, dims=int(fit.weight.shape[1]), explained=fit.explained,
                              out_dim=int(written.head.out_features), sources=data.sources,
                              int8_cosine=None if int8 is None else int8.mean_cosine, tail=tail)


def measure_label_free_rule(config: DiscriminantConfig, path: Path, base: EmbeddingModel | None = None,
                            data: HeadInputs | None = None, progress: bool = True, name: str | None = None,
                            part_weights: dict[str, float] | None = None) -> Path:
    """Write the calibration file of the stage-3 model at ``path`` (made from ``config``): its label-free
    rule measured on cross-fitted halves of ``config.manifests`` (:func:`held_out_embeddings` over the
    base model's head) and on ``config.calibration_manifests`` embedded by the model itself.

    ``base`` and ``data`` (the base model and its head inputs) are loaded and embedded when not given,
    so the rule of a model already written can be measured again. With a ``tail`` section each half is
    embedded by a copy of the base model tuned on the other half (the tuning runs twice more).
    Returns the calibration file.
    """
    base = base if base is not None else _load_base(config, "cpu", part_weights)
    data = data if data is not None else _base_inputs(base, config, progress)
    tuned = None
    if config.tail is not None:
        fp32 = load_embedding_model(config.base_model, device="cpu", precision="fp32")
        fp32.part_weights = base.part_weights
        tuned = _tuned_inputs(fp32, data, config, progress)
    try:  # extend_head reads the base head's weights wherever they live; the base model is not loaded again
        held_out: InstanceEmbeddings | None = held_out_embeddings(base.head, data, config, base.model_id, tuned)
    except ConfigError as error:  # too few identities to fit on half of them: measure on all, and say so
        logger.warning("label-free rule measured on the identities the head was fitted on (%s)", error)
        held_out = None
    measured_on = [f"{source}, cross-fitted halves" for source in data.sources] if held_out is not None else []
    weights = dict(base.part_weights) if base.part_weights else None
    if held_out is not None and config.calibration_manifests:  # never fitted on: embedded by the new model
        written = load_embedding_model(path, precision="fp32")
        written.part_weights = weights
        with tempfile.TemporaryDirectory(prefix="comicid-discriminant-") as scratch:
            extra, sources = embed_labelled(written, list(config.calibration_manifests),
                                            workdir_for(config, "calibration") or Path(scratch), progress=progress)
        extra.table["set"] = "c" + extra.table["set"].astype(str)  # apart from the fitted manifests' "m<number>"
        held_out = InstanceEmbeddings(pd.concat([held_out.table, extra.table], ignore_index=True),
                                      np.concatenate([held_out.vectors, extra.vectors]), held_out.model_id)
        measured_on += sources
    manifests = list(config.manifests) + list(config.calibration_manifests)
    return calibrate_model(path, manifests, part_weights=weights, workdir=workdir_for(config, "label_free"),
                           progress=progress, name=name, embedded=held_out, sources=measured_on)
