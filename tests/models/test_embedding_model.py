"""EmbeddingModel contract, loading by name or checkpoint, and checkpoint errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from comicid.errors import ModelError
from comicid.models import EmbeddingModel, create_backbone, load_embedding_model, save_embedding_model


def _fine_tuned() -> EmbeddingModel:
    backbone = create_backbone("tiny-cnn")
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.01)  # differs from a fresh tiny-cnn
    return EmbeddingModel(backbone, nn.Linear(32, 8), model_id="run-1")


def test_load_by_registry_name() -> None:
    model = load_embedding_model("tiny-cnn")
    assert model.model_id == "tiny-cnn"
    assert (model.input_size, model.part_dim, model.out_dim) == (32, 32, 32)
    assert isinstance(model.head, nn.Identity) and not model.training


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _fine_tuned().eval()
    path = save_embedding_model(model, tmp_path / "m.pt")
    loaded = load_embedding_model(path)
    assert re.fullmatch(r"tiny-cnn@[0-9a-f]{12}", loaded.model_id)
    assert (loaded.part_dim, loaded.out_dim) == (32, 8)
    x = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.forward_parts(x), model.forward_parts(x))
        torch.testing.assert_close(loaded.head(torch.ones(1, 32)), model.head(torch.ones(1, 32)))


def test_checkpoint_with_wrong_weights_is_a_clear_error(tmp_path: Path) -> None:
    path = save_embedding_model(_fine_tuned(), tmp_path / "m.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["backbone"] = "resnet18"  # tiny-cnn weights under another architecture's name
    torch.save(checkpoint, path)
    with pytest.raises(ModelError, match="does not match its architecture: missing keys"):
        load_embedding_model(path)


def test_checkpoint_head_must_fit_the_backbone(tmp_path: Path) -> None:
    path = save_embedding_model(_fine_tuned(), tmp_path / "m.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["head"] = {"weight": torch.zeros(8, 64)}
    torch.save(checkpoint, path)
    with pytest.raises(ModelError, match="head expects 64-d input"):
        load_embedding_model(path)


@pytest.mark.parametrize(("content", "message"), [
    ({"format": "other"}, "not a comicid model checkpoint"),
    ({"format": "comicid-model", "version": 99}, "version 99"),
    (b"not a torch file", "cannot read comicid model checkpoint .*not a readable torch file"),
])
def test_foreign_files_are_rejected(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ModelError, match=message):
        load_embedding_model(path)


def test_unknown_name_and_missing_path() -> None:
    with pytest.raises(ModelError, match="unknown model 'clip'.*effnet-lite0-imagenet"):
        load_embedding_model("clip")
    with pytest.raises(ModelError, match="checkpoint 'nowhere/m.pt' not found"):
        load_embedding_model("nowhere/m.pt")
