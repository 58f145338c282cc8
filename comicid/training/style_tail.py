"""The backbone's last stages tuned on characters drawn in several styles (stage 3, before the discriminant).

Why: a linear head over frozen ImageNet features plateaus across drawing styles (docs/TRAINING.md,
"Stage 3"): on held-out dev identities every linear head tried (stage 2's projector, the
discriminant, metric-learnt projections) stays within a point of the others, and the projector loses
to ImageNet rank-1 where the style changes. Fitting the whole network to the ~700 labelled dev
identities over-fits (the BoT runs, docs/BENCHMARKS.md). In between: the trunk's last stages (for
EfficientNet-Lite0 at 128 px, the 4x4 stages of 192 and 320 channels and the 1x1 convolution to 1280)
are tuned with pytorch-metric-learning's multi-similarity loss over identities drawn by different
hands, and held to what they computed before by a distillation term (one minus the cosine of each
view's tuned and untuned features), so the ImageNet knowledge the rest of the recipe builds on stays.

How it stays cheap on a CPU: the frozen front of the trunk runs once per crop and augmented view and
its activations are cached (fp16); training then runs only the tail, about a third of the network's
cost, and the batch norms keep their statistics (frozen, as in stage 1: a few dozen train-mode steps
would replace the ImageNet running statistics). Views are the re-ID views of
:func:`comicid.data.augment.reid_view` with colour-preserving drawing-style changes.

The tuning changes the model in place; it returns what it did. The data side (which crops, which
identities) is :mod:`comicid.workflows.discriminant`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_metric_learning import losses, miners
from timm.models.efficientnet import EfficientNet
from torch import Tensor, nn
from tqdm.auto import tqdm

from comicid.data.augment import check_style_ops, reid_view
from comicid.data.images import load_image
from comicid.data.samplers import DomainPKSampler, PKBatchSampler
from comicid.errors import ConfigError, ModelError
from comicid.models.backbones import TrunkBackbone
from comicid.models.embed import CropSource
from comicid.models.embedding_model import EmbeddingModel

#: How a tuning batch picks its identities (:class:`TailConfig` ``batches``).
BATCHES = ("mixed", "per_domain")


@dataclass
class TailConfig:
    """How the trunk's last stages are tuned; the defaults were chosen on held-out dev identities.

    ``first_block``: the first stage of the trunk's ``blocks`` that is tuned (the stem and the stages
    before it stay frozen and are run once per view). ``views``: augmented views cached per crop.
    ``steps`` of ``p`` identities x ``k`` crops. ``distillation``: weight of the cosine term that holds
    each view's tuned features to the untuned ones. ``style_ops``/``style_p``: drawing-style changes
    of the views (colour-preserving ones: the model's colour channel reads the clean crop).
    ``batches``: ``"mixed"`` (P identities from anywhere) or ``"per_domain"`` (every batch from one
    domain, e.g. one data set: negatives that share a drawing style; :class:`DomainPKSampler`).
    ``mixstyle_p``/``mixstyle_alpha``: with probability ``mixstyle_p`` per step, the channel statistics
    of the tail's input are mixed between random pairs of the batch (:func:`mix_style`); 0 = off.
    """

    first_block: int = 5
    views: int = 6
    steps: int = 600
    p: int = 24
    k: int = 4
    lr: float = 2e-4
    weight_decay: float = 1e-4
    distillation: float = 0.3
    similarity_epsilon: float = 0.1
    style_ops: tuple[str, ...] = ("hue", "posterise", "pixelate", "grayscale")
    style_p: float = 0.3
    erasing_p: float = 0.25
    pad: float = 0.08
    seed: int = 0
    batches: str = "mixed"
    mixstyle_p: float = 0.0
    mixstyle_alpha: float = 0.1
    batch_size: int = 64  # of the cached front pass and of embedding, not of training

    def check(self) -> None:
        """Value checks a type cannot express."""
        for name in ("views", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tail.{name} must be at least 1, got {getattr(self, name)}")
        if self.first_block < 0:
            raise ConfigError(f"tail.first_block must not be negative, got {self.first_block}")
        if self.p < 2 or self.k < 2:
            raise ConfigError(f"tail.p and tail.k must be at least 2, got {self.p} and {self.k}")
        if self.lr <= 0 or self.weight_decay < 0 or self.distillation < 0:
            raise ConfigError("tail.lr must be positive; tail.weight_decay and tail.distillation not negative")
        check_style_ops(self.style_ops, "tail.style_ops")
        if self.batches not in BATCHES:
            raise ConfigError(f"tail.batches must be one of {', '.join(BATCHES)}, got {self.batches!r}")
        if self.mixstyle_alpha <= 0:
            raise ConfigError(f"tail.mixstyle_alpha must be positive, got {self.mixstyle_alpha}")
        for name in ("style_p", "erasing_p", "pad", "mixstyle_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"tail.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class TailResult:
    """What :func:`tune_tail` did: crops and identities trained on, and the loss every 50 steps."""

    n_crops: int
    n_identities: int
    tuned_parameters: int
    history: list[dict[str, float]] = field(default_factory=list)


def split_trunk(model: EmbeddingModel, first_block: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The model's trunk as (frozen front, tuned tail), sharing its modules (tuning the tail tunes the model).

    Works for timm's ``EfficientNet`` class (``conv_stem``, ``bn1``, ``blocks``, ``conv_head``, ``bn2``, then
    pooling), the backbones this project ships; anything else is a :class:`ModelError`.
    """
    backbone = model.backbone
    trunk = backbone.trunk if isinstance(backbone, TrunkBackbone) else None
    if not isinstance(trunk, EfficientNet):  # MobileNetV3 & co. apply conv_head after pooling: another split
        raise ModelError(f"tuning the last stages needs a timm EfficientNet-style trunk; model '{model.model_id}' "
                         f"has a {type(getattr(backbone, 'trunk', backbone)).__name__}")
    if not 0 <= first_block < len(trunk.blocks):
        raise ConfigError(f"tail.first_block must be in [0, {len(trunk.blocks) - 1}] for this trunk, got {first_block}")
    front = nn.Sequential(trunk.conv_stem, trunk.bn1, *trunk.blocks[:first_block])
    tail = nn.Sequential(*trunk.blocks[first_block:], trunk.conv_head, trunk.bn2)
    return front, tail


def pooled(tail: nn.Module, activations: Tensor) -> Tensor:
    """L2-normalised, average-pooled tail features of cached front activations (any float dtype)."""
    return F.normalize(tail(activations.float()).mean(dim=(2, 3)), dim=1)


def mix_style(activations: Tensor, p: float, alpha: float, eps: float = 1e-6) -> Tensor:
    """MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021) on ``(B, C, h, w)`` activations.

    With probability ``p`` (else ``activations`` unchanged), each sample's per-channel mean and standard
    deviation are replaced by a mix, with weight ``lambda ~ Beta(alpha, alpha)``, of its own and those of
    a random other sample of the batch. A CNN's channel statistics carry much of an image's style; a
    tail trained on mixed statistics sees each character under styles of other sources, which the
    leave-one-source-out benchmark rewards (docs/TRAINING.md). Written here because no maintained pip
    package ships it (the authors' code lives in research repositories: Dassl, mixstyle-release); the
    statistics are detached, as in the paper. Draws from torch's global generator.
    """
    if torch.rand(()).item() > p:
        return activations
    mean = activations.mean(dim=(2, 3), keepdim=True).detach()
    std = (activations.var(dim=(2, 3), keepdim=True) + eps).sqrt().detach()
    normalised = (activations - mean) / std
    weight = torch.distributions.Beta(alpha, alpha).sample((len(activations), 1, 1, 1))
    partner = torch.randperm(len(activations))
    return normalised * (std * weight + std[partner] * (1 - weight)) + (mean * weight + mean[partner] * (1 - weight))


def front_activations(front: nn.Module, crops: Sequence[CropSource], model: EmbeddingModel, config: TailConfig,
                      progress: bool = True) -> Tensor:
    """``(N, views, C, h, w)`` fp16 front activations of ``config.views`` augmented views of each crop.

    Views are drawn from torch's generator seeded with ``config.seed``, crop by crop, so the same crops
    give the same views on every run.
    """
    view = reid_view(model.input_size, model.mean, model.std, pad=config.pad, erasing_p=config.erasing_p,
                     style_ops=config.style_ops, style_p=config.style_p)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    out: list[Tensor] = []
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(crops), config.batch_size), desc="tail views", unit="batch",
                              disable=not progress):
                images = [crop if isinstance(crop, Image.Image) else load_image(crop)
                          for crop in crops[start:start + config.batch_size]]
                batch = torch.stack([view(image) for image in images for _ in range(config.views)])
                acts = front(batch).half()
                out.append(acts.reshape(len(images), config.views, *acts.shape[1:]))
    finally:
        torch.random.set_rng_state(generator_state)
    return torch.cat(out)


