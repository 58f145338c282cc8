"""The BoT re-ID recipe for drawn characters (``comicid train bot CONFIG``).

Luo et al.'s "Bag of Tricks" baseline as Deng, Xie & Liu (2024) use it for cartoon faces, on the
shared loop (:mod:`comicid.training.loop`):

* **P x K batches** (:mod:`comicid.data.samplers`): P identities x K crops; with
  ``loss.cross_domain`` the K crops of an identity are spread over its domains (drawing styles);
* **network** (:mod:`comicid.models.bot`): a registry trunk with last stride 1, GAP or GeM, BNNeck;
* **losses**: label-smoothed cross-entropy (epsilon 0.1) on the bias-free classifier over
  ``BN(f_t)``; batch-hard triplet on ``f_t`` (Euclidean, soft margin or margin 0.3; PML's
  ``TripletMarginLoss`` + ``BatchHardMiner``, or the cross-domain miner
  :func:`~comicid.losses.cross_domain.cross_domain_batch_hard`); optional center loss (beta 5e-4);
* **views**: flip, pad-and-crop, random erasing and the project's drawing styles
  (:func:`~comicid.data.augment.reid_view`);
* **schedule**: SGD, linear warm-up 1e-3 -> 1e-2 over ``warmup_epochs``, x0.1 at half and three
  quarters of the run, 40 epochs by default (Adam/AdamW and cosine are config switches);
  validation MAP@R on held-out identities picks the best weights and stops early.

Phases, each in its own sub-folder of ``output_dir`` with its own loop checkpoint (``--resume``
continues the unfinished one and skips finished ones):

1. ``train``: the primary data; with **multi-domain learning** (``mdl.secondary_manifests``) it also
   holds the first ``mdl.secondary_identities`` identities of the secondary data (manifest order, so
   the same ones every epoch) and is followed by
2. ``finetune``: the primary data only, the first ``mdl.freeze_stages`` trunk stages frozen,
   backbone learning rate ``mdl.backbone_lr`` and head learning rate ``mdl.head_lr``;
3. ``pseudo`` (``--pseudo-label UNLABELLED.csv``): the current model embeds the rows of that
   manifest without ``identity``, identity mining (:func:`comicid.identity.mining.mine_identities`)
   labels the confident ones (never two instances of one panel alike), and training continues on the
   labelled data plus these pseudo-identities for ``pseudo.epochs`` (after MDL, with its frozen
   stages and learning rates).

The exported model (``export_path``, default ``output_dir/model.pt``) is a comicid-model checkpoint
(:func:`~comicid.models.bot.save_bot_model`): ``--model PATH`` everywhere, ``comicid quantize PATH``
for its int8 graph. One training sample is one part crop (a face or a body): both go through the one
network, as at inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from torch import Tensor, nn
from torch.utils.data import Dataset

from comicid.data.augment import check_style_ops, clean_view, reid_view
from comicid.data.datasets import (
    CropCache,
    Instance,
    build_instances,
    instance_rows,
    make_loader,
    read_training_frame,
)
from comicid.data.manifest import read_manifest
from comicid.data.samplers import CrossDomainPKSampler, PKBatchSampler
from comicid.errors import ConfigError
from comicid.losses import CenterLoss, cross_domain_batch_hard
from comicid.models.bot import POOLINGS, BoTBackbone, BoTNetwork, save_bot_model
from comicid.runtime import resolve_device
from comicid.atomic import atomic_write, atomic_write_text
from comicid.training.config import DataConfig, TrainConfig
from comicid.training.finetune import scoped_retrieval
from comicid.training.loop import TrainResult, fit
from comicid.training.ssl import TrainingData, fingerprint, prepare_training_data

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"
PHASE_DONE = "phase.pt"
PSEUDO_LABELS_NAME = "pseudo_labels.csv"
TRIPLETS = ("soft", "margin", "none")
#: Centres move as BoT moves them (SGD, lr 0.5 on the unweighted center loss), whatever the net's lr.
CENTER_LR = 0.5


@dataclass
class BotDataConfig(DataConfig):
    """:class:`DataConfig` plus domains and an identity hold-out.

    ``domain_column``: the manifest column naming each crop's domain (drawing style, source); when a
    manifest lacks it, the first of ``domain_fallbacks`` it has is used. ``val_identities``: the
    share of identities held out for validation (chosen by a hash of the label, so fixed across
    runs) when no ``val_manifests`` are given; re-ID validates on unseen identities, so BoT does not
    use ``val_fraction`` (books).
    """

    splits: list[str] = field(default_factory=lambda: ["", "dev", "train"])
    group_by: str = "book"
    label_scope: str = "book"
    val_fraction: float = 0.0
    val_identities: float = 0.0
    domain_column: str = "domain"
    domain_fallbacks: list[str] = field(default_factory=lambda: ["style", "source"])


@dataclass
class BotModelConfig:
    """The BoT network (:class:`~comicid.models.bot.BoTBackbone`)."""

    backbone: str = "effnet-lite0-imagenet"
    pretrained: bool = True
    input_size: int = 128
    last_stride: int = 1
    pooling: str = "avg"


@dataclass
class BotLossConfig:
    """``triplet``: ``soft`` (soft-margin, softplus), ``margin`` (hinge at ``margin``) or ``none``.
    ``center_weight`` 0 is off (BoT: 5e-4). ``cross_domain`` takes each anchor's hardest positive and
    negative from other domains only, and samples batches to allow it."""

    triplet: str = "soft"
    margin: float = 0.3
    triplet_weight: float = 1.0
    id_weight: float = 1.0
    label_smoothing: float = 0.1
    center_weight: float = 0.0
    cross_domain: bool = False


@dataclass
class BotAugmentConfig:
    """See :func:`~comicid.data.augment.reid_view`."""

    pad: float = 0.08
    erasing_p: float = 0.5
    flip: bool = True
    style_ops: list[str] = field(default_factory=lambda: ["grayscale", "posterise", "pixelate", "halftone",
                                                          "lineart", "hue"])
    style_p: float = 0.3


@dataclass
class BotTrainConfig(TrainConfig):
    """The loop's settings with BoT's defaults; lengths in epochs (``steps``/``warmup_steps``/``val_every``
    are derived from them). An epoch is ``batches_per_epoch`` P x K batches (0: training crops // (P*K))."""

    epochs: int = 40
    warmup_epochs: int = 5
    val_every_epochs: int = 1
    p: int = 16
    k: int = 4
    batches_per_epoch: int = 0
    steps: int = 1
    warmup_steps: int = 0
    optimizer: str = "sgd"
    lr: float = 1e-2
    warmup_start: float = 0.1
    weight_decay: float = 5e-4
    schedule: str = "step"
    grad_clip: float = 0.0
    patience: int = 5
    log_every: int = 20


@dataclass
class MDLConfig:
    """Multi-domain learning; off while ``secondary_manifests`` is empty (see the module docstring).
    ``secondary_identities`` 0 takes them all."""

    secondary_manifests: list[Path] = field(default_factory=list)
    secondary_splits: list[str] = field(default_factory=lambda: ["", "dev", "train"])
    secondary_identities: int = 0
    finetune_epochs: int = 10
    freeze_stages: int = 2
    backbone_lr: float = 1e-3
    head_lr: float = 1e-2


@dataclass
class PseudoLabelConfig:
    """Identity mining for ``--pseudo-label``: radii (Euclidean between unit vectors; the paper's
    defaults) and the epochs of the re-training phase."""

    d_n: float = 0.49
    d_p: float = 0.23
    epochs: int = 10


@dataclass
class BotConfig:
    """``comicid train bot``: writes ``export_path`` (default ``output_dir/model.pt``)."""

    output_dir: Path
    data: BotDataConfig = field(default_factory=BotDataConfig)
    model: BotModelConfig = field(default_factory=BotModelConfig)
    augment: BotAugmentConfig = field(default_factory=BotAugmentConfig)
    loss: BotLossConfig = field(default_factory=BotLossConfig)
    train: BotTrainConfig = field(default_factory=BotTrainConfig)
    mdl: MDLConfig = field(default_factory=MDLConfig)
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    export_path: Path | None = None

    def check(self) -> None:
        """Value checks a type cannot express (called by :func:`~comicid.training.config.load_config`)."""
        train, loss = self.train, self.loss
        if train.epochs < 1 or not 0 <= train.warmup_epochs < train.epochs:
            raise ConfigError(f"train.epochs must be >= 1 and train.warmup_epochs in [0, epochs), got "
                              f"{train.epochs} and {train.warmup_epochs}")
        if train.p < 2 or train.k < 2:
            raise ConfigError(f"train.p and train.k must be at least 2, got {train.p} and {train.k}")
        if loss.triplet not in TRIPLETS:
            raise ConfigError(f"loss.triplet must be one of {list(TRIPLETS)}, got '{loss.triplet}'")
        if not 0.0 <= loss.label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {loss.label_smoothing}")
        weights = (loss.id_weight, loss.triplet_weight, loss.center_weight)
        if min(weights) < 0 or loss.id_weight + (loss.triplet_weight if loss.triplet != "none" else 0) == 0:
            raise ConfigError("loss weights must be non-negative, and the ID or triplet term must be on")
        if self.model.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {list(POOLINGS)}, got '{self.model.pooling}'")
        if self.data.val_fraction:
            raise ConfigError("data.val_fraction (books) is not used by BoT; hold out identities with "
                              "data.val_identities, or give data.val_manifests")
        if not 0.0 <= self.data.val_identities < 1.0:
            raise ConfigError(f"data.val_identities must be in [0, 1), got {self.data.val_identities}")
        check_style_ops(self.augment.style_ops, "augment.style_ops")
        if self.mdl.secondary_manifests and (self.mdl.finetune_epochs < 1 or self.mdl.freeze_stages < 0):
            raise ConfigError("mdl.finetune_epochs must be >= 1 and mdl.freeze_stages >= 0")
        if not 0 < self.pseudo.d_p < self.pseudo.d_n:
            raise ConfigError(f"pseudo.d_p must be in (0, d_n), got d_p={self.pseudo.d_p}, d_n={self.pseudo.d_n}")


@dataclass(frozen=True)
class Sample:
    """One training crop: which crop cache and row, its class and domain codes."""

    cache: int
    row: int
    label: int
    domain: int


@dataclass
class PseudoLabels:
    """What identity mining gave: instance keys of the unlabelled manifest and their labels (-1 = none)."""

    keys: list[str]
    labels: np.ndarray

    @property
    def coverage(self) -> float:
        return float((self.labels >= 0).mean()) if len(self.labels) else 0.0

    @property
    def identities(self) -> int:
        return int(len(np.unique(self.labels[self.labels >= 0])))


@dataclass
class BotResult:
    """Per phase the loop's result, the exported model, and the pseudo-labels when mined."""

    phases: dict[str, TrainResult]
    model_path: Path
    pseudo: PseudoLabels | None = None
    notes: list[str] = field(default_factory=list)


class _CropSamples(Dataset):
    """Item ``i``: ``{"image": (3, S, S), "label", "domain"}`` of sample ``i`` under ``view``."""

    def __init__(self, samples: Sequence[Sample], caches: Sequence[CropCache], view: Callable) -> None:
        self.samples, self.caches, self.view = list(samples), list(caches), view

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self.samples[index]
        return {"image": self.view(self.caches[sample.cache].get(sample.row)),
                "label": torch.tensor(sample.label), "domain": torch.tensor(sample.domain)}


def domain_values(frame: pd.DataFrame, config: BotDataConfig, where: str, required: bool) -> pd.Series:
    """Each row's domain: its ``config.domain_column`` value, else its first non-empty fallback column.

    Row by row, so manifests that name their domains differently (``style`` in one, ``view`` in
    another) can be trained together; a row with none of them has the domain ``""``.

    Raises:
        ConfigError: ``required`` (cross-domain triplets) and the frame has none of those columns.
    """
    columns = [column for column in [config.domain_column, *config.domain_fallbacks]
               if column in frame.columns and (frame[column].fillna("").astype(str) != "").any()]
    if not columns:
        if required:
            raise ConfigError(f"{where}: no '{config.domain_column}' column (nor any of {config.domain_fallbacks}) "
                              f"with values names the domain of each crop; add one, set data.domain_column, "
                              f"or set loss.cross_domain: false")
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    values = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for column in reversed(columns):  # the first column wins where it has a value
        own = frame[column].fillna("").astype(str)
        values = own.where(own != "", values)
    return values


def _held_out(label: str, share: float) -> bool:
    """Whether an identity is held out for validation: a hash of its label, so fixed across runs."""
    digest = hashlib.sha1(label.encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2 ** 32 < share


def embed_instances(backbone: BoTBackbone, instances: Sequence[Instance], cache: CropCache,
                    device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Instance embeddings ``(N, D)``, L2-normalised, as inference makes them: the sum of the
    normalised ``BN(f_t)`` of each part's clean (letterboxed) crop, normalised."""
    view = clean_view(backbone.input_size, backbone.mean, backbone.std)
    owners = [(index, row) for index, instance in enumerate(instances) for row in instance.rows.values()]
    summed = torch.zeros(len(instances), backbone.feature_dim)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        for start in range(0, len(owners), batch_size):
            chunk = owners[start:start + batch_size]
            images = torch.stack([view(cache.get(row)) for _, row in chunk]).to(device)
            if device.type == "cpu":
                images = images.contiguous(memory_format=torch.channels_last)
            parts = nn.functional.normalize(backbone(images).float().cpu(), dim=1)
            summed.index_add_(0, torch.tensor([index for index, _ in chunk]), parts)
    backbone.train(was_training)
    return nn.functional.normalize(summed, dim=1).numpy()


class BotObjective:
    """The loss of one batch: ``{"loss", "id", "triplet", "center"}`` (unweighted terms)."""

    def __init__(self, network: BoTNetwork, center: CenterLoss | None, config: BotLossConfig,
                 channels_last: bool) -> None:
        self.network, self.center, self.config = network, center, config
        self.channels_last = channels_last
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # BoT's triplet: Euclidean distance on the raw pooled feature f_t, mean over all anchors.
        self.distance = distances.LpDistance(normalize_embeddings=False, p=2, power=1)
        soft = config.triplet == "soft"
        self.triplet = losses.TripletMarginLoss(margin=0.0 if soft else config.margin, smooth_loss=soft,
                                                distance=self.distance, reducer=reducers.MeanReducer())
        self.miner = miners.BatchHardMiner(distance=self.distance)

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images = batch["image"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels, domains = batch["label"], batch["domain"]
        pooled, _, logits = self.network(images)
        zero = pooled.sum() * 0.0
        terms = {"id": self.cross_entropy(logits, labels), "triplet": zero, "center": zero}
        if self.config.triplet != "none":
            if self.config.cross_domain:
                triplets = cross_domain_batch_hard(pooled, labels, domains, self.distance)
            else:
                triplets = self.miner(pooled, labels)
            if len(triplets[0]):
                terms["triplet"] = self.triplet(pooled, labels, triplets)
        if self.center is not None:
            terms["center"] = self.center(pooled, labels)
        terms["loss"] = (self.config.id_weight * terms["id"] + self.config.triplet_weight * terms["triplet"]
                         + self.config.center_weight * terms["center"])
        return terms


class _Trainable(nn.Module):
    """What the loop optimises and checkpoints: the network and, when on, the center-loss centres."""

    def __init__(self, network: BoTNetwork, center: CenterLoss | None) -> None:
        super().__init__()
        self.network = network
        self.center = center

    def no_weight_decay(self) -> set[str]:
        """The centres follow their features at BoT's large learning rate; weight decay would shrink them."""
        return {"center.centers"} if self.center is not None else set()


@dataclass
class _Labelled:
    """Training data of one source: its instances, crops, per-instance domain, and where it came from."""

    data: TrainingData
    domains: list[str]


def _load_labelled(config: BotDataConfig, manifests: Sequence[Path], splits: Sequence[str], seed: int,
                   progress: bool, domains_required: bool, val_manifests: Sequence[Path] = ()) -> _Labelled:
    data_config = dataclasses.replace(config, manifests=list(manifests), splits=list(splits),
                                      val_manifests=list(val_manifests))
    where = ", ".join(str(path) for path in manifests)
    frame, _ = read_training_frame(manifests, splits)
    if not (frame["identity"] != "").any():
        raise ConfigError(f"{where}: no row with an identity in splits {list(splits)}; BoT trains on labelled "
                          f"rows (unlabelled ones go to --pseudo-label)")
    domain_values(frame, config, where, domains_required)  # a missing domain column fails before any crop is cut
    data = prepare_training_data(data_config, seed, progress, require_labels=True)
    values = domain_values(data.frame, config, where, domains_required)
    domains = [values.iloc[next(iter(instance.rows.values()))] for instance in data.train]
    return _Labelled(data, domains)


def _split_identities(labelled: _Labelled, share: float) -> tuple[list[int], list[int]]:
    if share <= 0:
        return list(range(len(labelled.data.train))), []
    held = [i for i, instance in enumerate(labelled.data.train) if _held_out(instance.label, share)]
    kept = sorted(set(range(len(labelled.data.train))) - set(held))
    return kept, held


class _Coder:
    """Integer codes for class labels and domains, in order of first appearance (primary data first)."""

    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.domains: dict[str, int] = {}

    def samples(self, cache: int, instances: Iterable[Instance], domains: Iterable[str]) -> list[Sample]:
        out = []
        for instance, domain in zip(instances, domains, strict=True):
            label = self.labels.setdefault(instance.label, len(self.labels))
            code = self.domains.setdefault(domain, len(self.domains))
            out += [Sample(cache, row, label, code) for row in instance.rows.values()]
        return out


def _first_identities(instances: Sequence[Instance], count: int) -> set[str]:
    """The first ``count`` distinct labels in manifest order (all when ``count`` is 0)."""
    order = list(dict.fromkeys(instance.label for instance in instances))
    return set(order if count <= 0 else order[:count])


def _phase(name: str, config: BotConfig, trainable: _Trainable, samples: list[Sample], caches: list[CropCache],
           epochs: int, target: torch.device, validate: Callable[[], dict[str, float]] | None, resume: bool,
           progress: bool, lr: float | None = None, lr_scale: Callable[[str], float] | None = None,
           salt: str = "") -> TrainResult:
    """Train ``trainable`` on ``samples`` for ``epochs`` in ``output_dir/name`` (skipped if already done)."""
    folder = Path(config.output_dir) / name
    done = folder / PHASE_DONE
    # Phases before re-training do not depend on the pseudo-label settings or the export path, so a
    # pseudo-label run can resume from (and reuse) a finished run of the same recipe.
    stamp = f"{fingerprint(dataclasses.replace(config, pseudo=PseudoLabelConfig(), export_path=None))}:{name}:{salt}"
    if resume and done.is_file():
        state = torch.load(done, map_location=target, weights_only=True)
        if state.get("fingerprint") != stamp:
            raise ConfigError(f"--resume: phase '{name}' in '{folder}' was made by a different recipe; "
                              f"use another output_dir or run without --resume")
        trainable.load_state_dict(state["model"])
        log.info("phase '%s' already finished; loaded its weights", name)
        return TrainResult(steps=0)
    train = config.train
    labels = [sample.label for sample in samples]
    batches_per_epoch = train.batches_per_epoch or max(1, len(samples) // (train.p * train.k))
    if config.loss.cross_domain:
        sampler: PKBatchSampler | CrossDomainPKSampler = CrossDomainPKSampler(
            labels, [sample.domain for sample in samples], train.p, train.k, batches_per_epoch, train.seed)
    else:
        sampler = PKBatchSampler(labels, train.p, train.k, batches_per_epoch, train.seed)
    if sampler.left_out:
        log.info("phase '%s': %d identities appear in one domain only and are not sampled", name, sampler.left_out)
    size, mean, std = config.model.input_size, trainable.network.backbone.mean, trainable.network.backbone.std
    view = reid_view(size, mean, std, config.augment.pad, config.augment.erasing_p, config.augment.flip,
                     config.augment.style_ops, config.augment.style_p)
    loader = make_loader(_CropSamples(samples, caches, view), sampler, config.data.num_workers)
    steps = epochs * batches_per_epoch
    warmup = min(train.warmup_epochs * batches_per_epoch, steps - 1) if epochs > train.warmup_epochs else 0
    loop_config = dataclasses.replace(train, steps=steps, warmup_steps=warmup, lr=lr if lr is not None else train.lr,
                                      val_every=max(1, train.val_every_epochs) * batches_per_epoch,
                                      checkpoint_every=min(train.checkpoint_every or batches_per_epoch,
                                                           batches_per_epoch))

    def batches(epoch: int, skip: int) -> torch.utils.data.DataLoader:
        sampler.set_position(epoch, skip)
        return loader

    channels_last = train.channels_last and target.type == "cpu"
    objective = BotObjective(trainable.network, trainable.center, config.loss, channels_last)
    log.info("phase '%s': %d crops, %d classes, %d epochs x %d batches of %d x %d", name, len(samples),
             len(set(labels)), epochs, batches_per_epoch, train.p, train.k)
    result = fit(trainable, batches, objective, loop_config, folder, target, validate, monitor="map_at_r",
                 mode="max", resume=resume and (folder / "checkpoint.pt").is_file(), progress=progress,
                 fingerprint=stamp, lr_scale=lr_scale)
    with atomic_write(done, "wb") as handle:
        torch.save({"fingerprint": stamp, "model": trainable.state_dict()}, handle)
    return result


def _new_trainable(backbone: BoTBackbone, n_classes: int, config: BotConfig, target: torch.device,
                   previous: BoTNetwork | None = None) -> _Trainable:
    """A network over ``n_classes``; the first rows of ``previous``'s classifier carry over (same codes)."""
    network = BoTNetwork(backbone, n_classes)
    if previous is not None:
        rows = min(n_classes, previous.classifier.out_features)
        with torch.no_grad():
            network.classifier.weight[:rows] = previous.classifier.weight[:rows].to(network.classifier.weight)
    center = CenterLoss(n_classes, backbone.feature_dim) if config.loss.center_weight > 0 else None
    trainable = _Trainable(network, center).to(target)
    if target.type == "cpu" and config.train.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    return trainable


def _center_scale(config: BotConfig, lr: float) -> Callable[[str], float]:
    weight = config.loss.center_weight

    def scale(name: str) -> float:
        return CENTER_LR / (lr * weight) if name.startswith("center.") and weight > 0 else 1.0
    return scale


#: ``labeler(features (N, D) L2-normalised, *, d_n, d_p, groups) -> labels (N,)``, -1 = unlabelled:
#: :func:`comicid.identity.mine_identities`. Passed in because identity assignment sits above training
#: in the layers (its adaptive method trains), so a recipe cannot import it.
PseudoLabeler = Callable[..., np.ndarray]


def mine_pseudo_labels(backbone: BoTBackbone, manifest: Path, config: BotConfig, target: torch.device,
                       progress: bool, labeler: PseudoLabeler) -> tuple[PseudoLabels, list[Instance], CropCache,
                                                                        list[str]]:
    """Embed the rows of ``manifest`` without identity and label them with ``labeler`` (identity mining).

    Instances of one panel (same book, page and panel) never get the same label. Returns the labels,
    the unlabelled instances, their crops and their domains.

    Raises:
        ConfigError: the manifest has no row without an identity.
    """
    frame = read_manifest(manifest, allow_outside=True)  # a recipe's own manifest, as read_training_frame
    unlabelled = frame[frame["identity"] == ""].reset_index(drop=True)
    if unlabelled.empty:
        raise ConfigError(f"--pseudo-label {manifest}: every row has an identity; give rows without one")
    instances = build_instances(unlabelled, config.data.parts, config.data.group_by, config.data.label_scope).instances
    cache = CropCache(unlabelled, instance_rows(instances), config.data.crop_max_side, config.data.cache_dir, progress)
    features = embed_instances(backbone, instances, cache, target)
    first = [next(iter(instance.rows.values())) for instance in instances]
    panels = np.asarray([f"{unlabelled.at[r, 'book']}\x1f{unlabelled.at[r, 'page']}\x1f{unlabelled.at[r, 'panel']}"
                         if unlabelled.at[r, "panel"] else "" for r in first], dtype=object)
    labels = labeler(features, d_n=config.pseudo.d_n, d_p=config.pseudo.d_p, groups=panels)
    domains = domain_values(unlabelled, config.data, str(manifest), config.loss.cross_domain)
    return (PseudoLabels([instance.key for instance in instances], np.asarray(labels)), instances, cache,
            [domains.iloc[r] for r in first])


def train_bot(config: BotConfig, device: str | torch.device = "cpu", resume: bool = False, progress: bool = True,
              pseudo_label: str | Path | None = None, labeler: PseudoLabeler | None = None) -> BotResult:
    """Run the recipe (see the module docstring) and export the model; returns the :class:`BotResult`.

    ``pseudo_label`` (a manifest with rows without identity) needs ``labeler``, the identity-mining
    function (:func:`comicid.identity.mine_identities`; `comicid train bot --pseudo-label` passes it).

    Raises:
        ConfigError: a bad recipe, or manifests without the columns it needs (identity; a domain
            column for cross-domain triplets); ``ModelError``: an unknown backbone.
    """
    target = resolve_device(device)
    cross = config.loss.cross_domain
    data_cfg = config.data
    primary = _load_labelled(data_cfg, data_cfg.manifests, data_cfg.splits, config.train.seed, progress, cross,
                             data_cfg.val_manifests)
    notes = list(primary.data.notes)
    kept, held = _split_identities(primary, data_cfg.val_identities)
    val_instances = [primary.data.train[i] for i in held] + list(primary.data.val)
    train_instances = [primary.data.train[i] for i in kept]
    if held:
        notes.append(f"{len(held)} instances of held-out identities validate (data.val_identities)")
    coder = _Coder()
    caches = [primary.data.cache]
    primary_samples = coder.samples(0, train_instances, [primary.domains[i] for i in kept])
    n_primary = len(coder.labels)

    validate = None
    if len(val_instances) >= 2:
        val_labels = [instance.label for instance in val_instances]
        val_scopes = [instance.label.rsplit("\x1f", 1)[0] for instance in val_instances]

        def validate() -> dict[str, float]:
            embeddings = embed_instances(trainable.network.backbone, val_instances, primary.data.cache, target)
            return scoped_retrieval(embeddings, val_labels, val_scopes)

    torch.manual_seed(config.train.seed)
    model_cfg = config.model
    backbone = BoTBackbone(model_cfg.backbone, model_cfg.pretrained, model_cfg.input_size, model_cfg.last_stride,
                           model_cfg.pooling)
    samples = list(primary_samples)
    mdl = config.mdl
    if mdl.secondary_manifests:
        secondary = _load_labelled(data_cfg, mdl.secondary_manifests, mdl.secondary_splits, config.train.seed,
                                   progress, cross)
        chosen = _first_identities(secondary.data.train, mdl.secondary_identities)
        rows = [i for i, instance in enumerate(secondary.data.train) if instance.label in chosen]
        caches.append(secondary.data.cache)
        samples += coder.samples(1, [secondary.data.train[i] for i in rows], [secondary.domains[i] for i in rows])
        notes.append(f"MDL: {len(chosen)} secondary identities ({len(rows)} instances) join pre-training")
    for note in notes:
        log.info(note)
    phases: dict[str, TrainResult] = {}
    trainable = _new_trainable(backbone, len(coder.labels), config, target)
    phases["train"] = _phase("train", config, trainable, samples, caches, config.train.epochs, target, validate,
                             resume, progress, lr_scale=_center_scale(config, config.train.lr))
    # what later phases train with: the recipe's rates, or after MDL fine-tuning its frozen stages and rates
    later_lr, later_scale, frozen = config.train.lr, _center_scale(config, config.train.lr), 0
    if mdl.secondary_manifests:
        trainable = _new_trainable(trainable.network.backbone, n_primary, config, target, trainable.network)
        trainable.network.freeze_stages(mdl.freeze_stages)
        ratio = mdl.backbone_lr / mdl.head_lr
        center_scale = _center_scale(config, mdl.head_lr)

        def finetune_scale(name: str) -> float:
            return ratio if name.startswith("network.backbone.") else center_scale(name)
        phases["finetune"] = _phase("finetune", config, trainable, primary_samples, caches[:1], mdl.finetune_epochs,
                                    target, validate, resume, progress, lr=mdl.head_lr, lr_scale=finetune_scale)
        later_lr, later_scale, frozen = mdl.head_lr, finetune_scale, mdl.freeze_stages
    pseudo = None
    if pseudo_label is not None:
        if labeler is None:
            raise ConfigError("pseudo-labelling needs labeler=comicid.identity.mine_identities")
        pseudo, instances, cache, domains = mine_pseudo_labels(trainable.network.backbone, Path(pseudo_label),
                                                               config, target, progress, labeler)
        sizes = np.bincount(pseudo.labels[pseudo.labels >= 0]) if (pseudo.labels >= 0).any() else np.zeros(0, int)
        # a pseudo-identity of one instance has no positive to learn from; it only adds a class to confuse
        keep = [i for i, label in enumerate(pseudo.labels) if label >= 0 and sizes[label] >= 2]
        mined = [dataclasses.replace(instances[i], label=f"pseudo\x1f{int(pseudo.labels[i])}") for i in keep]
        atomic_write_text(Path(config.output_dir) / PSEUDO_LABELS_NAME,
                          pd.DataFrame({"instance": pseudo.keys, "pseudo_label": pseudo.labels}).to_csv(index=False))
        notes.append(f"identity mining: {int((pseudo.labels >= 0).sum())} of {len(instances)} unlabelled instances "
                     f"labelled ({pseudo.coverage:.1%}) into {pseudo.identities} pseudo-identities (d_n "
                     f"{config.pseudo.d_n}, d_p {config.pseudo.d_p}); {len(keep)} instances in "
                     f"{int((sizes >= 2).sum())} pseudo-identities of two or more train, singletons are left out")
        if not keep:
            raise ConfigError(f"--pseudo-label {pseudo_label}: identity mining found no pseudo-identity of two or "
                              f"more instances; raise pseudo.d_p (now {config.pseudo.d_p})")
        log.info(notes[-1])
        samples = primary_samples + coder.samples(len(caches[:1]), mined, [domains[i] for i in keep])
        trainable = _new_trainable(trainable.network.backbone, len(coder.labels), config, target, trainable.network)
        trainable.network.freeze_stages(frozen)
        phases["pseudo"] = _phase("pseudo", config, trainable, samples, [primary.data.cache, cache],
                                  config.pseudo.epochs, target, validate, resume, progress, lr=later_lr,
                                  lr_scale=later_scale, salt=str(pseudo_label))
    path = config.export_path or Path(config.output_dir) / MODEL_NAME
    save_bot_model(trainable.network.backbone.cpu().eval(), path)
    return BotResult(phases, path, pseudo, notes)
