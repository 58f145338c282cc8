"""Stage 1, self-supervision (``comicid train ssl``): identity-aware contrastive pre-training.

Each sample is one character instance with its face and body crops. Every present part gets two
strong views and one weak view; the loss is

    face_weight * InfoNCE(face view 1, face view 2)
  + body_weight * InfoNCE(body view 1, body view 2)
  + identity_weight * InfoNCE(weak face, weak body)        (symmetric, cross-modal)

(Soykan, Yuret, Sezgin 2023). The identity term is what makes it *identity-aware*: a face and the
body drawn under it belong to one character, a free positive pair that needs no label. Instances
with only a face (or only a body) still feed their own term; only instances with both feed the
identity term. Ablations are config switches: ``data.parts``, ``model.shared_backbone``,
``loss.*_weight``.

Validation reports the mean loss (fixed views) and face<->body top-1: how often the weak face of a
held-out instance finds its own body among all held-out bodies, and the reverse.

This module also hosts :func:`prepare_training_data`, the manifest-to-instances step both recipes
share.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from comicid.data.augment import strong_view, weak_view
from comicid.data.datasets import (
    CropCache,
    Instance,
    MultiViewDataset,
    ShuffleBatchSampler,
    build_instances,
    instance_rows,
    make_loader,
    read_training_frame,
    split_by,
)
from comicid.errors import ConfigError
from comicid.losses import IdentityInfoNCE
from comicid.models.facebody import FaceBodyNetwork, build_facebody_network, save_facebody_network
from comicid.runtime import resolve_device
from comicid.training.config import DataConfig, SSLConfig, SSLLossConfig
from comicid.training.loop import TrainResult, fit

log = logging.getLogger(__name__)

SSL_MODEL_NAME = "ssl_model.pt"
STRONG_1, STRONG_2, WEAK = 0, 1, 2  # view order in each item


@dataclass
class TrainingData:
    """Instances ready for a recipe: train/validation split and the crops of both."""

    frame: pd.DataFrame
    train: list[Instance]
    val: list[Instance]
    cache: CropCache
    notes: list[str]


def prepare_training_data(config: DataConfig, seed: int, progress: bool,
                          require_labels: bool = False) -> TrainingData:
    """Read the manifests, build instances, split off validation and cut every crop once.

    ``require_labels`` drops instances without an identity (stage 2 needs labels) and says how
    many. Everything left out is counted in ``notes``, never dropped silently.
    """
    frame, off_split = read_training_frame(config.manifests, config.splits)
    table = build_instances(frame, config.parts, config.group_by, config.label_scope)
    notes = [f"training manifests: {table.summary()}"]
    if off_split:
        notes.append(f"{off_split} rows left out: split not in {config.splits}")
    instances = table.instances
    if require_labels:
        labelled = [instance for instance in instances if instance.label]
        if len(labelled) < len(instances):
            notes.append(f"{len(instances) - len(labelled)} instances without identity left out")
        instances = labelled
    if config.val_manifests:
        val_frame, _ = read_training_frame(config.val_manifests, config.splits)
        offset = len(frame)
        val_frame.index = val_frame.index + offset
        frame = pd.concat([frame, val_frame])
        val_table = build_instances(val_frame.reset_index(drop=True), config.parts, config.group_by,
                                    config.label_scope)
        val = [Instance(i.key + "\x1fval", i.book, i.group, i.identity, i.label,
                        {part: row + offset for part, row in i.rows.items()}) for i in val_table.instances]
        train = instances
    else:
        train_index, val_index = split_by(instances, config.val_fraction, seed)
        train, val = [instances[i] for i in train_index], [instances[i] for i in val_index]
    if require_labels:
        val = [instance for instance in val if instance.label]
    if config.max_instances and len(train) > config.max_instances:
        keep = np.sort(np.random.default_rng(seed).permutation(len(train))[: config.max_instances])
        notes.append(f"training capped at {config.max_instances} of {len(train)} instances (data.max_instances)")
        train = [train[i] for i in keep]
    if not train:
        raise ConfigError("no training instance left after the validation split")
    notes.append(f"{len(train)} training and {len(val)} validation instances")
    cache = CropCache(frame, instance_rows(train + val), config.crop_max_side, config.cache_dir, progress)
    return TrainingData(frame, train, val, cache, notes)


def fingerprint(config: object) -> str:
    """A short hash of a recipe, so ``--resume`` never mixes two recipes in one output folder."""
    text = json.dumps(asdict(config), sort_keys=True, default=str)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SSLObjective:
    """The stage-1 loss of one batch: ``{"loss", "face", "body", "identity"}`` (unweighted terms).

    A batch item holds ``{part}: (B, V, 3, S, S)`` views and ``has_{part}: (B,)``. With a shared
    backbone all present crops go through the network in one pass, so BatchNorm statistics mix
    faces and bodies exactly as inference will see them.
    """

    def __init__(self, network: FaceBodyNetwork, loss: SSLLossConfig, channels_last: bool) -> None:
        self.network = network
        self.weights = {"face": loss.face_weight, "body": loss.body_weight, "identity": loss.identity_weight}
        self.infonce = IdentityInfoNCE(loss.temperature)
        self.channels_last = channels_last

    def _images(self, views: Tensor) -> Tensor:
        images = views.flatten(0, 1)  # (n*V, 3, S, S)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def embed(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Per part: (embeddings ``(n, V, D)`` of the present crops, their batch positions ``(n,)``)."""
        present = {part: torch.nonzero(batch[f"has_{part}"]).flatten() for part in self.network.parts}
        views = {part: batch[part][index] for part, index in present.items()}
        n_views = next(iter(views.values())).shape[1]
        if self.network.shared:
            parts = [part for part in self.network.parts if len(present[part])]
            if not parts:
                raise ValueError("a batch without any crop")
            flat = self.network.embed(self._images(torch.cat([views[p] for p in parts])), parts[0])
            chunks = flat.view(-1, n_views, flat.shape[-1]).split([len(present[p]) for p in parts])
            return {part: (chunk, present[part]) for part, chunk in zip(parts, chunks)}
        out = {}
        for part in self.network.parts:
            if len(present[part]):
                flat = self.network.embed(self._images(views[part]), part)
                out[part] = (flat.view(len(present[part]), n_views, -1), present[part])
        return out

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.terms(self.embed(batch))

    def terms(self, embedded: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """The loss terms of already embedded views (see :meth:`embed`)."""
        anchor = next(iter(embedded.values()))[0]
        zero = anchor.sum() * 0.0
        terms = {"face": zero, "body": zero, "identity": zero}
        for part, (emb, _) in embedded.items():
            if self.weights[part] > 0:
                terms[part] = self.infonce.two_views(emb[:, STRONG_1], emb[:, STRONG_2])
        if self.weights["identity"] > 0 and {"face", "body"} <= set(embedded):
            (face, face_at), (body, body_at) = embedded["face"], embedded["body"]
            both = np.intersect1d(face_at.cpu().numpy(), body_at.cpu().numpy())
            if len(both) >= 2:
                both_t = torch.from_numpy(both).to(face_at.device)
                face_rows = torch.searchsorted(face_at, both_t)
                body_rows = torch.searchsorted(body_at, both_t)
                labels = torch.arange(len(both), device=face.device)
                terms["identity"] = self.infonce(face[face_rows, WEAK], labels,
                                                 ref_emb=body[body_rows, WEAK], ref_labels=labels.clone())
        terms["loss"] = sum(self.weights[name] * terms[name] for name in ("face", "body", "identity"))
        return terms


def face_body_top1(face: Tensor, body: Tensor) -> float:
    """Mean of face->body and body->face top-1 (``(N, D)`` normalised, row i = one instance)."""
    if len(face) < 2:
        return float("nan")
    similarity = face @ body.T
    target = torch.arange(len(face), device=face.device)
    forward = (similarity.argmax(dim=1) == target).float().mean()
    backward = (similarity.argmax(dim=0) == target).float().mean()
    return float((forward + backward) / 2)


def _validator(objective: SSLObjective, loader: torch.utils.data.DataLoader,
               device: torch.device) -> Callable[[], dict[str, float]]:
    def validate() -> dict[str, float]:
        losses, faces, bodies = [], [], []
        for batch in loader:
            batch = {key: value.to(device) for key, value in batch.items()}
            embedded = objective.embed(batch)
            losses.append(float(objective.terms(embedded)["loss"]))
            if {"face", "body"} <= set(embedded):
                (face, face_at), (body, body_at) = embedded["face"], embedded["body"]
                both = batch["has_face"] & batch["has_body"]
                faces.append(face[both[face_at], WEAK])
                bodies.append(body[both[body_at], WEAK])
        metrics = {"loss": float(np.mean(losses))}
        if faces:
            metrics["face_body_top1"] = face_body_top1(torch.cat(faces), torch.cat(bodies))
        return metrics
    return validate


def train_ssl(config: SSLConfig, device: str | torch.device = "cpu", resume: bool = False,
              progress: bool = True) -> TrainResult:
    """Run stage 1 and write ``output_dir/ssl_model.pt`` (the best validated network, else the last).

    Raises:
        ConfigError: bad data or recipe values; ``ModelError``: unknown backbone.
    """
    target = resolve_device(device)
    data = prepare_training_data(config.data, config.train.seed, progress)
    for note in data.notes:
        log.info(note)
    model_cfg = config.model
    torch.manual_seed(config.train.seed)  # the head's random init
    network = build_facebody_network(model_cfg.backbone, config.data.parts, model_cfg.shared_backbone,
                                     model_cfg.hidden_dim, model_cfg.out_dim, model_cfg.pretrained,
                                     model_cfg.input_size)
    if model_cfg.freeze_fraction > 0:
        network.freeze_early(model_cfg.freeze_fraction)
    if model_cfg.freeze_backbone_norm:
        network.freeze_backbone_norms()
    channels_last = config.train.channels_last and target.type == "cpu"
    network = network.to(target)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    size, mean, std = network.input_size, network.mean, network.std
    views = [strong_view(size, mean, std, config.augment), strong_view(size, mean, std, config.augment)]
    if config.loss.identity_weight > 0:
        views.append(weak_view(size, mean, std, config.augment))
    train_set = MultiViewDataset(data.train, data.cache, network.parts, views, size)
    sampler = ShuffleBatchSampler(len(train_set), min(config.train.batch_size, len(train_set)),
                                  config.train.seed)
    loader = make_loader(train_set, sampler, config.data.num_workers)

    def batches(epoch: int, skip: int) -> torch.utils.data.DataLoader:
        sampler.set_position(epoch, skip)
        return loader

    objective = SSLObjective(network, config.loss, channels_last)
    scale = model_cfg.backbone_lr_scale

    def lr_scale(name: str) -> float:
        return scale if name.startswith("backbones.") else 1.0
    validate = None
    if len(data.val) >= 2:
        val_set = MultiViewDataset(data.val, data.cache, network.parts, views, size, seed=config.train.seed)
        val_sampler = ShuffleBatchSampler(len(val_set), min(config.train.batch_size, len(val_set)),
                                          config.train.seed, drop_last=False)
        validate = _validator(objective, make_loader(val_set, val_sampler, 0), target)
    result = fit(network, batches, objective, config.train, config.output_dir, target, validate,
                 monitor="loss", mode="min", resume=resume, progress=progress,
                 fingerprint=fingerprint(config), lr_scale=lr_scale)
    save_facebody_network(network, Path(config.output_dir) / SSL_MODEL_NAME)
    return result
