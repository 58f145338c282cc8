"""Adapt recipe: self-distillation of a small adapter on one collection's frozen features (CPU).

VideoClusterNet fine-tunes the whole face network per video. On two shared CPU cores a backbone step
runs at ~100 images/s, too slow for a few epochs over every crop and view, so the carry-over keeps the
backbone frozen and trains only what sits on top of it:

* the backbone's features are computed once per crop and per augmented view (``V`` views cost ``V``
  embedding passes, ~500 crops/s);
* the **student** is an :class:`Adapter`, a residual MLP that starts as the identity (its last layer
  is zero), followed by a DINO projection head that maps to ``K`` prototype logits;
* the **teacher** is an EMA copy of the student; the loss is
  :class:`comicid.losses.self_distillation.SelfDistillationLoss` on positive pairs only: two views of
  one crop, the face and body of one instance, two members of one group. No negatives are needed, so
  a wrong cannot-link-free guess costs little.

What this gives up: the adapter can only re-weight and bend features the ImageNet backbone already
computes; it cannot learn new visual cues (a line-art detail the backbone ignores stays ignored).
Adapting the last backbone block would recover some of that at ~20x the cost.

The loop is deliberately small rather than :func:`comicid.training.loop.fit`: the EMA teacher must be
updated after every optimiser step and ``fit`` has no after-step hook, and a round lasts seconds, so
its per-run output folder, schedule and step checkpoints would cost more than they save (resuming is
per round, in :class:`comicid.identity.adaptive.AdaptiveClusterer`). Sampling, one optimiser, EMA
update; deterministic for a given seed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from comicid.data.augment import AugmentConfig, strong_view
from comicid.data.images import load_image
from comicid.data.preprocess import letterbox
from comicid.losses.self_distillation import SelfDistillationLoss
from comicid.models.embed import embed_crops
from comicid.models.embedding_model import EmbeddingModel

#: Augmentation of the views used for quality and training pairs: milder crops than contrastive
#: pre-training (a view must still show the whole character), with the drawing-style changes.
VIEW_AUGMENT = {"strong_scale": (0.6, 1.0), "style_p": 0.5}


@dataclass
class AdaptConfig:
    """Hyper-parameters of the adapt recipe; the defaults are those the benchmark uses.

    ``epochs`` counts passes over the eligible instances as anchors, each paired with a random
    positive partner; ``hidden`` is the adapter's bottleneck width.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.04
    teacher_momentum: float = 0.99
    hidden: int = 256
    projection: int = 64
    prototypes: int = 256
    teacher_temperature: float = 0.04
    student_temperature: float = 0.1
    seed: int = 0


class Adapter(nn.Module):
    """Residual MLP on frozen features: ``normalise(x + up(gelu(down(x))))``.

    ``up`` starts at zero, so before training the adapter returns the normalised input unchanged and
    the adapted metric starts as the backbone's. Input and output are (B, D).
    """

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features, dim=-1)
        return F.normalize(features + self.up(F.gelu(self.down(features))), dim=-1)


