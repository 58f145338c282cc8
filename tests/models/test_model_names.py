"""`--model` resolution: registry names, generic checkpoints, stage-2 face-body checkpoints, `default`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comicid.errors import ModelError
from comicid.models import embedding_model
from comicid.models.embedding_model import load_embedding_model
from comicid.models.facebody import FineTunedFaceBodyModel, FusionProjector, build_facebody_network, \
    save_finetuned_model


def tiny_finetuned(path: Path) -> FineTunedFaceBodyModel:
    torch.manual_seed(0)
    network = build_facebody_network("tiny-cnn", pretrained=False, hidden_dim=16, out_dim=8).eval()
    model = FineTunedFaceBodyModel.from_stages(network, FusionProjector(16, 2, out_dim=6)).eval()
    save_finetuned_model(model, path)
    return model


def test_stage_two_checkpoints_load_through_the_generic_loader(tmp_path: Path) -> None:
    saved = tiny_finetuned(tmp_path / "m.pt")
    loaded = load_embedding_model(tmp_path / "m.pt")
    assert isinstance(loaded, FineTunedFaceBodyModel)
    assert loaded.model_id.startswith("tiny-cnn@") and loaded.out_dim == 6
    images = torch.rand(3, 3, saved.input_size, saved.input_size)
    with torch.inference_mode():
        assert torch.allclose(saved.forward_parts(images), loaded.forward_parts(images), atol=1e-5)


def test_default_names_the_shipped_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding_model, "DEFAULT_MODEL_PATH", tmp_path / "absent.pt")
    with pytest.raises(ModelError, match="shipped default model is missing"):
        load_embedding_model("default")
    tiny_finetuned(tmp_path / "default.pt")
    monkeypatch.setattr(embedding_model, "DEFAULT_MODEL_PATH", tmp_path / "default.pt")
    assert load_embedding_model("default").model_id.startswith("default@")


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ModelError, match="default, color-hist"):
        load_embedding_model("nonesuch")
