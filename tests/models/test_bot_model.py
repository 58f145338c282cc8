"""The BoT network: last stride 1, GeM, BNNeck, and its checkpoint through the common loader and int8."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comicid.cli import main as comicid_main
from comicid.data.synth import generate_books
from comicid.errors import ConfigError, ModelError
from comicid.models.bot import BoTBackbone, BoTNetwork, GeM, save_bot_model
from comicid.models.embedding_model import load_embedding_model


@pytest.mark.parametrize("base, size", [("tiny-cnn", 32), ("resnet18", 64), ("effnet-lite0-imagenet", 64)])
def test_last_stride_one_doubles_the_final_map(base: str, size: int) -> None:
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        strided = BoTBackbone(base, False, size, last_stride=2).eval().feature_map(images)
        unstrided = BoTBackbone(base, False, size, last_stride=1).eval().feature_map(images)
    assert unstrided.shape[-1] == 2 * strided.shape[-1] and unstrided.shape[:2] == strided.shape[:2]


def test_gem_with_p_one_is_average_pooling() -> None:
    maps = torch.rand(3, 5, 4, 4)
    gem = GeM(p=1.0)
    assert torch.allclose(gem(maps), maps.mean(dim=(2, 3)), atol=1e-6)
    assert (GeM(p=6.0)(maps) > maps.mean(dim=(2, 3))).all()  # towards max pooling


def test_bnneck_bias_is_frozen_and_inference_is_the_neck_feature() -> None:
    backbone = BoTBackbone("tiny-cnn", False, 32)
    network = BoTNetwork(backbone, 5)
    assert not backbone.neck.bias.requires_grad and network.classifier.bias is None
    images = torch.randn(4, 3, 32, 32)
    network.train()
    with torch.no_grad():
        network(images)  # one batch of running statistics: the neck is no longer the identity
    network.eval()
    with torch.no_grad():
        pooled, normed, logits = network(images)
        assert torch.allclose(backbone(images), normed) and logits.shape == (4, 5)
        assert not torch.allclose(pooled, normed)


def test_freeze_stages_keeps_weights_and_statistics(tmp_path: Path) -> None:
    network = BoTNetwork(BoTBackbone("tiny-cnn", False, 32), 3)
    assert network.freeze_stages(1) > 0
    first = network.backbone.stages()[0]
    assert not any(p.requires_grad for p in first.parameters())
    network.train()
    assert not first.training and network.backbone.stages()[1].training


def test_checkpoint_loads_through_the_common_loader(tmp_path: Path) -> None:
    backbone = BoTBackbone("tiny-cnn", False, 32, pooling="gem").eval()
    with torch.no_grad():
        backbone.neck.running_mean.uniform_(-1, 1)  # something to get wrong
    path = save_bot_model(backbone, tmp_path / "bot.pt")
    model = load_embedding_model(path, precision="fp32")
    assert model.model_id.startswith("bot-tiny-cnn@") and model.out_dim == backbone.feature_dim
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_parts(images), backbone(images), atol=1e-6)


def test_bad_backbone_and_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a CNN trunk|must be one of"):
        BoTBackbone("color-hist", False, 32)
    path = save_bot_model(BoTBackbone("tiny-cnn", False, 32), tmp_path / "bot.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["bot"] = {"base": "tiny-cnn"}
    torch.save(checkpoint, path)
    with pytest.raises(ModelError, match="malformed 'bot' field"):
        load_embedding_model(path)


def test_quantize_makes_the_int8_graph_of_a_bot_checkpoint(tmp_path: Path) -> None:
    manifest = generate_books(tmp_path / "books", books=1, characters=3, pages=2, seed=4, progress=False)
    path = save_bot_model(BoTBackbone("tiny-cnn", False, 32).eval(), tmp_path / "bot.pt")
    assert comicid_main(["quantize", str(path), "--calibration", str(manifest), "--crops", "24",
                         "--check", "8", "-q"]) == 0
    assert load_embedding_model(path).precision == "int8"
