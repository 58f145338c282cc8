"""Typed recipe configs, read from YAML with one clear :class:`ConfigError` per mistake.

A recipe file has one section per dataclass below (``data``, ``model``, ``augment``, ``loss``,
``train``, plus recipe-specific keys). Every key is checked: an unknown key names the section and
lists the allowed ones (a typo such as ``lerning_rate`` must not silently train with the default), a
value of the wrong type names the key and the expected type. Relative paths are resolved against the
YAML file's folder, so a recipe and its data can move together; nothing is tied to one machine.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from comicid.data.augment import AugmentConfig
from comicid.errors import ConfigError
from comicid.models.facebody import CUTS
from comicid.yaml_file import read_yaml

T = TypeVar("T")

#: Stage-2 projector starts (see :class:`FinetuneConfig`).
PROJECTOR_INITS = ("pca", "orthogonal", "random")
#: ``train.optimizer`` and ``train.schedule`` values (see :class:`TrainConfig`).
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "step")


@dataclass
class DataConfig:
    """Where instances come from and how they are grouped.

    ``splits``: manifest ``split`` values kept for training (``test`` identities are never trained
    on by the shipped recipes). ``val_manifests``, when given, are the validation set; otherwise
    ``val_fraction`` of the books (of the groups, for a single book) is held out.
    ``max_instances`` caps the training instances (0 = all), for quick runs.
    """

    manifests: list[Path] = field(default_factory=list)
    splits: list[str] = field(default_factory=lambda: ["", "dev", "train"])
    parts: list[str] = field(default_factory=lambda: ["face", "body"])
    group_by: str = "sequence"
    label_scope: str = "group"
    val_manifests: list[Path] = field(default_factory=list)
    val_fraction: float = 0.1
    crop_max_side: int = 160
    cache_dir: Path | None = None
    num_workers: int = 0
    max_instances: int = 0


@dataclass
class ModelConfig:
    """The stage-1 network. ``freeze_fraction`` freezes that share of the backbone's parameter
    tensors, earliest first (stem and early blocks: generic edges that need no re-learning and
    whose backward pass is the most expensive on CPU); their BatchNorm layers stay in eval mode.
    ``backbone_lr_scale`` multiplies the learning rate of the (unfrozen) backbone parameters: below 1
    it keeps pretrained features from being washed out by the randomly initialised head.
    ``freeze_backbone_norm`` keeps every backbone BatchNorm in eval mode (its running statistics
    stay the pretrained ones, which a few dozen steps of augmented batches would otherwise replace)."""

    backbone: str = "effnet-lite0-imagenet"
    pretrained: bool = True
    input_size: int = 128
    shared_backbone: bool = True
    hidden_dim: int = 512
    out_dim: int = 128
    freeze_fraction: float = 0.0
    backbone_lr_scale: float = 1.0
    freeze_backbone_norm: bool = False


@dataclass
class TrainConfig:
    """The shared loop (see :mod:`comicid.training.loop`). ``steps`` counts optimiser steps.

    ``val_every``/``checkpoint_every`` are in steps (0 = only at the end); ``patience`` is the number
    of validations without improvement before early stopping (0 = never stop early).
    ``optimizer``: ``adamw`` (default), ``adam`` or ``sgd`` (with ``momentum``, Nesterov off, as the
    BoT recipe). The learning rate rises linearly from ``warmup_start * lr`` to ``lr`` over
    ``warmup_steps``, then follows ``schedule``: ``cosine`` down to 0, or ``step`` (multiplied by
    ``gamma`` at each of ``milestones``, fractions of ``steps``).
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_start: float = 0.0
    schedule: str = "cosine"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    grad_clip: float = 1.0
    amp: bool = True
    channels_last: bool = True
    checkpoint_every: int = 200
    val_every: int = 200
    patience: int = 0
    log_every: int = 10
    seed: int = 0
    threads: int = 0


@dataclass
class SSLLossConfig:
    """Weights of the three InfoNCE terms; a weight of 0 switches a term off (ablations)."""

    temperature: float = 0.07
    face_weight: float = 1.0
    body_weight: float = 1.0
    identity_weight: float = 1.0


