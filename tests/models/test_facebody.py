"""The face-body network, its freezing, fusions, and the stage-2 model's checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from comicid.errors import ModelError
from comicid.models.backbones import create_backbone
from comicid.models.embed import fuse_parts
from comicid.models.embedding_model import load_embedding_model
from comicid.models.facebody import (
    FineTunedFaceBodyModel,
    FusionProjector,
    build_facebody_network,
    load_facebody_network,
    save_facebody_network,
    save_finetuned_model,
)


def _images(n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_network_embeds_parts_normalised_through_one_shared_trunk() -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16, out_dim=8)
    face = network.embed(_images(), "face")
    assert face.shape == (4, 8) and torch.allclose(face.norm(dim=1), torch.ones(4))
    assert network.heads["shared"].norm.affine is False  # the paper's non-affine last BatchNorm
    assert len(network.backbones) == 1 and network.hidden(_images(), "body").shape == (4, 16)
    separate = build_facebody_network("tiny-cnn", shared=False, pretrained=False)
    assert set(separate.backbones) == {"face", "body"}
    with pytest.raises(ModelError, match="no 'face' branch"):
        build_facebody_network("tiny-cnn", parts=["body"], pretrained=False).embed(_images(), "face")


def test_freeze_early_keeps_frozen_batchnorms_in_eval_mode() -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False)
    frozen = network.freeze_early(0.5)
    assert frozen > 0
    network.train()
    trunk = network.backbones["shared"].trunk
    assert not trunk[0].weight.requires_grad and not trunk[1].training  # first conv + its BN
    assert trunk[4].training and trunk[4].weight.requires_grad


def test_stage1_checkpoint_round_trip(tmp_path: Path) -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16, out_dim=8).eval()
    loaded = load_facebody_network(save_facebody_network(network, tmp_path / "ssl.pt")).eval()
    assert torch.allclose(network.embed(_images(), "body"), loaded.embed(_images(), "body"))


@pytest.mark.parametrize("fusion", ["sum", "mean", "weighted", "cat"])
def test_fusions_ignore_missing_parts_and_normalise(fusion: str) -> None:
    projector = FusionProjector(part_dim=6, n_parts=2, out_dim=4, fusion=fusion)
    parts = torch.randn(3, 2, 6)
    present = torch.tensor([[True, True], [True, False], [False, True]])
    out = projector(parts, present)
    assert out.shape == (3, 4) and torch.allclose(out.norm(dim=1), torch.ones(3))
    garbage = parts.clone()
    garbage[1, 1] = 1e3  # a missing part's values must not matter
    assert torch.allclose(projector(garbage, present), out)


@pytest.mark.parametrize("half", [False, True])
def test_finetuned_model_meets_the_embedding_contract_after_a_round_trip(tmp_path: Path, half: bool) -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16, out_dim=8).eval()
    projector = FusionProjector(16, 2, out_dim=12).eval()
    model = FineTunedFaceBodyModel.from_stages(network, projector)
    face, body = _images(2), _images(2) * 0.5
    with torch.no_grad():
        expected = projector(torch.stack([network.hidden(face, "face"), network.hidden(body, "body")], 1),
                             torch.ones(2, 2, dtype=torch.bool)).numpy()
        loaded = load_embedding_model(save_finetuned_model(model, tmp_path / "m.pt", half=half), precision="fp32")
        parts = loaded.forward_parts(torch.cat([face, body])).numpy()
    fused = fuse_parts(parts, np.array([0, 1, 0, 1]), 2, loaded.head)
    assert np.allclose(fused, expected, atol=2e-3 if half else 1e-5)
    assert loaded.model_id.startswith("tiny-cnn@") and (loaded.part_dim, loaded.out_dim) == (16, 12)


def test_only_sum_fusion_on_a_shared_trunk_exports() -> None:
    shared = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16)
    with pytest.raises(ModelError, match="'sum' fusion"):
        FineTunedFaceBodyModel.from_stages(shared, FusionProjector(16, 2, fusion="cat"))
    separate = build_facebody_network("tiny-cnn", shared=False, pretrained=False, hidden_dim=16)
    with pytest.raises(ModelError, match="shared-backbone"):
        FineTunedFaceBodyModel.from_stages(separate, FusionProjector(16, 2))


def test_a_facebody_checkpoint_without_projector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"format": "comicid-model", "kind": "facebody", "version": 1, "backbone": "tiny-cnn",
                "state_dict": {}, "head": None}, path)
    with pytest.raises(ModelError):
        load_embedding_model(path, precision="fp32")


def _pixels(n: int = 4, size: int = 32) -> torch.Tensor:
    """[0, 1] crops on a white page: a coloured square in each, so the histograms differ."""
    pixels = torch.ones(n, 3, size, size)
    colours = torch.rand(n, 3, generator=torch.Generator().manual_seed(1)) * 0.8
    pixels[:, :, 8:24, 8:24] = colours.view(n, 3, 1, 1)
    return pixels


def _normalised(pixels: torch.Tensor, model: FineTunedFaceBodyModel) -> torch.Tensor:
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def test_backbone_cut_with_colour_concatenates_the_color_hist_features() -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16).eval()
    backbone_dim = network.feature_dim
    projector = FusionProjector(backbone_dim + 64, 2, out_dim=12)
    model = FineTunedFaceBodyModel.from_stages(network, projector, cut="backbone", colour_weight=0.5).eval()
    assert model.part_head is None and model.part_dim == backbone_dim + 64
    pixels = _pixels()
    with torch.no_grad():
        parts = model.forward_parts(_normalised(pixels, model))
        cnn = network.backbones["shared"](_normalised(pixels, model))
        colour = create_backbone("color-hist", pretrained=False)(pixels)  # the registry baseline itself
    assert parts.shape == (4, backbone_dim + 64)
    assert torch.allclose(parts[:, :backbone_dim], torch.nn.functional.normalize(cnn, dim=1), atol=1e-6)
    assert torch.allclose(parts[:, backbone_dim:], 0.5 * torch.nn.functional.normalize(colour, dim=1), atol=1e-6)
    assert not torch.allclose(parts[0, backbone_dim:], parts[1, backbone_dim:])


@pytest.mark.parametrize("half", [False, True])
def test_backbone_colour_checkpoint_round_trips_strictly(tmp_path: Path, half: bool) -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16).eval()
    model = FineTunedFaceBodyModel.from_stages(network, FusionProjector(network.feature_dim + 64, 2, 12),
                                               cut="backbone", colour_weight=1.5).eval()
    path = save_finetuned_model(model, tmp_path / "m.pt", half=half)
    loaded = load_embedding_model(path)  # the generic loader, as --model uses
    assert isinstance(loaded, FineTunedFaceBodyModel)
    assert (loaded.cut, loaded.colour_weight, loaded.part_head) == ("backbone", 1.5, None)
    images = _normalised(_pixels(), model)
    with torch.no_grad():
        expected, got = model.forward_parts(images), loaded.forward_parts(images)
    assert torch.allclose(expected, got, atol=2e-3 if half else 1e-6)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["part_head"] = {"0.weight": torch.zeros(16, network.feature_dim)}
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="'backbone' cut but carries a part head"):
        load_embedding_model(tmp_path / "bad.pt", precision="fp32")
    checkpoint["part_head"], checkpoint["head"] = None, {"weight": torch.zeros(12, network.feature_dim)}
    torch.save(checkpoint, tmp_path / "wrong_dim.pt")
    with pytest.raises(ModelError, match="projector expects"):
        load_embedding_model(tmp_path / "wrong_dim.pt", precision="fp32")


def test_checkpoints_from_before_the_cut_field_load_as_hidden_cuts(tmp_path: Path) -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16).eval()
    model = FineTunedFaceBodyModel.from_stages(network, FusionProjector(16, 2, 12))
    checkpoint = torch.load(save_finetuned_model(model, tmp_path / "m.pt"), weights_only=True)
    del checkpoint["cut"], checkpoint["colour_weight"]
    torch.save(checkpoint, tmp_path / "old.pt")
    loaded = load_embedding_model(tmp_path / "old.pt", precision="fp32")
    assert (loaded.cut, loaded.colour_weight, loaded.part_dim) == ("hidden", 0.0, 16)


def test_freeze_backbone_norms_keeps_running_statistics() -> None:
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16, out_dim=8)
    assert network.freeze_backbone_norms() > 0
    network.train()
    norm = network.backbones["shared"].trunk[1]
    before = norm.running_mean.clone()
    network.embed(_images(8) * 3 + 1, "body")
    assert not norm.training and torch.equal(norm.running_mean, before)
    assert network.heads["shared"].hidden[1].training  # the head's BatchNorms still learn
