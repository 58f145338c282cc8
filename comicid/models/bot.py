"""The BoT re-ID network (Luo et al. 2019, "Bag of Tricks"), on any CNN trunk of the registry.

:class:`BoTBackbone` is a registry trunk cut before its pooling, with three changes from the
strong person re-ID baseline that Deng, Xie & Liu (2024) start their cartoon-face work from:

* **last stride 1**: the last spatial down-sampling of the trunk is removed (every stride-2
  convolution of its last down-sampling stage becomes stride 1), which doubles the side of the
  final feature map for a little more compute: at 128 px EfficientNet-Lite0 ends at 8x8 instead
  of 4x4. Fine detail (eyes, insignia, pixel patterns) survives into the pooled feature;
* **pooling**: global average pooling, or GeM (generalised mean, learnable exponent p, init 3);
* **BNNeck**: the pooled feature ``f_t`` feeds the triplet loss during training; ``BN(f_t)`` (a
  BatchNorm whose bias is frozen at 0) feeds the bias-free identity classifier and is what
  inference returns. The BN balances the two losses: the triplet loss shapes ``f_t`` in Euclidean
  space, the classifier works on the normalised, angular ``BN(f_t)``.

As an :class:`~comicid.models.embedding_model.EmbeddingModel` the whole of it is the backbone
(``forward_parts`` = ``BN(f_t)``) and the head is the identity, so an instance embedding is
``normalise(sum_parts normalise(BN(f_t)))``: for a single crop exactly BoT's inference feature.
Its int8 graph (``comicid quantize``) therefore includes the neck.

Checkpoint: the comicid-model format with ``"backbone": "bot-<base>"`` and a ``"bot"`` field
``{"base", "last_stride", "pooling"}``; ``state_dict`` is this module's. It loads through
:func:`~comicid.models.embedding_model.load_embedding_model` like every other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import Tensor, nn

from comicid.errors import ConfigError, ModelError
from comicid.models.backbones import Backbone, TrunkBackbone, create_backbone
from comicid.models.embedding_model import CHECKPOINT_FORMAT, CHECKPOINT_KINDS, CHECKPOINT_VERSION, EmbeddingModel
from comicid.models.weights import load_strict
from comicid.checkpoint import write_checkpoint

POOLINGS = ("avg", "gem")
#: Registry trunks a BoT network can be built on (the others are not CNNs).
BASES = ("effnet-lite0-imagenet", "mobilenetv2-imagenet", "resnet18", "resnet50", "tiny-cnn")


class GeM(nn.Module):
    """Generalised-mean pooling ``(mean x^p)^(1/p)`` over the spatial grid, p learnt (init 3).

    Hand-written: neither timm, torchvision nor pytorch-metric-learning ships it. p = 1 is average
    pooling, p -> inf max pooling; inputs are clamped at ``eps`` (post-ReLU maps are non-negative).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, feature_map: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C)
        return feature_map.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class _TimmFeatureMap(nn.Module):
    """A timm network's ``forward_features``: the map before its global pooling."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net.forward_features(images)


def _feature_map_and_stages(base: Backbone) -> tuple[nn.Module, list[nn.Module]]:
    """The trunk of a registry backbone as a feature-map module, and its stages from input to output.

    A *stage* is what "freeze the first two stages" counts: the stem, then each block group
    (EfficientNet: ``blocks[i]``; ResNet: ``layer1..4``; MobileNetV2 and tiny-cnn: each child).
    """
    if not isinstance(base, TrunkBackbone):
        raise ConfigError(f"backbone '{base.name}' is not a CNN trunk; a BoT network needs one of {list(BASES)}")
    trunk = base.trunk
    if isinstance(trunk, timm.models.efficientnet.EfficientNet):
        stem = nn.ModuleList([trunk.conv_stem, trunk.bn1])
        head = nn.ModuleList([trunk.conv_head, trunk.bn2])
        return _TimmFeatureMap(trunk), [stem, *trunk.blocks, head]
    if isinstance(trunk, torchvision.models.ResNet):
        stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        layers = [trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]
        return nn.Sequential(stem, *layers), [stem, *layers]
    if isinstance(trunk, nn.Sequential):  # MobileNetV2 features, tiny-cnn
        if base.name == "tiny-cnn":
            return trunk, [trunk[0:3], trunk[3:6]]
        return trunk, list(trunk.children())
    raise ConfigError(f"backbone '{base.name}' has no known stage layout")  # pragma: no cover


def _remove_last_stride(stages: list[nn.Module]) -> int:
    """Make every stride-2 convolution of the last down-sampling stage stride 1; returns how many.

    timm's TF-"same" convolutions (``Conv2dSame``) compute their padding from the stride at run
    time, so they stay "same" at stride 1; plain convolutions keep their padding, which for odd
    kernels with ``padding = k // 2`` is also "same" at stride 1.
    """
    for stage in reversed(stages):
        convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2)]
        if convs:
            for conv in convs:
                conv.stride = (1, 1)
            return len(convs)
    return 0


class BoTBackbone(Backbone):
    """A registry trunk with last stride 1 (optional), GAP or GeM, and a BNNeck; see the module docstring.

    ``forward`` returns ``BN(f_t)`` ``(B, C)`` (the inference feature, not normalised);
    :meth:`features` returns both ``f_t`` and ``BN(f_t)`` for training.
    """

    def __init__(self, base: str = "effnet-lite0-imagenet", pretrained: bool = True, input_size: int = 128,
                 last_stride: int = 1, pooling: str = "avg") -> None:
        if base not in BASES:
            raise ConfigError(f"BoT base backbone must be one of {list(BASES)}, got '{base}'")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got '{pooling}'")
        if last_stride not in (1, 2):
            raise ConfigError(f"last_stride must be 1 or 2, got {last_stride}")
        trunk = create_backbone(base, pretrained=pretrained, input_size=input_size)
        super().__init__(f"bot-{base}", trunk.input_size, trunk.mean, trunk.std, trunk.feature_dim)
        self.base, self.last_stride, self.pooling = base, last_stride, pooling
        self.feature_map, stages = _feature_map_and_stages(trunk)
        self._stages = stages  # plain list: the modules are registered once, under feature_map
        if last_stride == 1:
            _remove_last_stride(stages)
        self.pool: nn.Module = GeM() if pooling == "gem" else nn.AdaptiveAvgPool2d(1)
        self.neck = nn.BatchNorm1d(self.feature_dim)
        self.neck.bias.requires_grad_(False)  # BNNeck: the bias stays 0 (BoT)

    def options(self) -> dict[str, Any]:
        """What the checkpoint's ``"bot"`` field holds: enough to rebuild the architecture."""
        return {"base": self.base, "last_stride": self.last_stride, "pooling": self.pooling}

    def stages(self) -> list[nn.Module]:
        """The trunk's stages from the input on (see :func:`_feature_map_and_stages`)."""
        return list(self._stages)

    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(f_t, BN(f_t))``, both ``(B, C)``: the triplet feature and the classifier/inference feature."""
        pooled = self.pool(self.feature_map(images)).flatten(1)
        return pooled, self.neck(pooled)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)[1]


class BoTNetwork(nn.Module):
    """Training-time BoT: :class:`BoTBackbone` plus a bias-free linear classifier over the identities."""

    def __init__(self, backbone: BoTBackbone, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"a BoT network needs at least two identities to classify, got {n_classes}")
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.feature_dim, n_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)  # BoT's classifier init

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(f_t, BN(f_t), logits)`` of normalised crops ``(B, 3, S, S)``."""
        pooled, normed = self.backbone.features(images)
        return pooled, normed, self.classifier(normed)

    def freeze_stages(self, count: int) -> int:
        """Freeze the first ``count`` trunk stages (parameters and BatchNorm statistics); returns tensors frozen."""
        frozen = 0
        self._frozen = list(self.backbone.stages()[:count])
        for stage in self._frozen:
            for parameter in stage.parameters():
                parameter.requires_grad_(False)
                frozen += 1
        self.train(self.training)
        return frozen

    def train(self, mode: bool = True) -> BoTNetwork:
        super().train(mode)
        for stage in getattr(self, "_frozen", []):
            stage.eval()
        return self


