"""The one training loop every recipe runs: a recipe supplies a model, data and a step; the loop does the rest.

What lives here, once: seeding, device placement of batches, mixed precision (CUDA only: fp16
autocast with a gradient scaler; CPU trains in fp32, where autocast brings no speed for training),
gradient clipping, AdamW (or Adam, SGD) with linear warm-up then cosine or step decay, periodic
validation with early stopping and best-weights restore, progress (tqdm), a JSON history, and
checkpoints written atomically every ``checkpoint_every`` steps so that ``resume=True`` continues
exactly where a run stopped (optimiser, schedule, random state and position in the epoch included).

Files in ``output_dir``: ``checkpoint.pt`` (resume state), ``best.pt`` (best validated weights),
``history.json`` (one record per logged interval and per validation).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from comicid.errors import ConfigError
from comicid.runtime import configure_threads
from comicid.atomic import atomic_write, atomic_write_text
from comicid.training.config import TrainConfig

#: ``data(epoch, skip)``: the batches of ``epoch`` after the first ``skip`` ones.
EpochData = Callable[[int, int], Iterable[Any]]
#: ``step(batch) -> {"loss": scalar tensor, other named terms}``; the batch is already on the device.
StepFn = Callable[[Any], Mapping[str, Tensor]]
#: ``validate() -> {metric name: value}``; called with the model in eval mode and no gradients.
ValidateFn = Callable[[], Mapping[str, float]]

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
HISTORY_NAME = "history.json"


@dataclass
class TrainResult:
    """What a run did: steps taken, the history, and the best validated value (if validated)."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_step: int | None = None
    stopped_early: bool = False

    def losses(self) -> list[float]:
        """The logged mean training loss of each interval, in order."""
        return [record["loss"] for record in self.history if "loss" in record]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear from ~0 to 1 over ``warmup_steps``, then cosine down to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The learning-rate factor of ``config``: linear warm-up from ``warmup_start``, then its schedule.

    ``cosine`` with ``warmup_start`` 0 is :func:`warmup_cosine` exactly (the SSL/finetune recipes);
    ``step`` multiplies by ``gamma`` at each milestone (fractions of ``steps``), as BoT does.

    Kept by hand rather than timm's ``CosineLRScheduler``/``StepLRScheduler``: those step per epoch or
    per update with their own warm-up rule, and swapping them in would move every trained model's
    learning rate (and so the shipped weights and benchmark numbers); one ``LambdaLR`` factor keeps
    resume exact through torch's own scheduler state.
    """
    if config.schedule == "cosine" and config.warmup_start == 0.0:
        return warmup_cosine(config.warmup_steps, config.steps)
    warmup, start = config.warmup_steps, config.warmup_start
    milestones = sorted(round(fraction * config.steps) for fraction in config.milestones)

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if config.schedule == "step":
            return config.gamma ** sum(step >= milestone for milestone in milestones)
        progress = (step - warmup) / max(1, config.steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def build_optimizer(model: nn.Module, config: TrainConfig,
                    lr_scale: Callable[[str], float] | None = None) -> torch.optim.Optimizer:
    """``config.optimizer`` (AdamW by default, Adam or SGD) over trainable parameters; biases,
    normalisation parameters and those named by the model's ``no_weight_decay()`` get no weight decay.

    ``lr_scale(parameter name)`` multiplies the learning rate of a parameter, e.g. 0.1 for a
    pretrained backbone under a freshly initialised head, so that the head's large early gradients
    do not wash out what the backbone already knows.
    """
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    # timm's convention: a model may name parameters that must not decay (e.g. center-loss centres)
    no_decay = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            scale = 1.0 if lr_scale is None else float(lr_scale(name))
            groups.setdefault((parameter.ndim > 1 and name not in no_decay, scale), []).append(parameter)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    param_groups = [{"params": params, "lr": config.lr * scale, "weight_decay": config.weight_decay if decay else 0.0}
                    for (decay, scale), params in sorted(groups.items(), key=lambda item: item[0])]
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=config.lr)
    return torch.optim.AdamW(param_groups, lr=config.lr)


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch on ``device``; everything else unchanged."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(value, device) for value in batch)
    return batch


def _rng_state() -> dict[str, Any]:
    """Random states as tensors, ints and tuples only, so the checkpoint loads with ``weights_only=True``."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss),
                   float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(obj: Any, path: Path) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def load_resume_state(path: Path, device: torch.device) -> dict[str, Any]:
    """A resume checkpoint, read with ``weights_only=True``: a planted file can hold pickled code, and
    only tensors, numbers, strings and containers are let through (the unpickler refuses the rest).

    Raises:
        ConfigError: the file is not a readable checkpoint of this loop (truncated, pickled objects,
            another format); the message says to start again without ``--resume``.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...: all mean "not loadable"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"--resume: '{path}' cannot be loaded safely ({first[:200]}); it is not a "
                          "checkpoint written by this version, or holds pickled code: delete it or use "
                          "another output_dir, and run without --resume") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"--resume: '{path}' is not a training checkpoint; run without --resume")
    return state


class _Monitor:
    """Tracks the monitored validation metric for best-weights and early stopping."""

    def __init__(self, name: str, mode: str, patience: int) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"monitor mode must be 'min' or 'max', got {mode}")
        self.name, self.mode, self.patience = name, mode, patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0

    def update(self, metrics: Mapping[str, float], step: int) -> bool:
        """Record a validation; True when it is the best so far."""
        if self.name not in metrics:
            raise KeyError(f"validation returned no '{self.name}' (got {sorted(metrics)})")
        value = float(metrics[self.name])
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better and math.isfinite(value):
            self.best, self.best_step, self.bad = value, step, 0
            return True
        self.bad += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience


def fit(model: nn.Module, data: EpochData, step: StepFn, config: TrainConfig, output_dir: str | Path,
        device: torch.device, validate: ValidateFn | None = None, monitor: str = "loss",
        mode: str = "min", resume: bool = False, progress: bool = True,
        fingerprint: str = "", lr_scale: Callable[[str], float] | None = None) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimiser steps; returns the :class:`TrainResult`.

    ``model`` must already be on ``device``. ``monitor``/``mode`` name the validation metric that
    selects the best weights and drives early stopping (``patience``); when ``validate`` is given the
    best weights are restored into ``model`` at the end. ``fingerprint`` (e.g. a hash of the recipe)
    is stored in checkpoints: resuming with a different recipe is refused. ``lr_scale``: see
    :func:`build_optimizer`.

    Raises:
        ConfigError: ``resume`` without a checkpoint, or a checkpoint of another recipe.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        configure_threads(config.threads)
    seed_everything(config.seed)
    optimizer = build_optimizer(model, config, lr_scale)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    watcher = _Monitor(monitor, mode, config.patience)
    result = TrainResult(steps=0)
    epoch, skip = 0, 0
    checkpoint_path = output_dir / CHECKPOINT_NAME
    if resume:
        if not checkpoint_path.is_file():
            raise ConfigError(f"--resume: no checkpoint in '{output_dir}'; run without --resume to start")
        state = load_resume_state(checkpoint_path, device)
        if state.get("fingerprint") != fingerprint:
            raise ConfigError(f"--resume: the checkpoint in '{output_dir}' was made by a different recipe; "
                              f"use another output_dir or run without --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        result = TrainResult(**state["result"])
        watcher.best, watcher.best_step, watcher.bad = state["monitor"]
        epoch, skip = state["epoch"], state["skip"]

    def checkpoint(epoch: int, skip: int) -> None:
        _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state(),
               "result": asdict(result), "monitor": (watcher.best, watcher.best_step, watcher.bad),
               "epoch": epoch, "skip": skip, "fingerprint": fingerprint}, checkpoint_path)
        atomic_write_text(output_dir / HISTORY_NAME, json.dumps(result.history, indent=1))

    def run_validation() -> None:
        model.eval()
        with torch.no_grad():
            metrics = dict(validate())  # type: ignore[misc]
        model.train()
        record = {"step": float(result.steps), **{f"val_{k}": float(v) for k, v in metrics.items()}}
        result.history.append(record)
        if watcher.update(metrics, result.steps):
            _save(model.state_dict(), output_dir / BEST_NAME)
            result.best, result.best_step = watcher.best, watcher.best_step

    model.train()
    sums: dict[str, float] = {}
    count = 0
    bar = tqdm(total=config.steps, initial=result.steps, desc="training", unit="step", disable=not progress)
    while result.steps < config.steps and not result.stopped_early:
        produced = 0
        for batch in data(epoch, skip):
            produced += 1
            skip += 1
            batch = move_to(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                terms = step(batch)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {result.steps + 1}; "
                                         f"lower train.lr or raise loss.temperature")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            result.steps += 1
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            count += 1
            bar.update(1)
            last = result.steps == config.steps
            if count and (result.steps % max(1, config.log_every) == 0 or last):
                record = {"step": float(result.steps), "lr": scheduler.get_last_lr()[0],
                          **{name: total / count for name, total in sums.items()}}
                result.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                sums, count = {}, 0
            if validate is not None and ((config.val_every and result.steps % config.val_every == 0) or last):
                run_validation()
                result.stopped_early = watcher.exhausted
            if (config.checkpoint_every and result.steps % config.checkpoint_every == 0) or last \
                    or result.stopped_early:
                checkpoint(epoch, skip)
            if last or result.stopped_early:
                break
        else:
            if produced == 0 and skip == 0:
                raise ConfigError("the training data produced no batch; lower train.batch_size or add data")
            epoch, skip = epoch + 1, 0
    bar.close()
    if validate is not None and (output_dir / BEST_NAME).is_file():
        model.load_state_dict(torch.load(output_dir / BEST_NAME, map_location=device, weights_only=True))
    atomic_write_text(output_dir / HISTORY_NAME, json.dumps(result.history, indent=1))
    return result
