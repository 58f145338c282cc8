"""Manga-MMTL's five models (Nguyen, Rigaud, Revel, Burie, ICDAR 2021) over image and text features.

Each model is a small network on top of two frozen encoders: the image model's instance embedding
(faces and bodies fused, :mod:`comicid.store.embeddings`) and the text encoder's sentence feature of
the instance's text (:mod:`comicid.models.text`; zero when the instance has no text). What the paper
trains is the part above the encoders, and that is what fits a CPU:

====  =======================  ===============================================================
M1    image -> character       image branch, character head
M2    text -> character        text branch, character head
M3    text -> album (book)     text branch, album head
M4    image + text -> char.    both branches, late fusion by concatenation, character head
M5    M4 + album auxiliary     three classifiers: image -> character, text -> album (auxiliary),
                               fused -> character (the main loss)
====  =======================  ===============================================================

Inputs are unit vectors (or zero: no text); each is multiplied by the square root of its dimension
first, so that its components have about unit variance as a freshly initialised ``Linear`` expects
(without it SGD barely moves in hundreds of steps), and a zero text feature stays zero.
A branch is ``Linear -> ReLU -> Dropout(0.2)``; a head is ``Linear -> ReLU`` (its output is the
"second-last FC", the feature) then the ``Linear`` classifier. **Features** of a model: the
L2-normalised second-last FC of its album head concatenated with that of its character head (either
alone when the model has one head), then scaled to unit length. Models combine by concatenating
their features (``--model M3.pt+M5.pt``), again scaled to unit length.

Checkpoints (``torch.save`` dicts, written atomically)::

    {"format": "comicid-multimodal", "version": 1, "variant": "M5",
     "image_model": "default", "text_model": "minilm-l6", "image_dim": 256, "text_dim": 384,
     "hidden_dim": ..., "feature_dim": ..., "dropout": 0.2,
     "characters": [...], "albums": [...], "state_dict": {...}}
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from comicid.checkpoint import read_checkpoint, write_checkpoint
from comicid.errors import ModelError

VARIANTS = ("M1", "M2", "M3", "M4", "M5")
CHECKPOINT_FORMAT = "comicid-multimodal"
CHECKPOINT_VERSION = 1
#: Which inputs and heads each variant has.
USES_IMAGE = {"M1": True, "M2": False, "M3": False, "M4": True, "M5": True}
USES_TEXT = {"M1": False, "M2": True, "M3": True, "M4": True, "M5": True}
HAS_CHARACTER_HEAD = {"M1": True, "M2": True, "M3": False, "M4": True, "M5": True}
HAS_ALBUM_HEAD = {"M1": False, "M2": False, "M3": True, "M4": False, "M5": True}


@dataclass(frozen=True)
class MultimodalSpec:
    """Everything that fixes a model's shape and its encoders."""

    variant: str
    image_model: str
    text_model: str
    image_dim: int
    text_dim: int
    hidden_dim: int = 512
    feature_dim: int = 256
    dropout: float = 0.2


def _branch(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))


