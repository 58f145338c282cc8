"""A discriminant head: the trained model's projection, extended by a linear discriminant of labelled identities.

Why: the shipped model was trained on framings of a few sprite sets and synthetic books; across
drawing styles it is no better than its ImageNet starting point. The development sets now hold many
identities drawn in several styles (tilesets, vendors, unit sets). A linear discriminant analysis of
the head's inputs over those identities finds the directions in which one character drawn by
different hands stays put and different characters move apart, in closed form, from a few thousand
labelled instances, where fine-tuning the network on them over-fits (docs/TRAINING.md). Measured on
held-out dev identities, it helps most where the style changes (docs/BENCHMARKS.md, ``default_model``).

The new head is one ``nn.Linear``: the rows of the old head, then the discriminant's rows scaled so
that its block weighs ``weight`` times the old block on average. The old embedding is kept inside the
new one (what the model learnt about framing is not thrown away), the backbone and its int8 graph are
unchanged, and every consumer of the ``normalise(head(sum of parts))`` contract works as before.

The analysis is scikit-learn's :class:`~sklearn.discriminant_analysis.LinearDiscriminantAnalysis`
(eigen solver, Ledoit-Wolf-style fixed shrinkage of the within-class covariance: with ~1,300-d inputs
and ~1,000 identities the unshrunk covariance is singular). The data side (embedding the labelled
rows of manifests) is :mod:`comicid.workflows.discriminant`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from torch import nn

from comicid.errors import ConfigError
from comicid.training.style_tail import TailConfig

#: Chosen on held-out dev identities (half of each set's ``split=dev`` identities fitted, the other
#: half scored; docs/TRAINING.md "Discriminant head").
DEFAULT_DIMS = 256
DEFAULT_SHRINKAGE = 0.3
DEFAULT_WEIGHT = 1.0


@dataclass
class DiscriminantConfig:
    """``comicid train discriminant``: fit a discriminant head on a trained model and write a new checkpoint.

    ``base_model``: a checkpoint path or registry name whose backbone and head are kept.
    ``manifests``: labelled manifests; only rows with an identity and ``split`` other than ``test``
    are used, and identities are kept apart per manifest (the same name in two sets is two classes).
    ``output``: the new checkpoint (its int8 graph and calibration file are written beside it).
    ``dims``: discriminant directions kept (at most classes - 1). ``shrinkage``: in [0, 1], of the
    within-class covariance. ``weight``: the discriminant block's average norm relative to the old
    head's. ``half``: store the checkpoint in fp16. ``quantize``: also make the int8 graph.
    ``calibration_manifests``: more labelled manifests the label-free rule is measured on but the head
    is not fitted on (e.g. a set whose licence keeps it out of shipped weights); the fitted manifests
    count too, cross-fitted (:func:`comicid.workflows.discriminant.held_out_embeddings`).
    ``tail``: when given, the trunk's last stages are first tuned on the same crops
    (:mod:`comicid.training.style_tail`) and the discriminant is fitted on the tuned network's features.
    """

    base_model: str
    manifests: list[Path]
    output: Path
    dims: int = DEFAULT_DIMS
    shrinkage: float = DEFAULT_SHRINKAGE
    weight: float = DEFAULT_WEIGHT
    half: bool = True
    quantize: bool = True
    workdir: Path | None = None
    min_instances_per_identity: int = 2
    calibration_manifests: list[Path] = field(default_factory=list)
    tail: TailConfig | None = None

    def check(self) -> None:
        """Value checks a type cannot express (called by :func:`~comicid.training.config.load_config`)."""
        if not self.manifests:
            raise ConfigError("manifests: give at least one labelled manifest")
        if self.dims < 1:
            raise ConfigError(f"dims must be at least 1, got {self.dims}")
        if not 0.0 <= self.shrinkage <= 1.0:
            raise ConfigError(f"shrinkage must be in [0, 1], got {self.shrinkage}")
        if self.weight <= 0:
            raise ConfigError(f"weight must be positive, got {self.weight}")
        if self.min_instances_per_identity < 2:
            raise ConfigError(f"min_instances_per_identity must be at least 2, got {self.min_instances_per_identity}")
        if self.tail is not None:
            self.tail.check()


@dataclass(frozen=True)
class DiscriminantFit:
    """A fitted discriminant projection ``z = (x - mean) @ weight`` and what it was fitted on."""

    weight: np.ndarray  # (in_dim, dims)
    mean: np.ndarray  # (in_dim,)
    n_instances: int
    n_identities: int
    explained: float  # share of the between-class variance the kept directions carry


def fit_discriminant(inputs: np.ndarray, labels: np.ndarray, dims: int = DEFAULT_DIMS,
                     shrinkage: float = DEFAULT_SHRINKAGE, min_per_class: int = 2) -> DiscriminantFit:
    """Fit the projection on head inputs ``(N, D)`` with one identity label per row.

    Identities with fewer than ``min_per_class`` rows carry no within-class information and are
    dropped. ``dims`` is capped at ``classes - 1``, the rank of the between-class scatter.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    labels = np.asarray(labels)
    if inputs.ndim != 2 or labels.shape != (len(inputs),):
        raise ConfigError("inputs must be (N, D) with one label per row")
    values, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, values[counts >= min_per_class]) & np.any(inputs != 0, axis=1)
    classes = len(np.unique(labels[keep]))
    if classes < 3:
        raise ConfigError(f"a discriminant head needs at least 3 identities with {min_per_class} or more labelled "
                          f"instances each, found {classes}")
    dims = min(dims, classes - 1, inputs.shape[1])
    analysis = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage, n_components=dims)
    analysis.fit(inputs[keep], labels[keep])
    ratio = np.asarray(analysis.explained_variance_ratio_)
    return DiscriminantFit(weight=np.asarray(analysis.scalings_[:, :dims], dtype=np.float64),
                           mean=inputs[keep].mean(axis=0), n_instances=int(keep.sum()), n_identities=classes,
                           explained=float(ratio[:dims].sum()))


