"""The Manga-MMTL recipe (``comicid train multimodal CONFIG.yaml``): M1-M5 on frozen image and text features.

Order and initialisation follow the paper: the uni-modal models M1 (image -> character), M2 (text ->
character) and M3 (text -> album) are trained first; M4 starts from M1's image branch and M2's text
branch, M5 from M1 (image branch and image classifier) and M3 (text branch and album head). Every
model trains with SGD (momentum 0.9), dropout 0.2 on each branch, cross-entropy, and early stopping
on the validation loss of its main task, through the shared loop (:func:`comicid.training.loop.fit`),
so checkpoints, resume and history are as for every other recipe.

Inputs are computed once: the image model's instance embeddings (a collection is imported and
embedded under ``output_dir/collection``, so a second run reuses crops and cached features) and the
text encoder's features of each instance's ``text`` (zero for instances without text). Only the
``data.splits`` rows with an identity train; identities are classes within their book
(``book/identity``), books are the album classes. ``val_fraction`` of each character's instances
(characters with at least two) is held out for early stopping.

Files: ``output_dir/<variant>/model.pt`` (a multimodal checkpoint, usable as ``--model`` and combinable
as ``--model A.pt+B.pt``) plus the loop's ``checkpoint.pt``/``best.pt``/``history.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from comicid.errors import ConfigError
from comicid.models.multimodal import (
    USES_IMAGE,
    VARIANTS,
    MultimodalNet,
    MultimodalSpec,
    load_multimodal,
    save_multimodal,
)
from comicid.models.text import DEFAULT_TEXT_ENCODER
from comicid.runtime import resolve_device
from comicid.training.config import TrainConfig
from comicid.training.loop import TrainResult, fit
from comicid.training.ssl import fingerprint

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
#: Who initialises whom (paper order): variant -> donors.
DONORS: dict[str, tuple[str, ...]] = {"M1": (), "M2": (), "M3": (), "M4": ("M1", "M2"), "M5": ("M1", "M3")}


@dataclass
class MultimodalDataConfig:
    """Training manifests; ``splits`` kept for training (never ``test``); ``collection`` keeps crops
    and cached image features (default ``output_dir/collection``)."""

    manifests: list[Path] = field(default_factory=list)
    splits: list[str] = field(default_factory=lambda: ["", "dev", "train"])
    val_fraction: float = 0.15
    collection: Path | None = None


@dataclass
class MultimodalConfig:
    """``comicid train multimodal``: which of M1-M5 to train and on what."""

    output_dir: Path
    data: MultimodalDataConfig = field(default_factory=MultimodalDataConfig)
    image_model: str = "default"
    text_model: str = DEFAULT_TEXT_ENCODER
    models: list[str] = field(default_factory=lambda: list(VARIANTS))
    hidden_dim: int = 512
    feature_dim: int = 256
    dropout: float = 0.2
    aux_weight: float = 0.5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=600, batch_size=64, lr=0.01, weight_decay=1e-4, warmup_steps=0, grad_clip=0.0, amp=False,
        checkpoint_every=0, val_every=20, patience=5, log_every=10, optimizer="sgd", momentum=0.9))

    def check(self) -> None:
        """Value checks a type cannot express (called by :func:`~comicid.training.config.load_config`)."""
        unknown = [name for name in self.models if name not in VARIANTS]
        if unknown or not self.models:
            raise ConfigError(f"models must be a non-empty subset of {list(VARIANTS)}, got {self.models}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.data.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.data.val_fraction}")
        if "test" in self.data.splits:
            raise ConfigError("data.splits must not include 'test': test identities are for scoring only")
        if self.aux_weight < 0:
            raise ConfigError("aux_weight must not be negative")


@dataclass
class Features:
    """Frozen inputs of the instances that train: image ``(N, Di)``, text ``(N, Dt)``, class codes."""

    image: np.ndarray
    text: np.ndarray
    characters: np.ndarray
    albums: np.ndarray
    character_names: list[str]
    album_names: list[str]


def split_validation(characters: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of each character's instances (characters with >= 2) held out."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for code in np.unique(characters):
        members = np.flatnonzero(characters == code)
        take = int(round(len(members) * fraction)) if len(members) >= 2 else 0
        val.extend(rng.permutation(members)[:min(take, len(members) - 1)].tolist())
    val_index = np.array(sorted(val), dtype=np.int64)
    return np.setdiff1d(np.arange(len(characters)), val_index), val_index


def losses(net: MultimodalNet, image: Tensor, text: Tensor, characters: Tensor, albums: Tensor,
           aux_weight: float) -> dict[str, Tensor]:
    """The variant's loss: its main cross-entropy, plus M5's weighted auxiliary terms."""
    logits = net(image, text)
    terms: dict[str, Tensor] = {}
    if "character" in logits:
        terms["character"] = F.cross_entropy(logits["character"], characters)
    if "album" in logits:
        terms["album"] = F.cross_entropy(logits["album"], albums)
    if "image_character" in logits:
        terms["image_character"] = F.cross_entropy(logits["image_character"], characters)
    main = terms["character"] if "character" in terms else terms["album"]
    aux = [terms[name] for name in ("album", "image_character") if name in terms and terms[name] is not main]
    terms["main"] = main
    terms["loss"] = main + aux_weight * sum(aux) if aux else main
    return terms


def train_variant(config: MultimodalConfig, variant: str, features: Features, donors: dict[str, MultimodalNet],
                  device: torch.device, progress: bool = True, resume: bool = False) -> tuple[TrainResult, MultimodalNet]:
    """Train one of M1-M5 on ``features``; ``donors`` are the trained uni-modal models to start from."""
    spec = MultimodalSpec(variant=variant, image_model=config.image_model, text_model=config.text_model,
                          image_dim=features.image.shape[1], text_dim=features.text.shape[1],
                          hidden_dim=config.hidden_dim, feature_dim=config.feature_dim, dropout=config.dropout)
    torch.manual_seed(config.train.seed)
    net = MultimodalNet(spec, len(features.character_names), len(features.album_names))
    for donor in DONORS[variant]:
        if donor in donors:
            copied = net.init_from(donors[donor])
            log.info("%s: %s initialised from %s", variant, ", ".join(copied) or "nothing", donor)
    net = net.to(device)
    image = torch.from_numpy(features.image).to(device)
    text = torch.from_numpy(features.text).to(device)
    characters = torch.from_numpy(features.characters).to(device)
    albums = torch.from_numpy(features.albums).to(device)
    train_index, val_index = split_validation(features.characters, config.data.val_fraction, config.train.seed)
    batch = config.train.batch_size

    def batches(epoch: int, skip: int) -> Iterator[Tensor]:
        order = torch.from_numpy(np.random.default_rng([config.train.seed, epoch]).permutation(train_index))
        starts = range(0, len(order) - batch + 1 if len(order) >= batch else 1, batch)
        return (order[start:start + batch] for i, start in enumerate(starts) if i >= skip)

    def step(rows: Tensor) -> dict[str, Tensor]:
        rows = rows.to(device)
        return losses(net, image[rows], text[rows], characters[rows], albums[rows], config.aux_weight)

    validate = None
    if len(val_index):
        val_rows = torch.from_numpy(val_index).to(device)

        def validate() -> dict[str, float]:
            terms = losses(net, image[val_rows], text[val_rows], characters[val_rows], albums[val_rows],
                           config.aux_weight)
            return {"main": float(terms["main"])}

    output = Path(config.output_dir) / variant
    result = fit(net, batches, step, config.train, output, device, validate, monitor="main", mode="min",
                 resume=resume, progress=progress, fingerprint=fingerprint(config) + variant)
    save_multimodal(net.cpu().eval(), features.character_names, features.album_names, output / MODEL_NAME)
    return result, net


def train_multimodal(config: MultimodalConfig, features: Features, device: str | torch.device = "cpu",
                     resume: bool = False, progress: bool = True) -> dict[str, tuple[TrainResult, Path]]:
    """Train ``config.models`` in paper order on frozen ``features`` (made by
    :func:`comicid.workflows.multimodal.compute_features`); returns ``variant -> (result, checkpoint path)``.

    A multimodal model whose donors are not in ``config.models`` starts from its donors' checkpoints
    in ``output_dir`` when they exist (a previous run), else from scratch (logged).
    """
    target = resolve_device(device)
    if features.image.shape[0] < 2:
        raise ConfigError("fewer than two labelled training instances")
    if any(USES_IMAGE[v] for v in config.models) and not np.isfinite(features.image).all():
        raise ConfigError("the image model produced non-finite features")
    trained: dict[str, MultimodalNet] = {}
    out: dict[str, tuple[TrainResult, Path]] = {}
    for variant in VARIANTS:
        if variant not in config.models:
            previous = Path(config.output_dir) / variant / MODEL_NAME
            if previous.is_file() and any(variant in DONORS[v] for v in config.models):
                trained[variant] = load_multimodal(previous)[0]
            continue
        result, net = train_variant(config, variant, features, trained, target, progress, resume)
        trained[variant] = net
        out[variant] = (result, Path(config.output_dir) / variant / MODEL_NAME)
    return out