@dataclass
class SSLConfig:
    """Stage 1 (``comicid train ssl``): writes ``output_dir/ssl_model.pt``."""

    output_dir: Path
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: SSLLossConfig = field(default_factory=SSLLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class FinetuneLossConfig:
    """``contrastive`` (PML ContrastiveLoss on all pairs) or ``triplet`` (PML TripletMarginLoss with
    ``margin`` on the pairs of PML's MultiSimilarityMiner with ``miner_epsilon``), both computed
    inside each group of the batch. ``cross_book_negatives`` adds to every group one instance of each
    other book in the batch as a certain negative."""

    name: str = "triplet"
    margin: float = 0.2
    miner_epsilon: float = 0.2
    pos_margin: float = 0.0
    neg_margin: float = 1.0
    cross_book_negatives: bool = True


@dataclass
class ExportConfig:
    """Where the embedding model goes (default ``output_dir/model.pt``), and whether in fp16."""

    path: Path | None = None
    half: bool = False


@dataclass
class FinetuneConfig:
    """Stage 2 (``comicid train finetune``): frozen stage-1 network, trained fusion + projector.

    ``ssl_checkpoint``: the stage-1 network; ``null`` is the control without stage 1, the registry
    ``backbone`` at ``input_size`` with its pretrained weights (only with ``cut: backbone``).
    ``cut``: ``hidden`` (the paper: before the stage-1 head's last projection) or ``backbone`` (the
    backbone's pooled features; the stage-1 head is dropped). ``colour_weight``: 0 = off; above 0
    the part features are ``cat(normalise(cnn), colour_weight * normalise(color-hist histogram))``.
    ``projector_init``: ``pca`` (rows = the top principal directions of the training part features,
    bias 0: the start keeps as much of its input as 256 dimensions can), ``orthogonal`` (a random
    orthonormal map, bias 0) or ``random`` (PyTorch's default ``Linear`` init). A random start fitted
    on ~1,000 labels loses more ImageNet information than it learns (docs/TRAINING.md).
    ``feature_views``: augmented views per part embedded once by the frozen network (plus one
    clean view); training then samples among them instead of running the backbone every step.
    """

    output_dir: Path
    ssl_checkpoint: Path | None
    data: DataConfig = field(default_factory=lambda: DataConfig(val_fraction=0.2))
    backbone: str = "effnet-lite0-imagenet"
    input_size: int = 128
    cut: str = "hidden"
    colour_weight: float = 0.0
    projector_init: str = "random"
    fusion: str = "sum"
    out_dim: int = 256
    feature_views: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: FinetuneLossConfig = field(default_factory=FinetuneLossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=500, lr=1e-3, warmup_steps=20,
                                                                   val_every=50, patience=5))
    export: ExportConfig = field(default_factory=ExportConfig)


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _convert(value: Any, kind: Any, where: str, base: Path) -> Any:
    """``value`` read from YAML as ``kind``, or a ConfigError naming ``where``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where, base)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, where, base)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]", base) for i, (v, a) in enumerate(zip(value, args)))
        items = [_convert(v, args[0], f"{where}[{i}]", base) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if kind is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(kind)}")  # pragma: no cover - a bug


# Configs are plain dataclasses checked by this small typed builder (unknown keys refused, like pydantic's
# extra="forbid"): recipes defined elsewhere (bot, multimodal) subclass them without a second model
# layer, and errors name the YAML key path the way the CLI prints them. A move to pydantic v2 is open.
def _build(cls: type[T], values: Any, where: str, base: Path) -> T:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        section = f"section '{where}'" if where else "the top level"
        raise ConfigError(f"unknown key(s) {unknown} in {section}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], key, base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{key}'")
    return cls(**kwargs)


def _check_training(config: Any) -> None:
    """Checks of the shared loop's ``train`` section and of ``data.manifests``, for recipes that train."""
    train = config.train
    for name in ("steps", "batch_size"):
        if getattr(train, name) < 1:
            raise ConfigError(f"train.{name} must be at least 1, got {getattr(train, name)}")
    for name in ("lr", "grad_clip"):
        if getattr(train, name) < 0:
            raise ConfigError(f"train.{name} must not be negative")
    if train.warmup_steps < 0 or (train.warmup_steps and train.warmup_steps >= train.steps):
        raise ConfigError(f"train.warmup_steps must be in [0, steps), got {train.warmup_steps}")
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {list(OPTIMIZERS)}, got '{train.optimizer}'")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {list(SCHEDULES)}, got '{train.schedule}'")
    if not 0.0 <= train.warmup_start <= 1.0:
        raise ConfigError(f"train.warmup_start must be in [0, 1], got {train.warmup_start}")
    if not config.data.manifests:
        raise ConfigError("data.manifests: give at least one training manifest")


def _check(config: Any) -> None:
    """Value checks a type cannot express: the training loop's sections when the recipe has them (a fitted
    discriminant head has none), then the recipe's own ``check()`` or the checks of the recipes defined here."""
    if hasattr(config, "train"):
        _check_training(config)
    custom_check = getattr(config, "check", None)
    if callable(custom_check):  # recipes defined outside this module check their own sections
        custom_check()
        return
    if isinstance(config, SSLConfig):
        if not 0.0 <= config.model.freeze_fraction < 1.0:
            raise ConfigError(f"model.freeze_fraction must be in [0, 1), got {config.model.freeze_fraction}")
        if config.model.backbone_lr_scale < 0:
            raise ConfigError("model.backbone_lr_scale must not be negative")
        weights = (config.loss.face_weight, config.loss.body_weight, config.loss.identity_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ConfigError("loss weights must be non-negative and not all zero")
        if config.loss.temperature <= 0:
            raise ConfigError("loss.temperature must be positive")
    elif isinstance(config, FinetuneConfig):
        if config.loss.name not in ("contrastive", "triplet"):
            raise ConfigError(f"loss.name must be 'contrastive' or 'triplet', got '{config.loss.name}'")
        if config.feature_views < 0:
            raise ConfigError("feature_views must not be negative")
        if config.cut not in CUTS:
            raise ConfigError(f"cut must be one of {list(CUTS)}, got '{config.cut}'")
        if config.ssl_checkpoint is None and config.cut != "backbone":
            raise ConfigError("ssl_checkpoint: null (no stage 1) needs cut: backbone; "
                              "the 'hidden' cut is part of the stage-1 network")
        if config.colour_weight < 0:
            raise ConfigError(f"colour_weight must not be negative, got {config.colour_weight}")
        if config.projector_init not in PROJECTOR_INITS:
            raise ConfigError(f"projector_init must be one of {list(PROJECTOR_INITS)}, got '{config.projector_init}'")


def load_config(path: str | Path, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read a recipe YAML into ``cls`` (``SSLConfig`` or ``FinetuneConfig``), fully checked.

    ``overrides`` are merged into the top-level mapping before checking (one level deep for
    sections), so scripts can shorten a recipe without copying its file.
    """
    path = Path(path)
    raw = read_yaml(path, "config")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config '{path}' must be a mapping of sections")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    try:
        config = _build(cls, raw, "", path.parent.resolve())
        _check(config)  # runs a recipe's own check() too (e.g. multimodal, bot)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return config