def extend_head(head: nn.Module, in_dim: int, fit: DiscriminantFit, inputs: np.ndarray,
                weight: float = DEFAULT_WEIGHT) -> nn.Linear:
    """One ``nn.Linear``: ``head``'s rows (an ``nn.Identity`` counts as the identity matrix), then the
    discriminant's rows scaled so that the mean norm of its outputs on ``inputs`` is ``weight`` times
    the mean norm of the old head's outputs.
    """
    if isinstance(head, nn.Identity):
        old_weight, old_bias = np.eye(in_dim), np.zeros(in_dim)
    elif isinstance(head, nn.Linear) and head.in_features == in_dim:
        old_weight = head.weight.detach().double().cpu().numpy()
        old_bias = head.bias.detach().double().cpu().numpy() if head.bias is not None else np.zeros(head.out_features)
    else:
        raise ConfigError(f"cannot extend a {type(head).__name__} head; a discriminant head extends an nn.Linear "
                          f"or nn.Identity head with {in_dim} inputs")
    if fit.weight.shape[0] != in_dim:
        raise ConfigError(f"the discriminant was fitted on {fit.weight.shape[0]}-d inputs, the head takes {in_dim}")
    inputs = np.asarray(inputs, dtype=np.float64)
    new_weight, new_bias = fit.weight.T, -(fit.mean @ fit.weight)
    old_norm = np.linalg.norm(inputs @ old_weight.T + old_bias, axis=1).mean()
    new_norm = np.linalg.norm(inputs @ new_weight.T + new_bias, axis=1).mean()
    scale = weight * old_norm / max(new_norm, 1e-12)
    linear = nn.Linear(in_dim, old_weight.shape[0] + new_weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.vstack([old_weight, scale * new_weight])).float())
        linear.bias.copy_(torch.from_numpy(np.concatenate([old_bias, scale * new_bias])).float())
    return linear
