"""The face-body network, its freezing, fusions, and the stage-2 model's checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from comicid.errors import ModelError
from comicid.models.embed import fuse_parts
from comicid.models.facebody import (
    FineTunedFaceBodyModel,
    FusionProjector,
    build_facebody_network,
    load_facebody_network,
    load_finetuned_model,
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
        loaded = load_finetuned_model(save_finetuned_model(model, tmp_path / "m.pt", half=half))
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


def test_a_checkpoint_without_part_head_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"format": "comicid-model", "version": 1, "backbone": "tiny-cnn", "state_dict": {},
                "head": None}, path)
    with pytest.raises(ModelError):
        load_finetuned_model(path)