class _Head(nn.Module):
    """``penultimate`` (Linear + ReLU: the feature) then ``classifier``."""

    def __init__(self, in_dim: int, feature_dim: int, classes: int) -> None:
        super().__init__()
        self.penultimate = nn.Sequential(nn.Linear(in_dim, feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature = self.penultimate(x)
        return feature, self.classifier(feature)


class MultimodalNet(nn.Module):
    """One of M1-M5 (``spec.variant``) with ``characters`` and ``albums`` training classes.

    ``forward(image (B, image_dim), text (B, text_dim))`` returns a dict of logits:
    ``character`` (the main character classifier: image for M1, text for M2, fused for M4/M5),
    ``album`` (M3, M5) and ``image_character`` (M5's auxiliary image classifier).
    """

    def __init__(self, spec: MultimodalSpec, characters: int, albums: int) -> None:
        super().__init__()
        if spec.variant not in VARIANTS:
            raise ModelError(f"unknown multimodal model '{spec.variant}'; choose one of {', '.join(VARIANTS)}")
        self.spec = spec
        v, h, f = spec.variant, spec.hidden_dim, spec.feature_dim
        self.image_branch = _branch(spec.image_dim, h, spec.dropout) if USES_IMAGE[v] else None
        self.text_branch = _branch(spec.text_dim, h, spec.dropout) if USES_TEXT[v] else None
        fused_dim = h * (int(USES_IMAGE[v]) + int(USES_TEXT[v]))
        self.character_head = _Head(fused_dim, f, characters) if HAS_CHARACTER_HEAD[v] else None
        self.album_head = _Head(h, f, albums) if HAS_ALBUM_HEAD[v] else None  # on the text branch
        self.image_character_head = _Head(h, f, characters) if v == "M5" else None

    def _branches(self, image: Tensor, text: Tensor) -> tuple[Tensor | None, Tensor | None]:
        spec = self.spec
        image_h = self.image_branch(image * spec.image_dim ** 0.5) if self.image_branch is not None else None
        text_h = self.text_branch(text * spec.text_dim ** 0.5) if self.text_branch is not None else None
        return image_h, text_h

    def forward(self, image: Tensor, text: Tensor) -> dict[str, Tensor]:
        image_h, text_h = self._branches(image, text)
        out: dict[str, Tensor] = {}
        fused = torch.cat([t for t in (image_h, text_h) if t is not None], dim=1)
        if self.character_head is not None:
            out["character"] = self.character_head(fused)[1]
        if self.album_head is not None:
            out["album"] = self.album_head(text_h)[1]
        if self.image_character_head is not None:
            out["image_character"] = self.image_character_head(image_h)[1]
        return out

    def features(self, image: Tensor, text: Tensor) -> Tensor:
        """``(B, D)`` unit-length features: normalised album penultimate ⊕ normalised character penultimate."""
        image_h, text_h = self._branches(image, text)
        parts = []
        if self.album_head is not None:
            parts.append(F.normalize(self.album_head.penultimate(text_h), dim=1))
        if self.character_head is not None:
            fused = torch.cat([t for t in (image_h, text_h) if t is not None], dim=1)
            parts.append(F.normalize(self.character_head.penultimate(fused), dim=1))
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def init_from(self, donor: MultimodalNet) -> list[str]:
        """Copy the branches and heads ``donor`` shares with this model (same shapes); returns their names.

        The paper initialises the multimodal models from the uni-modal ones: M4 from M1's image branch
        and M2's text branch, M5 from M1 (image branch, image classifier) and M3 (text branch, album head).
        """
        copied = []
        pairs = [("image_branch", "image_branch"), ("text_branch", "text_branch"), ("album_head", "album_head")]
        if self.spec.variant == "M5" and donor.spec.variant in ("M1",):
            pairs.append(("image_character_head", "character_head"))
        for mine, theirs in pairs:
            target, source = getattr(self, mine), getattr(donor, theirs)
            if target is not None and source is not None:
                shapes = [p.shape for p in target.state_dict().values()]
                if shapes == [p.shape for p in source.state_dict().values()]:
                    target.load_state_dict(source.state_dict())
                    copied.append(mine)
        return copied


def save_multimodal(net: MultimodalNet, characters: Sequence[str], albums: Sequence[str], path: str | Path) -> Path:
    """Write ``net`` as a comicid multimodal checkpoint (atomically)."""
    spec = net.spec
    return write_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, **spec.__dict__,
                            characters=list(characters), albums=list(albums),
                            state_dict={k: v.detach().cpu() for k, v in net.state_dict().items()})


def load_multimodal(path: str | Path) -> tuple[MultimodalNet, str]:
    """The network in eval mode and its id ``<variant>@<sha256[:12]>``."""
    checkpoint, data = read_checkpoint(path, {CHECKPOINT_FORMAT: CHECKPOINT_VERSION}, "comicid multimodal checkpoint")
    return multimodal_from_checkpoint(checkpoint, data)


def multimodal_from_checkpoint(checkpoint: dict[str, Any], data: bytes) -> tuple[MultimodalNet, str]:
    """:func:`load_multimodal` of a checkpoint already read (and validated) with its bytes, so a caller
    that read the file to learn its format does not read it again."""
    fields = {name: checkpoint[name] for name in MultimodalSpec.__dataclass_fields__}
    net = MultimodalNet(MultimodalSpec(**fields), len(checkpoint["characters"]), len(checkpoint["albums"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval(), f"{fields['variant']}@{hashlib.sha256(data).hexdigest()[:12]}"


class MultimodalEmbedder:
    """Features of one or more multimodal models (concatenated), computed from image and text features.

    All models must share one image model and one text model (they were trained on them); ``encode``
    takes the image model's instance embeddings and the text encoder's features of the same instances.
    """

    def __init__(self, nets: Sequence[MultimodalNet], ids: Sequence[str]) -> None:
        if not nets:
            raise ModelError("no multimodal model given")
        image_models = {net.spec.image_model for net in nets}
        text_models = {net.spec.text_model for net in nets}
        if len(image_models) > 1 or len(text_models) > 1:
            raise ModelError(f"models to combine must share one image and one text model; got image models "
                             f"{sorted(image_models)} and text models {sorted(text_models)}")
        self.nets = list(nets)
        self.image_model = nets[0].spec.image_model
        self.text_model = nets[0].spec.text_model
        self.image_dim = nets[0].spec.image_dim
        self.text_dim = nets[0].spec.text_dim
        self.model_id = "+".join(ids)

    @torch.no_grad()
    def encode(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 unit-length features from ``image (N, image_dim)`` and ``text (N, text_dim)``."""
        if image.shape[1] != self.image_dim or text.shape[1] != self.text_dim:
            raise ModelError(f"multimodal model expects {self.image_dim}-d image and {self.text_dim}-d text "
                             f"features, got {image.shape[1]}-d and {text.shape[1]}-d")
        image_t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        text_t = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32))
        parts = [net.eval().features(image_t, text_t) for net in self.nets]
        return F.normalize(torch.cat(parts, dim=1), dim=1).numpy().astype(np.float32)


def load_multimodal_embedder(spec: str) -> MultimodalEmbedder:
    """``A.pt`` or ``A.pt+B.pt+...``: the features of those models, concatenated."""
    loaded = [load_multimodal(part) for part in spec.split("+") if part]
    return MultimodalEmbedder([net for net, _ in loaded], [model_id for _, model_id in loaded])
