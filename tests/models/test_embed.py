"""The embedding engine (paths and PIL images, cache) and part fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from comicid.errors import ImageReadError
from comicid.models import FeatureCache, embed_crops, fuse_parts, load_embedding_model


def _crops(folder: Path) -> tuple[list[Image.Image], list[Path]]:
    rng = np.random.default_rng(0)
    images, paths = [], []
    for i, (width, height) in enumerate([(40, 90), (120, 30), (32, 32), (7, 300), (64, 48)]):
        image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
        images.append(image)
        paths.append(folder / f"{i}.png")
        image.save(paths[-1])
    return images, paths


@pytest.mark.parametrize("num_workers", [0, 1])
def test_paths_and_images_of_mixed_sizes_embed_alike(tmp_path: Path, num_workers: int) -> None:
    model = load_embedding_model("tiny-cnn")
    images, paths = _crops(tmp_path)
    from_images = embed_crops(images, model, batch_size=2, num_workers=0, progress=False)
    from_paths = embed_crops(paths, model, batch_size=2, num_workers=num_workers, progress=False)
    assert from_images.shape == (5, 32) and from_images.dtype == np.float32
    np.testing.assert_allclose(from_paths, from_images, atol=1e-6)
    single = embed_crops(images[3:4], model, progress=False)  # batching does not change a row
    np.testing.assert_allclose(single[0], from_images[3], atol=1e-5)


def test_unreadable_crop_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageReadError, match="bad.png"):
        embed_crops([bad], load_embedding_model("tiny-cnn"), num_workers=0, progress=False)


def test_cache_skips_known_crops_and_persists(tmp_path: Path) -> None:
    model = load_embedding_model("tiny-cnn")
    images, paths = _crops(tmp_path)
    cache = FeatureCache(tmp_path / "cache", model.model_id)
    first = embed_crops(paths[:3], model, num_workers=0, progress=False, cache=cache)
    reopened = FeatureCache(tmp_path / "cache", model.model_id)
    assert len(reopened) == 3
    calls: list[int] = []
    original = model.forward_parts

    def counting(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return original(images)

    model.forward_parts = counting  # type: ignore[method-assign]
    again = embed_crops(paths, model, num_workers=0, progress=False, cache=reopened)
    assert calls == [2]  # only the two new crops went through the network
    np.testing.assert_allclose(again[:3], first, atol=1e-6)
    with pytest.raises(ValueError, match="cache of 'other'"):
        embed_crops(paths, model, progress=False, cache=FeatureCache(tmp_path / "cache", "other"))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_fuse_parts_sums_normalised_parts() -> None:
    face, body = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 10.0])
    parts = np.stack([face, body, np.array([0.0, 2.0, 0.0]), np.zeros(3)])
    fused = fuse_parts(parts, np.array([0, 0, 1, 2]), 4)
    np.testing.assert_allclose(fused[0], [2 ** -0.5, 0.0, 2 ** -0.5], atol=1e-6)  # equal weight
    np.testing.assert_allclose(fused[1], [0.0, 1.0, 0.0])  # body missing: face alone
    np.testing.assert_array_equal(fused[2], 0.0)  # only a zero (missing) part
    np.testing.assert_array_equal(fused[3], 0.0)  # no part at all


def test_fuse_parts_applies_the_head_to_the_sum() -> None:
    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        head.bias.copy_(torch.tensor([0.0, 1.0]))
    parts = np.array([[4.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    fused = fuse_parts(parts, np.array([0, 0, 1]), 2, head=head)
    summed = np.array([1.0, 1.0])  # normalise(face) + normalise(body)
    expected = _unit(np.array([summed[0], summed[0] + summed[1] + 1.0]))
    np.testing.assert_allclose(fused[0], expected, atol=1e-6)
    np.testing.assert_array_equal(fused[1], 0.0)  # no evidence stays zero, not the head's bias


def test_fuse_parts_rejects_out_of_range_instances() -> None:
    with pytest.raises(ValueError, match="instance_index"):
        fuse_parts(np.ones((2, 3)), np.array([0, 2]), 2)


def test_traced_inference_matches_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from comicid.models import embed as embed_module
    from comicid.models.embedding_model import load_embedding_model

    model = load_embedding_model("tiny-cnn")
    crops = [Image.new("RGB", (20 + i, 30), (i * 20, 100, 200 - i * 20)) for i in range(6)]
    eager = embed_module.embed_crops(crops, model, num_workers=0, progress=False)
    monkeypatch.setattr(embed_module, "MIN_CROPS_FOR_TRACING", 1)
    traced_forward = embed_module._compiled_forward(model, 6)
    assert isinstance(traced_forward, torch.jit.ScriptModule)
    traced = embed_module.embed_crops(crops, model, num_workers=0, progress=False)
    assert np.allclose(eager, traced, atol=1e-5)


def test_models_that_cannot_be_traced_faithfully_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    from comicid.models import embed as embed_module
    from comicid.models.embedding_model import load_embedding_model

    monkeypatch.setattr(embed_module, "MIN_CROPS_FOR_TRACING", 1)
    model = load_embedding_model("random")  # features seeded by crop content: not traceable as a graph
    assert embed_module._compiled_forward(model, 100) == model.forward_parts
    crops = [Image.new("RGB", (16, 16), (i * 40, 0, 0)) for i in range(5)]
    assert embed_module.embed_crops(crops, model, num_workers=0, progress=False, batch_size=3).shape == (5, 128)