class DistillNetwork(nn.Module):
    """Adapter plus DINO head: adapted embedding -> MLP -> unit bottleneck -> cosine prototype logits."""

    def __init__(self, dim: int, config: AdaptConfig) -> None:
        super().__init__()
        self.adapter = Adapter(dim, config.hidden)
        self.projector = nn.Sequential(nn.Linear(dim, config.hidden), nn.GELU(),
                                       nn.Linear(config.hidden, config.projection))
        self.prototypes = nn.Parameter(torch.randn(config.prototypes, config.projection) * 0.1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bottleneck = F.normalize(self.projector(self.adapter(features)), dim=-1)
        return bottleneck @ F.normalize(self.prototypes, dim=-1).T


class PairSampler:
    """Draws positive pairs (view a of instance i, view b of instance j), i and j in one group.

    ``bank`` is (W, N, D) features with ``valid`` (W, N) marking which views exist (index 0 is the
    original crop; missing parts are invalid). Only ``eligible`` instances are anchors or partners,
    which keeps low-quality crops out of every training pair.
    """

    def __init__(self, valid: np.ndarray, groups: np.ndarray, eligible: np.ndarray, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.anchors = np.flatnonzero(eligible)
        order = self.anchors[np.argsort(groups[self.anchors], kind="stable")]
        self.by_group = order
        sorted_groups = groups[order]
        self.start = np.searchsorted(sorted_groups, groups, side="left")
        self.count = np.searchsorted(sorted_groups, groups, side="right") - self.start
        self.view_count = valid.sum(axis=0)
        self.view_table = np.argsort(~valid, axis=0, kind="stable")  # valid view indices first, per instance

    def _views(self, instances: np.ndarray) -> np.ndarray:
        offset = (self.rng.random(len(instances)) * self.view_count[instances]).astype(np.int64)
        return self.view_table[offset, instances]

    def sample(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        anchor = self.rng.choice(self.anchors, size=size)
        partner = self.by_group[self.start[anchor] + (self.rng.random(size) * self.count[anchor]).astype(np.int64)]
        return self._views(anchor), anchor, self._views(partner), partner


def train_adapter(bank: np.ndarray, valid: np.ndarray, groups: np.ndarray, eligible: np.ndarray,
                  config: AdaptConfig | None = None, start: DistillNetwork | None = None,
                  progress: bool = False, description: str = "adapt") -> DistillNetwork:
    """Train a student on positive pairs against an EMA teacher; return the teacher.

    Args:
        bank: (W, N, D) float features; view 0 is each instance's original embedding.
        valid: (W, N) boolean, which views exist.
        groups: (N,) group labels; pairs are drawn within groups.
        eligible: (N,) boolean, instances that may appear in pairs.
        start: a network to continue from (the previous round's teacher), else a fresh one.

    The teacher is returned because its weights are an average over the run, which DINO found to be
    the better model for downstream use.
    """
    config = config or AdaptConfig()
    torch.manual_seed(config.seed)
    dim = bank.shape[2]
    student = copy.deepcopy(start) if start is not None else DistillNetwork(dim, config)
    for parameter in student.parameters():  # a previous round's teacher arrives frozen
        parameter.requires_grad_(True)
    teacher = copy.deepcopy(student)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    criterion = SelfDistillationLoss(config.prototypes, config.teacher_temperature, config.student_temperature)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    features = torch.as_tensor(np.asarray(bank, dtype=np.float32))
    sampler = PairSampler(np.asarray(valid, dtype=bool), np.asarray(groups), np.asarray(eligible, dtype=bool),
                          config.seed)
    steps_per_epoch = max(1, int(np.ceil(len(sampler.anchors) / config.batch_size)))
    steps = config.epochs * steps_per_epoch if len(sampler.anchors) else 0
    student.train()
    for _ in tqdm(range(steps), desc=description, disable=not progress, leave=False):
        view_a, index_a, view_b, index_b = (torch.as_tensor(x) for x in sampler.sample(config.batch_size))
        first, second = features[view_a, index_a], features[view_b, index_b]
        both = torch.cat([first, second])
        student_logits = student(both)
        with torch.no_grad():
            teacher_logits = teacher(both)
        half = len(first)
        # each side of a pair learns to predict the teacher's view of the other side
        swapped = torch.cat([teacher_logits[half:], teacher_logits[:half]])
        loss = criterion(student_logits, swapped)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        # Hand-written rather than timm.utils.ModelEmaV3: timm updates by lerp, ema + (1-m)(x - ema), which
        # rounds differently from DINO's m*ema + (1-m)*x that the shipped recipe and benchmarks were made
        # with (max |diff| 2.7e-7 after 200 steps at m=0.99, measured), so results would not reproduce.
        with torch.no_grad():
            for teacher_parameter, student_parameter in zip(teacher.parameters(), student.parameters(), strict=True):
                teacher_parameter.mul_(config.teacher_momentum).add_(student_parameter.detach(),
                                                                     alpha=1 - config.teacher_momentum)
    teacher.eval()
    return teacher


@torch.no_grad()
def apply_adapter(adapter: Adapter, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Adapted, L2-normalised embeddings for features of shape (..., D); same leading shape."""
    features = np.asarray(features, dtype=np.float32)
    flat = features.reshape(-1, features.shape[-1])
    out = np.concatenate([adapter(torch.as_tensor(flat[i: i + batch_size])).numpy()
                          for i in range(0, len(flat), batch_size)]) if len(flat) else flat
    return out.reshape(features.shape[:-1] + (out.shape[-1],))


def embed_views(crops: Sequence[object], model: EmbeddingModel, n_views: int = 4, seed: int = 0,
                batch_size: int = 64, progress: bool = False, device: str | torch.device = "cpu") -> np.ndarray:
    """(n_views, N, part_dim) float32 part features of augmented views of each crop.

    ``crops`` are PIL images or image paths, ``model`` a :class:`comicid.models.EmbeddingModel`. Each
    view is a random crop, flip, colour jitter and, half of the time, a drawing-style change (see
    :mod:`comicid.data.augment`): the engine :func:`~comicid.models.embed.embed_crops` runs with that
    transform in place of its letterbox. View ``v`` is seeded with ``seed * 1000 + v``, so views are
    reproducible. Images are decoded once and kept in memory for all views.
    """
    images = [crop if isinstance(crop, Image.Image) else load_image(crop) for crop in crops]
    # Crops are shrunk once to the canvas the view transform letterboxes to anyway.
    canvas = round(model.input_size * 1.25)
    images = [letterbox(image, canvas) for image in images]
    transform = strong_view(model.input_size, model.mean, model.std, AugmentConfig(**VIEW_AUGMENT))
    out = np.zeros((n_views, len(images), model.part_dim), dtype=np.float32)
    for view in range(n_views):
        torch.manual_seed(seed * 1000 + view)
        out[view] = embed_crops(images, model, batch_size=batch_size, device=device, progress=progress,
                                transform=transform, desc=f"embed view {view + 1}/{n_views}")
    return out
