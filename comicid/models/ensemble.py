"""Model ensembles: several embedding models combined into one instance embedding.

``--model A,B`` (equal weights), ``--model A=0.7,B=0.3``, or ``--model ensemble.yaml`` with

.. code-block:: yaml

    members:
      - {model: default, weight: 0.5}
      - {model: runs/bot/best.pt, weight: 0.5}

Each member embeds the instances with the ordinary engine (its own preprocessing, its own feature
cache under its own model id, so adding a member re-uses what the others already computed); the
instance embeddings are combined as ``normalise(concat(sqrt(w_i) * v_i))``. Since every ``v_i`` is a
unit vector, the cosine of two combined embeddings is ``sum(w_i cos_i) / sum(w_i)``: the weighted mean
of the members' cosine similarities, so the concatenation is exactly "averaging the distance matrices"
and every downstream step (search, clustering, re-ranking) works unchanged. Weights are normalised to
sum to 1. The ensemble's ``model_id`` names members and weights, so its results never mix with a
single model's. Weights are chosen on dev identities with ``benchmarks/ensemble.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from comicid.errors import ConfigError
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model
from comicid.yaml_file import read_yaml

ENSEMBLE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class EnsembleSpec:
    """Member model names (registry names or checkpoint paths) and their weights (sum 1)."""

    models: tuple[str, ...]
    weights: tuple[float, ...]


def is_ensemble(text: str | Path) -> bool:
    """Whether ``--model`` names an ensemble (a comma list or an ensemble YAML file)."""
    text = str(text)
    return "," in text or Path(text).suffix.lower() in ENSEMBLE_SUFFIXES


def parse_ensemble(text: str | Path) -> EnsembleSpec:
    """``A,B``, ``A=0.7,B=0.3`` or a YAML file with ``members: [{model: A, weight: 0.7}, ...]``."""
    text = str(text)
    if Path(text).suffix.lower() in ENSEMBLE_SUFFIXES:
        return _from_yaml(Path(text))
    models, weights = [], []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ConfigError(f"--model {text!r}: empty member in the ensemble list")
        name, _, weight = item.partition("=")
        models.append(name.strip())
        weights.append(_weight(weight.strip() or "1", f"--model {text!r}: member {name.strip()!r}"))
    return _spec(models, weights, f"--model {text!r}")


def _from_yaml(path: Path) -> EnsembleSpec:
    raw = read_yaml(path, "ensemble file")
    members = raw.get("members") if isinstance(raw, dict) else None
    if not isinstance(members, list) or not members:
        raise ConfigError(f"ensemble file '{path}': needs a non-empty 'members' list of {{model, weight}}")
    models, weights = [], []
    for position, member in enumerate(members, start=1):
        if not isinstance(member, dict) or "model" not in member:
            raise ConfigError(f"ensemble file '{path}': member {position} needs a 'model'")
        model = str(member["model"])
        if not Path(model).is_absolute() and (path.parent / model).is_file():
            model = str(path.parent / model)  # checkpoint paths are read relative to the file
        models.append(model)
        weights.append(_weight(member.get("weight", 1), f"ensemble file '{path}': member {position}"))
    return _spec(models, weights, f"ensemble file '{path}'")


def _weight(value: object, where: str) -> float:
    try:
        weight = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: weight must be a number, got {value!r}") from None
    if not np.isfinite(weight) or weight < 0:
        raise ConfigError(f"{where}: weight must be a non-negative number, got {value!r}")
    return weight


def _spec(models: list[str], weights: list[float], where: str) -> EnsembleSpec:
    if len(set(models)) != len(models):
        raise ConfigError(f"{where}: a model is listed twice")
    total = float(sum(weights))
    if total <= 0:
        raise ConfigError(f"{where}: at least one weight must be positive")
    return EnsembleSpec(tuple(models), tuple(w / total for w in weights))


class Ensemble:
    """Loaded member models and their weights; see the module docstring for how they combine.

    Attributes:
        members: the loaded :class:`EmbeddingModel` objects, in the order given.
        weights: ``(M,)`` float64, summing to 1.
        model_id: ``ensemble(<id>*<weight>+...)`` over the members' own ids.
        out_dim: length of the combined embedding (sum of the members').
    """

    def __init__(self, members: list[EmbeddingModel], weights: tuple[float, ...] | np.ndarray) -> None:
        if not members or len(members) != len(weights):
            raise ConfigError(f"an ensemble needs one weight per member model ({len(members)} models, "
                              f"{len(weights)} weights)")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.model_id = ensemble_id([m.model_id for m in self.members], self.weights)
        self.out_dim = int(sum(m.out_dim for m in self.members))

    def combine(self, member_vectors: list[np.ndarray]) -> np.ndarray:
        """Combined ``(N, sum D_i)`` float32 unit rows from each member's ``(N, D_i)`` embeddings."""
        return combine_embeddings(member_vectors, self.weights)

    def embed_images(self, images: Sequence[str | Path | Image.Image], batch_size: int = 64,
                     num_workers: int | None = 0, progress: bool = False) -> np.ndarray:
        """Combined embeddings ``(N, out_dim)`` of character images, each member as
        :meth:`EmbeddingModel.embed_images` embeds them."""
        images = list(images)
        return self.combine([member.embed_images(images, batch_size=batch_size, num_workers=num_workers,
                                                 progress=progress) for member in self.members])


def ensemble_id(member_ids: list[str], weights: np.ndarray) -> str:
    """A stable id naming members and weights (weights to 4 decimals), safe in a folder name."""
    parts = [f"{re.sub(r'[^A-Za-z0-9._@-]+', '_', name)}*{weight:.4g}" for name, weight in zip(member_ids, weights,
                                                                                             strict=True)]
    return "ensemble(" + "+".join(parts) + ")"


def combine_embeddings(member_vectors: list[np.ndarray], weights: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """``normalise(concat(sqrt(w_i) * normalise(v_i)))``: cosine = weighted mean of member cosines.

    A member row of zeros (a crop without evidence for that model) contributes nothing to the cosine
    rather than an undefined direction; a row all members leave at zero stays zero.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if len(member_vectors) != len(weights):
        raise ConfigError(f"{len(member_vectors)} member embeddings but {len(weights)} weights")
    sizes = {len(v) for v in member_vectors}
    if len(sizes) != 1:
        raise ConfigError(f"member embeddings disagree on the number of instances: {sorted(sizes)}")
    scaled = []
    for vectors, weight in zip(member_vectors, weights / weights.sum(), strict=True):
        vectors = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        scaled.append(np.sqrt(weight) * vectors / np.where(norms > 0, norms, 1.0))
    joined = np.concatenate(scaled, axis=1)
    norms = np.linalg.norm(joined, axis=1, keepdims=True)
    return (joined / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def load_model(name: str | Path, device: str = "cpu", precision: str = "auto") -> EmbeddingModel | Ensemble:
    """``--model``: one model (:func:`load_embedding_model`) or an ensemble (list or YAML file)."""
    if not is_ensemble(name):
        return load_embedding_model(name, device=device, precision=precision)
    spec = parse_ensemble(name)
    return Ensemble([load_embedding_model(model, device=device, precision=precision) for model in spec.models],
                    spec.weights)
