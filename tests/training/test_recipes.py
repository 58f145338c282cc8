"""End to end: both stages on a tiny synthetic book with the tiny CNN, on CPU, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from comicid.cli import main
from comicid.data.synth import generate_books
from comicid.models.embed import fuse_parts
from comicid.models.embedding_model import load_embedding_model
from comicid.models.embedding_model import load_embedding_model
from comicid.models.facebody import FineTunedFaceBodyModel, load_facebody_network
from comicid.training.config import FinetuneConfig, SSLConfig, load_config
from comicid.training.finetune import train_finetune
from comicid.training.ssl import train_ssl

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _falls(losses: list[float], window: int = 2, margin: float = 0.08) -> bool:
    """Mean of the last ``window`` logged losses is below the first ones by ``margin`` (relative).

    Logged losses are already means over ``log_every`` steps; over seeds 0-3 both tiny recipes fall
    by 15-30 %, so 8 % leaves room for platform differences without passing a flat loss.
    """
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    return last < first * (1 - margin)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_books(tmp_path_factory.mktemp("synth"), books=2, characters=4, pages=2, seed=0,
                          page_size=(500, 700), progress=False)


@pytest.fixture(scope="module")
def ssl_run(book: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp("ssl")
    config = load_config(CONFIGS / "ssl_synth_tiny.yaml", SSLConfig,
                         {"output_dir": str(out), "data": {"manifests": [str(book)]}})
    result = train_ssl(config, progress=False)
    return out, result.losses()


def test_ssl_loss_falls_and_writes_network(ssl_run: tuple[Path, list[float]]) -> None:
    out, losses = ssl_run
    assert _falls(losses), losses
    network = load_facebody_network(out / "ssl_model.pt")
    assert network.shared and network.parts == ("face", "body")
    assert (out / "checkpoint.pt").is_file()
    assert json.loads((out / "history.json").read_text())


def test_finetune_loss_falls_and_exports_an_embedding_model(
        ssl_run: tuple[Path, list[float]], book: Path, tmp_path: Path) -> None:
    config = load_config(CONFIGS / "finetune_synth_tiny.yaml", FinetuneConfig,
                         {"output_dir": str(tmp_path), "ssl_checkpoint": str(ssl_run[0] / "ssl_model.pt"),
                          "data": {"manifests": [str(book)], "val_fraction": 0.5},
                          "train": {"val_every": 10}})
    result, path = train_finetune(config, progress=False)
    assert _falls(result.losses()), result.losses()
    assert result.best is not None and 0.0 < result.best <= 1.0
    model = load_embedding_model(path, precision="fp32")
    crops = torch.randn(3, 3, model.input_size, model.input_size)
    with torch.no_grad():
        parts = model.forward_parts(crops).numpy()
    fused = fuse_parts(parts, np.array([0, 0, 1]), 2, model.head)
    assert fused.shape == (2, model.out_dim)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)


def test_finetune_without_stage1_exports_the_backbone_cut_with_colour(book: Path, tmp_path: Path) -> None:
    """The no-stage-1 control with the shipped switches, end to end into ``load_embedding_model``."""
    config = load_config(CONFIGS / "finetune_synth_tiny.yaml", FinetuneConfig,
                         {"output_dir": str(tmp_path), "ssl_checkpoint": None, "backbone": "tiny-cnn",
                          "input_size": 32, "cut": "backbone", "colour_weight": 0.5, "projector_init": "pca",
                          "data": {"manifests": [str(book)]}, "train": {"steps": 5}})
    _, path = train_finetune(config, progress=False)
    model = load_embedding_model(path)
    assert isinstance(model, FineTunedFaceBodyModel)
    assert (model.cut, model.colour_weight) == ("backbone", 0.5)
    assert model.part_dim == model.backbone.feature_dim + 64 and model.head.in_features == model.part_dim


def test_cli_runs_both_stages_and_resumes(book: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ssl_yaml = tmp_path / "ssl.yaml"
    ssl_yaml.write_text((CONFIGS / "ssl_synth_tiny.yaml").read_text()
                        .replace("../runs/synth_tiny/manifest.csv", str(book))
                        .replace("../runs/ssl_synth_tiny", str(tmp_path / "ssl"))
                        .replace("steps: 30", "steps: 4").replace("checkpoint_every: 10", "checkpoint_every: 2"))
    assert main(["-q", "train", "ssl", str(ssl_yaml)]) == 0
    assert main(["train", "ssl", str(ssl_yaml), "--resume"]) == 0  # already finished: nothing to redo
    assert "ssl: 4 steps" in capsys.readouterr().out
    ft_yaml = tmp_path / "ft.yaml"
    ft_yaml.write_text((CONFIGS / "finetune_synth_tiny.yaml").read_text()
                       .replace("../runs/synth_tiny/manifest.csv", str(book))
                       .replace("../runs/ssl_synth_tiny", str(tmp_path / "ssl"))
                       .replace("../runs/finetune_synth_tiny", str(tmp_path / "ft"))
                       .replace("steps: 40", "steps: 3"))
    assert main(["-q", "train", "finetune", str(ft_yaml)]) == 0
    assert (tmp_path / "ft" / "model.pt").is_file()


def test_cli_reports_a_bad_recipe_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("output_dir: out\ndata: {manifests: [m.csv]}\ntrain: {lerning_rate: 0.1}\n")
    assert main(["train", "ssl", str(recipe)]) == 1
    err = capsys.readouterr().err.strip()
    assert "lerning_rate" in err and "section 'train'" in err and "\n" not in err
