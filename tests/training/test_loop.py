"""The shared loop: the loss falls, resume continues exactly, early stopping, schedule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from comicid.data.datasets import ShuffleBatchSampler
from comicid.errors import ConfigError
from comicid.training.config import TrainConfig
from comicid.training.loop import fit, warmup_cosine

CPU = torch.device("cpu")


def _problem() -> tuple[nn.Module, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    torch.manual_seed(0)
    return nn.Linear(4, 1), inputs, targets


def _run(out: Path, config: TrainConfig, interrupt_at: int | None = None, resume: bool = False,
         validate: object = None) -> tuple[nn.Module, object]:
    model, inputs, targets = _problem()
    sampler = ShuffleBatchSampler(len(inputs), 8, seed=config.seed)
    calls = {"n": 0}

    def data(epoch: int, skip: int):
        sampler.set_position(epoch, skip)
        return (torch.tensor(batch) for batch in sampler)

    def step(index: Tensor) -> dict[str, Tensor]:
        calls["n"] += 1
        if interrupt_at is not None and calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        noise = torch.randn(len(index), 1) * 0.01  # uses the global RNG, which resume must restore
        loss = ((model(inputs[index]) - targets[index] - noise) ** 2).mean()
        return {"loss": loss}

    result = fit(model, data, step, config, out, CPU, validate=validate, resume=resume, progress=False)
    return model, result


def test_loss_falls_and_resume_is_exact(tmp_path: Path) -> None:
    config = TrainConfig(steps=20, lr=0.05, warmup_steps=2, checkpoint_every=3, log_every=5, val_every=0)
    straight, result = _run(tmp_path / "a", config)
    losses = result.losses()
    assert losses[-1] < losses[0] * 0.5
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", config, interrupt_at=14)  # dies after the checkpoint of step 12
    resumed, resumed_result = _run(tmp_path / "b", config, resume=True)
    assert resumed_result.steps == 20
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_resume_needs_a_checkpoint_of_the_same_recipe(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint"):
        _run(tmp_path, TrainConfig(steps=2, warmup_steps=0), resume=True)


def test_early_stopping_restores_the_best_weights(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.9])
    config = TrainConfig(steps=30, lr=0.01, warmup_steps=0, val_every=2, patience=3, checkpoint_every=0)
    _, result = _run(tmp_path, config, validate=lambda: {"loss": -next(scores)})
    assert result.stopped_early and result.steps == 10
    assert result.best == pytest.approx(-0.7) and result.best_step == 4


def test_warmup_then_cosine_to_zero() -> None:
    factor = warmup_cosine(4, 104)
    assert factor(0) == pytest.approx(0.25) and factor(3) == pytest.approx(1.0)
    assert factor(54) == pytest.approx(0.5) and factor(104) == pytest.approx(0.0)


def test_optimizer_groups_scale_lr_and_skip_decay_on_biases() -> None:
    from comicid.training.loop import build_optimizer

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5),
                                lr_scale=lambda name: 0.1 if name.startswith("0.") else 1.0)
    seen = {(round(group["lr"], 6), group["weight_decay"], len(group["params"])) for group in optimizer.param_groups}
    assert seen == {(0.01, 0.0, 1), (0.01, 0.5, 1), (0.1, 0.0, 1), (0.1, 0.5, 1)}

class _Payload:
    """Pickles as a call to ``os.mkdir(marker)``: loading it with ``weights_only=False`` runs that call."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return (os.mkdir, (str(self.marker),))


def test_a_planted_checkpoint_is_refused_and_runs_no_code(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "fingerprint": "", "payload": _Payload(marker)}, out / "checkpoint.pt")
    with pytest.raises(ConfigError, match="cannot be loaded safely"):
        _run(out, TrainConfig(steps=2, warmup_steps=0), resume=True)
    assert not marker.exists()  # the payload never executed


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(out, TrainConfig(steps=2, warmup_steps=0, checkpoint_every=1))
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot be loaded safely"):
        _run(out, TrainConfig(steps=4, warmup_steps=0), resume=True)
