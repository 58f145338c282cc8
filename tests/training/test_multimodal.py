"""Manga-MMTL M1-M5: each trains and its loss falls; missing text; checkpoints; M3+M5 through embed/evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from comicid.cli import main
from comicid.data.synth import generate_books
from comicid.errors import ConfigError, ModelError
from comicid.models.embedding_model import load_embedding_model
from comicid.models.multimodal import VARIANTS, MultimodalEmbedder, load_multimodal
from comicid.training.config import TrainConfig, load_config
from comicid.training.multimodal import Features, MultimodalConfig, train_variant


def _features(rng: np.random.Generator, n: int = 240, characters: int = 12, albums: int = 3) -> Features:
    """Characters with an image signature; texts carry the album, and every fourth instance has none."""
    character = np.arange(n) % characters
    album = character % albums
    image = rng.normal(size=(characters, 16))[character] + 0.8 * rng.normal(size=(n, 16))
    text = rng.normal(size=(albums, 24))[album] + 0.8 * rng.normal(size=(n, 24))
    text[::4] = 0.0  # instances without text: a zero feature
    return Features(image.astype(np.float32), text.astype(np.float32), character.astype(np.int64),
                    album.astype(np.int64), [f"c{i}" for i in range(characters)], [f"b{i}" for i in range(albums)])


def _config(tmp_path: Path, steps: int = 60) -> MultimodalConfig:
    return MultimodalConfig(output_dir=tmp_path, hidden_dim=32, feature_dim=16, image_model="color-hist",
                            text_model="hashing",
                            train=TrainConfig(steps=steps, batch_size=32, lr=0.05, weight_decay=0.0, warmup_steps=0,
                                              grad_clip=0.0, amp=False, checkpoint_every=0, val_every=0, patience=0,
                                              log_every=10, optimizer="sgd", momentum=0.9))


def test_each_model_trains_and_its_loss_falls(tmp_path: Path) -> None:
    features = _features(np.random.default_rng(0))
    config = _config(tmp_path)
    trained: dict[str, torch.nn.Module] = {}
    for variant in VARIANTS:
        result, net = train_variant(config, variant, features, trained, torch.device("cpu"), progress=False)
        trained[variant] = net
        losses = result.losses()
        assert losses[-1] < 0.7 * losses[0], (variant, losses)
        loaded, model_id = load_multimodal(tmp_path / variant / "model.pt")
        assert model_id.startswith(f"{variant}@")
        embedder = MultimodalEmbedder([loaded], [model_id])
        vectors = embedder.encode(features.image[:5], np.zeros((5, 24), np.float32))  # no text at all: no error
        assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # M5's features: album penultimate (feature_dim) + character penultimate (feature_dim)
    assert embedder.encode(features.image[:2], features.text[:2]).shape == (2, 32)


def test_multimodal_models_start_from_the_unimodal_ones(tmp_path: Path) -> None:
    features = _features(np.random.default_rng(1))
    config = _config(tmp_path, steps=10)
    device = torch.device("cpu")
    m1 = train_variant(config, "M1", features, {}, device, progress=False)[1]
    m3 = train_variant(config, "M3", features, {}, device, progress=False)[1]
    config.train.lr = 0.0  # M5 does not move: what it holds is what it started from
    m5 = train_variant(config, "M5", features, {"M1": m1, "M3": m3}, device, progress=False)[1]
    assert torch.equal(m5.image_branch[0].weight, m1.image_branch[0].weight)
    assert torch.equal(m5.image_character_head.classifier.weight, m1.character_head.classifier.weight)
    assert torch.equal(m5.album_head.penultimate[0].weight, m3.album_head.penultimate[0].weight)


def test_config_rejects_unknown_models_and_test_splits(tmp_path: Path) -> None:
    path = tmp_path / "mm.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "out", "data": {"manifests": ["m.csv"]}, "models": ["M6"]}))
    with pytest.raises(ConfigError, match="subset of"):
        load_config(path, MultimodalConfig)
    path.write_text(yaml.safe_dump({"output_dir": "out", "data": {"manifests": ["m.csv"], "splits": ["dev", "test"]}}))
    with pytest.raises(ConfigError, match="must not include 'test'"):
        load_config(path, MultimodalConfig)


def test_combining_models_of_different_encoders_is_refused(tmp_path: Path) -> None:
    features = _features(np.random.default_rng(2))
    config = _config(tmp_path, steps=2)
    a = train_variant(config, "M1", features, {}, torch.device("cpu"), progress=False)[1]
    b = train_variant(config, "M3", features, {}, torch.device("cpu"), progress=False)[1]
    object.__setattr__(b.spec, "text_model", "minilm-l6")
    with pytest.raises(ModelError, match="share one image and one text model"):
        MultimodalEmbedder([a, b], ["a", "b"])


def test_train_cli_then_embed_and_evaluate_with_m3_plus_m5(tmp_path: Path) -> None:
    """End to end on a tiny synthetic set: train M1-M5 from YAML, then `--model M3+M5` in evaluate."""
    manifest = generate_books(tmp_path / "synth", books=2, characters=3, pages=2, seed=1, page_size=(400, 550),
                              progress=False, speech="manga")
    recipe = {"output_dir": "run", "data": {"manifests": [str(manifest)], "splits": ["dev", "test"][:1]},
              "image_model": "color-hist", "text_model": "hashing", "hidden_dim": 16, "feature_dim": 8,
              "train": {"steps": 12, "batch_size": 8, "lr": 0.05, "warmup_steps": 0, "val_every": 4,
                        "patience": 2, "log_every": 4, "optimizer": "sgd", "amp": False}}
    path = tmp_path / "mm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["-q", "train", "multimodal", str(path)]) == 0
    run = tmp_path / "run"
    assert all((run / variant / "model.pt").is_file() for variant in VARIANTS)
    combined = f"{run / 'M3' / 'model.pt'}+{run / 'M5' / 'model.pt'}"
    model = load_embedding_model(combined)
    assert isinstance(model, MultimodalEmbedder) and model.model_id.count("@") == 2
    out = tmp_path / "result.json"
    collection = tmp_path / "collection"
    assert main(["-q", "evaluate", str(manifest), "--model", combined, "--split", "all", "--json", str(out),
                 "--collection", str(collection)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == model.model_id and 0.0 <= result["retrieval"]["mAP"] <= 1.0
    page = next((tmp_path / "synth" / "pages" / "b0").glob("*.png"))
    assert main(["-q", "search", str(collection), str(page), "--model", combined]) == 1  # no text: refused
    assert main(["-q", "evaluate", str(manifest), "--model", combined, "--method", "adaptive"]) == 1