def save_bot_model(backbone: BoTBackbone, path: str | Path) -> Path:
    """Write ``backbone`` (neck included) as a comicid-model checkpoint, atomically; returns the path."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(
        path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
        kind="bot",
        backbone=backbone.name,
        input_size=backbone.input_size,
        state_dict={key: value.detach().cpu().contiguous() for key, value in backbone.state_dict().items()},
        head=None,
        bot=backbone.options(),
        model_id=backbone.name,
    )


@CHECKPOINT_KINDS.register("bot")
def bot_from_checkpoint(checkpoint: dict[str, Any], model_id: str, where: str) -> EmbeddingModel:
    """The embedding model of a BoT checkpoint (called by the common loader); strict."""
    options = checkpoint.get("bot")
    if not isinstance(options, dict) or set(options) != {"base", "last_stride", "pooling"}:
        raise ModelError(f"{where} has a malformed 'bot' field: {options!r}")
    try:
        backbone = BoTBackbone(options["base"], pretrained=False, input_size=int(checkpoint["input_size"]),
                               last_stride=int(options["last_stride"]), pooling=str(options["pooling"]))
    except ConfigError as error:
        raise ModelError(f"{where}: {error}") from None
    load_strict(backbone, checkpoint.get("state_dict") or {}, where)
    return EmbeddingModel(backbone.eval(), None, model_id)
