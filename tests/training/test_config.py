"""Recipe YAML: typed values, relative paths, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from comicid.errors import ConfigError
from comicid.training.config import FinetuneConfig, SSLConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name, cls", [("ssl_synth_tiny.yaml", SSLConfig), ("ssl_default.yaml", SSLConfig),
                                       ("finetune_synth_tiny.yaml", FinetuneConfig),
                                       ("finetune_default.yaml", FinetuneConfig)])
def test_shipped_recipes_load(name: str, cls: type) -> None:
    config = load_config(CONFIGS / name, cls)
    assert config.output_dir.is_absolute()
    assert all(path.is_absolute() for path in config.data.manifests)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_paths_resolve_against_the_recipe_folder(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "output_dir: out\ndata: {manifests: [m/a.csv]}\n"), SSLConfig)
    assert config.output_dir == tmp_path / "out"
    assert config.data.manifests == [tmp_path / "m" / "a.csv"]
    assert config.augment.strong_scale == (0.35, 1.0)


@pytest.mark.parametrize("text, message", [
    ("output_dir: o\ndata: {manifests: [a.csv]}\nmodel: {backbon: x}\n",
     "unknown key(s) ['backbon'] in section 'model'"),
    ("output_dir: o\ndata: {manifests: [a.csv]}\ntrain: {steps: many}\n", "train.steps: expected an integer"),
    ("output_dir: o\ndata: {manifests: [a.csv]}\ntrain: {amp: 1}\n", "train.amp: expected true or false"),
    ("output_dir: o\ndata: {manifests: [a.csv]}\naugment: {strong_scale: [0.5]}\n", "expected 2 values"),
    ("output_dir: o\ndata: {manifests: []}\n", "give at least one training manifest"),
    ("data: {manifests: [a.csv]}\n", "missing required key 'output_dir'"),
    ("output_dir: o\ndata: {manifests: [a.csv]}\nloss: {face_weight: 0, body_weight: 0, identity_weight: 0}\n",
     "not all zero"),
    ("output_dir: o\ndata: {manifests: [a.csv]}\ntrain: {steps: 5, warmup_steps: 5}\n", "warmup_steps"),
    ("output_dir: [o\n", "not valid YAML"),
])
def test_mistakes_raise_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, text), SSLConfig)
    assert message in str(error.value)


def test_finetune_loss_name_is_checked(tmp_path: Path) -> None:
    text = "output_dir: o\nssl_checkpoint: s.pt\ndata: {manifests: [a.csv]}\nloss: {name: arcface}\n"
    with pytest.raises(ConfigError, match="'contrastive' or 'triplet'"):
        load_config(_write(tmp_path, text), FinetuneConfig)


@pytest.mark.parametrize("extra, message", [
    ("cut: middle\n", "cut must be one of ['backbone', 'hidden']"),
    ("projector_init: zeros\n", "projector_init must be one of ['pca', 'orthogonal', 'random']"),
    ("colour_weight: -1\n", "colour_weight must not be negative"),
    ("colour_weight: much\n", "colour_weight: expected a number"),
])
def test_finetune_feature_keys_are_checked(tmp_path: Path, extra: str, message: str) -> None:
    text = "output_dir: o\nssl_checkpoint: s.pt\ndata: {manifests: [a.csv]}\n" + extra
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, text), FinetuneConfig)
    assert message in str(error.value)


def test_no_stage1_control_needs_the_backbone_cut(tmp_path: Path) -> None:
    text = "output_dir: o\nssl_checkpoint: null\ndata: {manifests: [a.csv]}\n"
    with pytest.raises(ConfigError, match="needs cut: backbone"):
        load_config(_write(tmp_path, text), FinetuneConfig)
    config = load_config(_write(tmp_path, text + "cut: backbone\n"), FinetuneConfig)
    assert config.ssl_checkpoint is None and config.projector_init == "random" and config.colour_weight == 0.0
