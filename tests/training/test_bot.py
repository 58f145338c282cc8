"""The BoT recipe end to end on tiny synthetic books with the tiny CNN, and its user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_metric_learning.distances import LpDistance

from comicid.cli import main
from comicid.data.manifest import read_manifest, write_manifest
from comicid.data.synth import generate_books
from comicid.errors import ConfigError
from comicid.losses import CenterLoss, cross_domain_batch_hard
from comicid.models.embedding_model import load_embedding_model
from comicid.models.bot import BoTBackbone, BoTNetwork
from comicid.training.bot import BotConfig, _Trainable, train_bot
from comicid.training.config import TrainConfig, load_config
from comicid.training.loop import build_optimizer, lr_factor
from comicid.identity import mine_identities

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "bot_synth_tiny.yaml"


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_books(tmp_path_factory.mktemp("synth"), books=2, characters=6, pages=2, seed=0,
                          page_size=(500, 700), progress=False)


def _config(out: Path, manifest: Path, **sections: Any) -> BotConfig:
    over: dict[str, Any] = {"output_dir": str(out), "data": {"manifests": [str(manifest)]}}
    for key, value in sections.items():
        over[key] = {**over.get(key, {}), **value} if isinstance(value, dict) else value
    return load_config(CONFIG, BotConfig, over)


def test_loss_falls_and_the_model_loads_everywhere(books: Path, tmp_path: Path) -> None:
    result = train_bot(_config(tmp_path, books, data={"val_identities": 0.3}), progress=False)
    losses = result.phases["train"].losses()
    assert np.mean(losses[-2:]) < 0.92 * np.mean(losses[:2]), losses
    assert result.phases["train"].best is not None
    model = load_embedding_model(result.model_path)
    assert model.model_id.startswith("bot-tiny-cnn@")
    # resume: the finished phase is skipped and the same weights come out
    again = train_bot(_config(tmp_path, books, data={"val_identities": 0.3}), resume=True, progress=False)
    assert again.phases["train"].steps == 0
    reloaded = load_embedding_model(again.model_path)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.forward_parts(images), reloaded.forward_parts(images), atol=1e-6)


def test_cross_domain_center_loss_mdl_and_pseudo_labels(books: Path, tmp_path: Path) -> None:
    secondary = generate_books(tmp_path / "secondary", books=1, characters=4, pages=2, seed=7,
                               page_size=(500, 700), progress=False)
    frame = read_manifest(books)
    frame["identity"] = ""
    unlabelled = write_manifest(frame, tmp_path / "unlabelled.csv")
    config = _config(tmp_path / "run", books, loss={"cross_domain": True, "center_weight": 5e-4},
                     train={"p": 2, "epochs": 3}, pseudo={"epochs": 1, "d_n": 0.3, "d_p": 0.15},
                     mdl={"secondary_manifests": [str(secondary)], "secondary_identities": 2,
                          "finetune_epochs": 2, "freeze_stages": 1})
    result = train_bot(config, progress=False, pseudo_label=unlabelled, labeler=mine_identities)
    assert list(result.phases) == ["train", "finetune", "pseudo"]
    assert any("MDL: 2 secondary identities" in note for note in result.notes)
    # the frozen first stage did not move during fine-tuning
    before = torch.load(tmp_path / "run" / "train" / "phase.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "run" / "finetune" / "phase.pt", weights_only=True)["model"]
    first = "network.backbone.feature_map.0.weight"
    assert torch.equal(before[first], after[first])
    later = "network.backbone.feature_map.3.weight"
    assert not torch.equal(before[later], after[later])
    assert result.pseudo is not None and result.pseudo.identities >= 1
    written = pd.read_csv(tmp_path / "run" / "pseudo_labels.csv")
    assert len(written) == len(result.pseudo.labels) and (written["pseudo_label"] >= 0).any()


def test_cross_domain_miner_takes_the_hardest_pairs_of_other_domains() -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(12, 4, generator=generator)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    domains = torch.tensor([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1])
    anchors, positives, negatives = cross_domain_batch_hard(embeddings, labels, domains, LpDistance())
    distance = LpDistance()(embeddings)
    assert 9 not in anchors.tolist()  # identity 3 lives in one domain: no cross-domain positive
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
        assert labels[p] == labels[a] and domains[p] != domains[a]
        assert labels[n] != labels[a] and domains[n] != domains[a]
        pos = [j for j in range(12) if labels[j] == labels[a] and domains[j] != domains[a]]
        neg = [j for j in range(12) if labels[j] != labels[a] and domains[j] != domains[a]]
        assert distance[a, p] == distance[a, pos].max() and distance[a, n] == distance[a, neg].min()


def test_centres_move_at_bots_rate_without_weight_decay() -> None:
    network = BoTNetwork(BoTBackbone("tiny-cnn", False, 32), 3)
    trainable = _Trainable(network, CenterLoss(3, network.backbone.feature_dim))
    config = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=5e-4)
    optimizer = build_optimizer(trainable, config, lr_scale=lambda name: 100.0 if name.startswith("center.") else 1.0)
    (group,) = [g for g in optimizer.param_groups if any(p is trainable.center.centers for p in g["params"])]
    assert group["weight_decay"] == 0.0 and group["lr"] == pytest.approx(1.0)
    assert isinstance(optimizer, torch.optim.SGD)


def test_center_loss_is_the_mean_squared_distance_to_the_centre() -> None:
    loss = CenterLoss(2, 3)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0, 0], [1, 1, 1]]))
    value = loss(torch.tensor([[1.0, 0, 0], [1, 1, 3]]), torch.tensor([0, 1]))
    assert value.item() == pytest.approx((1 + 4) / 2)


def test_warm_up_starts_at_a_tenth_and_steps_down() -> None:
    factor = lr_factor(TrainConfig(steps=100, warmup_steps=10, warmup_start=0.1, schedule="step",
                                   milestones=[0.5, 0.75], gamma=0.1))
    assert factor(0) == pytest.approx(0.1) and factor(10) == pytest.approx(1.0)
    assert factor(49) == pytest.approx(1.0) and factor(50) == pytest.approx(0.1) and factor(80) == pytest.approx(0.01)


def test_manifest_and_config_errors_are_clear(books: Path, tmp_path: Path) -> None:
    frame = read_manifest(books).drop(columns=["style", "source"])
    no_domain = write_manifest(frame, tmp_path / "no_domain.csv")
    with pytest.raises(ConfigError, match="no 'domain' column"):
        train_bot(_config(tmp_path / "a", no_domain, loss={"cross_domain": True}), progress=False)
    unlabelled = frame.assign(identity="")
    with pytest.raises(ConfigError, match="identity"):
        train_bot(_config(tmp_path / "b", write_manifest(unlabelled, tmp_path / "u.csv")), progress=False)
    with pytest.raises(ConfigError, match="every row has an identity"):
        train_bot(_config(tmp_path / "c", books, train={"epochs": 2}), progress=False, pseudo_label=books, labeler=mine_identities)
    with pytest.raises(ConfigError, match="loss.triplet must be one of"):
        _config(tmp_path, books, loss={"triplet": "hard"})
    with pytest.raises(ConfigError, match="unknown key"):
        _config(tmp_path, books, train={"epoch": 3})
    with pytest.raises(ConfigError, match="val_identities"):
        _config(tmp_path, books, data={"val_fraction": 0.2})


def test_cli_trains_and_reports_a_missing_column_in_one_line(books: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    frame = read_manifest(books).drop(columns=["style", "source"])
    manifest = write_manifest(frame, tmp_path / "m.csv")
    config = tmp_path / "bot.yaml"
    config.write_text(CONFIG.read_text().replace("../runs/synth_tiny/manifest.csv", str(manifest))
                      .replace("../runs/bot_synth_tiny", str(tmp_path / "out"))
                      .replace("cross_domain: false", "cross_domain: true"))
    assert main(["train", "bot", str(config), "-q"]) == 1
    err = capsys.readouterr().err
    assert "no 'domain' column" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    config.write_text(config.read_text().replace("cross_domain: true", "cross_domain: false")
                      .replace("epochs: 8", "epochs: 2"))
    assert main(["train", "bot", str(config), "-q"]) == 0
    assert (tmp_path / "out" / "model.pt").is_file()
