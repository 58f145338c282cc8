"""Tuning the trunk's last stages: the split, what moves and what stays, determinism, refusals, the recipe."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from comicid.data.synth import generate_books
from comicid.errors import ConfigError, ModelError
from comicid.models import load_embedding_model
from comicid.models.backbones import TrunkBackbone, create_backbone
from comicid.models.embedding_model import EmbeddingModel, save_embedding_model
from comicid.training.config import load_config
from comicid.training.discriminant import DiscriminantConfig
from comicid.training.style_tail import TailConfig, mix_style, pooled, split_trunk, tune_tail
from comicid.workflows.discriminant import train_discriminant

QUICK = TailConfig(first_block=3, views=2, steps=4, p=3, k=2, lr=1e-3, batch_size=8)


def _tiny_effnet(seed: int = 0) -> EmbeddingModel:
    """timm's own test EfficientNet (5 stages, 256 features) at 32 px: the shipped trunk's class, tiny."""
    torch.manual_seed(seed)
    trunk = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    backbone = TrunkBackbone("test-effnet", trunk, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 256)
    return EmbeddingModel(backbone, nn.Linear(256, 8))


def _crops(n_ids: int, per_id: int) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(0)
    crops, labels = [], []
    for identity in range(n_ids):
        colour = rng.integers(0, 255, size=3)
        for _ in range(per_id):
            pixels = np.full((40, 30, 3), 255, dtype=np.uint8)
            top = int(rng.integers(0, 10))
            pixels[top:top + 25, 5:25] = np.clip(colour + rng.integers(-20, 20, size=3), 0, 255)
            crops.append(Image.fromarray(pixels))
            labels.append(f"id{identity}")
    return crops, labels


def test_front_then_tail_is_the_trunk() -> None:
    model = _tiny_effnet().eval()
    front, tail = split_trunk(model, first_block=3)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = nn.functional.normalize(model.backbone(images), dim=1)
        np.testing.assert_allclose(pooled(tail, front(images)).numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_tuning_moves_the_tail_only_and_is_deterministic() -> None:
    crops, labels = _crops(n_ids=4, per_id=3)
    before = {name: value.clone() for name, value in _tiny_effnet().backbone.state_dict().items()}
    tuned = []
    for _ in range(2):
        model = _tiny_effnet()
        result = tune_tail(model, crops + [crops[0]], labels + ["lonely"], QUICK, progress=False)
        tuned.append(model.backbone.state_dict())
        assert result.n_crops == len(crops) and result.n_identities == 4  # the one-crop identity is dropped
        assert result.history and result.history[-1]["step"] == QUICK.steps and result.tuned_parameters > 0
        assert not model.training
    state = tuned[0]
    for name, value in state.items():
        assert torch.equal(value, tuned[1][name]), f"{name} differs between two runs with one seed"
        front_or_norm = name.startswith(("trunk.conv_stem", "trunk.bn1")) or any(
            name.startswith(f"trunk.blocks.{i}.") for i in range(QUICK.first_block)) or "running_" in name or \
            name.startswith("trunk.bn2")
        if front_or_norm:
            assert torch.equal(value, before[name]), f"{name} moved but is frozen"
    moved = [name for name in state if name.startswith("trunk.conv_head") and not torch.equal(state[name], before[name])]
    assert moved, "the tail's last convolution did not move"


def test_refusals_name_the_problem() -> None:
    crops, labels = _crops(n_ids=2, per_id=3)
    with pytest.raises(ConfigError, match="at least tail.p = 3 identities"):
        tune_tail(_tiny_effnet(), crops, labels, QUICK, progress=False)
    with pytest.raises(ConfigError, match="2 crops but 1 labels"):
        tune_tail(_tiny_effnet(), crops[:2], labels[:1], QUICK, progress=False)
    with pytest.raises(ConfigError, match="first_block must be in"):
        split_trunk(_tiny_effnet(), first_block=9)
    with pytest.raises(ModelError, match="EfficientNet-style trunk"):
        split_trunk(EmbeddingModel(create_backbone("tiny-cnn")), first_block=0)
    with pytest.raises(ConfigError, match="unknown"):
        TailConfig(style_ops=("sepia",)).check()
    with pytest.raises(ConfigError, match="tail.batches must be one of mixed, per_domain"):
        TailConfig(batches="per_book").check()
    with pytest.raises(ConfigError, match="needs one domain per crop"):
        tune_tail(_tiny_effnet(), crops, labels, replace(QUICK, batches="per_domain"), progress=False)


def test_batches_of_one_domain_tune_deterministically() -> None:
    crops, labels = _crops(n_ids=6, per_id=3)
    domains = ["a" if int(label[2:]) < 3 else "b" for label in labels]
    config = replace(QUICK, batches="per_domain")
    states = []
    for _ in range(2):
        model = _tiny_effnet()
        result = tune_tail(model, crops, labels, config, progress=False, domains=domains)
        assert result.n_identities == 6 and result.history[-1]["step"] == config.steps
        states.append(model.backbone.state_dict())
    assert all(torch.equal(value, states[1][name]) for name, value in states[0].items())
    assert not all(torch.equal(value, _tiny_effnet().backbone.state_dict()[name])
                   for name, value in states[0].items())


def test_mix_style_moves_channel_statistics_towards_a_partner() -> None:
    torch.manual_seed(0)
    # four samples whose channels have distinct means and spreads, and a spatial pattern of their own
    scale = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    shift = torch.tensor([-3.0, -1.0, 1.0, 3.0]).view(4, 1, 1, 1)
    activations = torch.randn(4, 6, 5, 5) * scale + shift
    assert torch.equal(mix_style(activations, p=0.0, alpha=0.1), activations)  # off: untouched
    mixed = mix_style(activations, p=1.0, alpha=0.1)
    pattern = lambda x: (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)  # noqa: E731
    torch.testing.assert_close(pattern(mixed), pattern(activations), rtol=1e-3, atol=1e-3)  # content kept
    old_means, new_means = activations.mean(dim=(2, 3)), mixed.mean(dim=(2, 3))
    assert not torch.allclose(new_means, old_means, atol=1e-2), "no sample took on another's statistics"
    low, high = old_means.min(dim=0).values, old_means.max(dim=0).values
    assert bool(((new_means >= low - 1e-4) & (new_means <= high + 1e-4)).all()), "a mix left the batch's range"


def test_mix_style_tuning_is_deterministic_and_differs_from_plain() -> None:
    crops, labels = _crops(n_ids=4, per_id=3)
    config = replace(QUICK, mixstyle_p=1.0)
    states = []
    for tuning in (config, config, QUICK):
        model = _tiny_effnet()
        tune_tail(model, crops, labels, tuning, progress=False)
        states.append(model.backbone.state_dict())
    assert all(torch.equal(value, states[1][name]) for name, value in states[0].items())
    assert not all(torch.equal(value, states[2][name]) for name, value in states[0].items())
    with pytest.raises(ConfigError, match="mixstyle_p must be in"):
        TailConfig(mixstyle_p=1.5).check()
    with pytest.raises(ConfigError, match="mixstyle_alpha must be positive"):
        TailConfig(mixstyle_alpha=0.0).check()


def test_tail_section_of_a_recipe_file(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(json.dumps({"base_model": "m.pt", "manifests": ["a.csv"], "output": "n.pt",
                                "tail": {"steps": 10, "style_ops": ["hue"]}}))
    config = load_config(path, DiscriminantConfig)
    assert config.tail is not None and config.tail.steps == 10 and config.tail.style_ops == ("hue",)
    path.write_text(json.dumps({"base_model": "m.pt", "manifests": ["a.csv"], "output": "n.pt", "tail": {"p": 1}}))
    with pytest.raises(ConfigError, match="tail.p and tail.k"):
        load_config(path, DiscriminantConfig)


def test_recipe_with_a_tail_writes_the_tuned_trunk(tmp_path: Path) -> None:
    manifest = generate_books(tmp_path / "synth", books=2, characters=8, pages=2, seed=0, page_size=(400, 550),
                              progress=False)
    lite0 = create_backbone("effnet-lite0-imagenet", pretrained=False, input_size=32)  # a checkpoint needs a registry name
    base_path = save_embedding_model(EmbeddingModel(lite0, nn.Linear(1280, 8)), tmp_path / "base.pt")
    config = DiscriminantConfig(base_model=str(base_path), manifests=[manifest], output=tmp_path / "new.pt", dims=4,
                                quantize=False, half=False, workdir=tmp_path / "work", tail=QUICK)
    result = train_discriminant(config, progress=False)
    assert result.tail is not None and result.tail.n_identities >= QUICK.p
    base, new = load_embedding_model(base_path), load_embedding_model(result.path)
    old_state, new_state = base.backbone.state_dict(), new.backbone.state_dict()
    assert not torch.equal(old_state["trunk.conv_head.weight"], new_state["trunk.conv_head.weight"])
    assert torch.equal(old_state["trunk.conv_stem.weight"], new_state["trunk.conv_stem.weight"])
    assert new.head.out_features == 8 + result.dims