def _freeze_norms(module: nn.Module) -> None:
    """Batch norms in eval mode with frozen affine parameters (statistics and scale stay ImageNet's)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()
            for parameter in layer.parameters():
                parameter.requires_grad_(False)


def tune_tail(model: EmbeddingModel, crops: Sequence[CropSource], labels: Sequence[str] | np.ndarray,
              config: TailConfig = TailConfig(), progress: bool = True,
              domains: Sequence[str] | np.ndarray | None = None) -> TailResult:
    """Tune ``model``'s last trunk stages in place on labelled crops (one identity label per crop).

    ``domains`` (one per crop, e.g. the data set's name) are needed by ``config.batches = "per_domain"``.
    Identities with fewer than two crops cannot form a positive pair and are dropped. The model is
    left in eval mode on the CPU. Deterministic for a given ``config.seed`` on one machine.
    """
    config.check()
    labels = np.asarray(labels).astype(str)
    if len(labels) != len(crops):
        raise ConfigError(f"{len(crops)} crops but {len(labels)} labels")
    if config.batches == "per_domain" and (domains is None or len(domains) != len(crops)):
        raise ConfigError("tail.batches = per_domain needs one domain per crop "
                          f"({len(crops)} crops, {'no' if domains is None else len(domains)} domains)")
    _, codes = np.unique(labels, return_inverse=True)
    keep = np.bincount(codes)[codes] >= 2
    if len(np.unique(codes[keep])) < config.p:
        raise ConfigError(f"tuning the last stages needs at least tail.p = {config.p} identities with two or more "
                          f"crops, found {len(np.unique(codes[keep]))}")
    crops = [crop for crop, kept in zip(crops, keep, strict=True) if kept]
    _, codes = np.unique(codes[keep], return_inverse=True)
    batches_per_epoch = max(1, len(codes) // (config.p * config.k))
    if config.batches == "per_domain":
        _, domain_codes = np.unique(np.asarray(domains).astype(str)[keep], return_inverse=True)
        sampler: PKBatchSampler | DomainPKSampler = DomainPKSampler(codes, domain_codes, config.p, config.k,
                                                                    batches_per_epoch, seed=config.seed)
    else:
        sampler = PKBatchSampler(codes, config.p, config.k, batches_per_epoch, seed=config.seed)
    model.to("cpu").eval()
    front, tail = split_trunk(model, config.first_block)
    activations = front_activations(front, crops, model, config, progress)
    with torch.no_grad():  # what the untuned tail computes of every view: the distillation target
        teacher = torch.stack([torch.cat([pooled(tail, activations[start:start + 256, v])
                                          for start in range(0, len(activations), 256)])
                               for v in range(config.views)], dim=1)
    torch.manual_seed(config.seed)
    tail.train()
    _freeze_norms(tail)
    parameters = [parameter for parameter in tail.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = losses.MultiSimilarityLoss()
    miner = miners.MultiSimilarityMiner(epsilon=config.similarity_epsilon)
    targets = torch.from_numpy(codes)
    history: list[dict[str, float]] = []
    step, epoch = 0, 0
    bar = tqdm(total=config.steps, desc="tune last stages", unit="step", disable=not progress)
    while step < config.steps:
        sampler.set_position(epoch)
        for batch in sampler:
            rows = torch.tensor(batch)
            views = torch.randint(config.views, (len(rows),))
            inputs = activations[rows, views].float()
            if config.mixstyle_p > 0:
                inputs = mix_style(inputs, config.mixstyle_p, config.mixstyle_alpha)
            features = pooled(tail, inputs)
            metric = loss_fn(features, targets[rows], miner(features, targets[rows]))
            distance = (1 - (features * teacher[rows, views]).sum(dim=1)).mean()
            loss = metric + config.distillation * distance
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == config.steps:
                history.append({"step": step, "metric": metric.item(), "distillation": distance.item()})
                bar.set_postfix(metric=f"{history[-1]['metric']:.3f}", distillation=f"{history[-1]['distillation']:.4f}")
            if step >= config.steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return TailResult(n_crops=len(crops), n_identities=int(codes.max()) + 1,
                      tuned_parameters=sum(parameter.numel() for parameter in parameters), history=history)
