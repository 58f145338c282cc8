"""The embedding model contract, and its checkpoints.

An :class:`EmbeddingModel` is one backbone shared by all parts of a character (faces and bodies go
through the same weights) plus a ``head`` applied once per instance:

    instance embedding = normalise(head(sum over parts of normalise(forward_parts(part crop))))

``forward_parts`` features are what gets cached (per crop hash and ``model_id``); fusion and the head
are cheap and run afterwards (:func:`comicid.models.embed.fuse_parts`). A plain backbone has
``head = nn.Identity()``; a fine-tuned model has a trained linear projector.

Checkpoints are ``torch.save`` dicts::

    {"format": "comicid-model", "kind": "plain" (or a registered kind such as "facebody"), "version": 1,
     "backbone": registry name, "input_size": int,
     "state_dict": backbone state dict,
     "head": state dict of an nn.Linear head, or None for the identity,
     "model_id": the id of the model when it was saved (provenance only)}

A loaded checkpoint's ``model_id`` is ``<backbone>@<first 12 hex digits of the file's sha256>``, so
retraining into the same file name can never reuse stale cached features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from comicid.data.preprocess import normalise_batch
from comicid.errors import ConfigError, ModelError
from comicid.models.backbones import Backbone, create_backbone, list_backbones
from comicid.models.embed import embed_crops, fuse_parts
from comicid.models.int8 import Int8Backbone, int8_graph_path
from comicid.models.model_calibration import apply_calibration
from comicid.models.multimodal import CHECKPOINT_FORMAT as MULTIMODAL_FORMAT
from comicid.models.multimodal import CHECKPOINT_VERSION as MULTIMODAL_VERSION
from comicid.models.multimodal import MultimodalEmbedder, load_multimodal_embedder, multimodal_from_checkpoint
from comicid.models.weights import load_strict
from comicid.registry import Registry
from comicid.runtime import resolve_device
from comicid.checkpoint import read_checkpoint, write_checkpoint

CHECKPOINT_FORMAT = "comicid-model"
CHECKPOINT_VERSION = 1
#: ``--model default``: the model trained by benchmarks/train_default.py and shipped in the package.
DEFAULT_MODEL = "default"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "default.pt"
#: ``--precision``: ``auto`` is int8 on the CPU when the model has an int8 graph, fp32 otherwise.
PRECISIONS = ("auto", "fp32", "int8")
#: Checkpoint kinds other than the plain backbone + linear head, by name -> ``builder(checkpoint dict,
#: model_id, what) -> EmbeddingModel``; a module defining a kind registers it (see ``models/facebody.py``).
CHECKPOINT_KINDS: Registry = Registry("checkpoint kind", ModelError)
PLAIN_KIND = "plain"


def checkpoint_kind(checkpoint: dict[str, Any]) -> str:
    """The kind of a comicid-model checkpoint: its ``kind`` field, or for files written before that field
    existed, ``facebody`` when it has a ``part_head``, ``bot`` when it has a ``bot`` field, else ``plain``."""
    kind = checkpoint.get("kind")
    if isinstance(kind, str):
        return kind
    if "part_head" in checkpoint:
        return "facebody"
    return "bot" if "bot" in checkpoint else PLAIN_KIND


class EmbeddingModel(nn.Module):
    """A backbone shared by all parts, and a per-instance head.

    Attributes:
        model_id: stable id under which features are cached (registry name, or
            ``name@<sha256[:12]>`` for a checkpoint).
        input_size, mean, std: the backbone's input contract (square side; RGB normalisation).
        part_dim: length of ``forward_parts`` features.
        out_dim: length of the instance embedding (``head`` output).
        precision: ``fp32`` (torch) or ``int8`` (the backbone runs an ONNX Runtime graph, CPU only;
            see :mod:`comicid.models.int8`).
        checkpoint_sha256: sha256 of the checkpoint file it was loaded from (``None`` otherwise);
            an int8 graph must name the same one.
        part_weights, label_free_thresholds, label_free_params: what was calibrated for the model
            after training (fusion weights per part kind; ``--threshold auto`` without labels: the
            threshold, and further clusterer parameters of the rule), read from its
            ``<stem>.calibration.json`` by :func:`load_embedding_model`.
    """

    precision: str = "fp32"
    checkpoint_sha256: str | None = None
    #: Weight of each part kind in the instance fusion (``None``: the plain sum); from the model's
    #: calibration file (:mod:`comicid.models.model_calibration`).
    part_weights: dict[str, float] | None = None
    #: Label-free clustering thresholds per method for this model and precision (``--threshold auto``
    #: without labelled dev rows); from the model's calibration file.
    label_free_thresholds: dict[str, float] = {}  # noqa: RUF012 (replaced, never mutated)
    #: Further clusterer parameters of the label-free rule per method (e.g. the agglomerative method's
    #: ``silhouette_tolerance``: each book picks its own cut), and under ``"bank"`` the threshold at which
    #: a cluster takes a bank character's name; from the model's calibration file.
    label_free_params: dict[str, dict[str, float]] = {}  # noqa: RUF012 (replaced, never mutated)

    def __init__(self, backbone: Backbone, head: nn.Module | None = None,
                 model_id: str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()
        self.model_id = model_id or backbone.name
        self.input_size = backbone.input_size
        self.mean = backbone.mean
        self.std = backbone.std
        self.part_dim = backbone.feature_dim
        self.out_dim = _head_out_dim(self.head, self.part_dim)

    def forward_parts(self, images: Tensor) -> Tensor:
        """Raw part features ``(B, part_dim)`` of normalised, letterboxed crops ``(B, 3, S, S)``."""
        return self.backbone(images)

    def forward_pixels(self, pixels: Tensor) -> Tensor:
        """:meth:`forward_parts` of 8-bit letterboxed crops ``(B, 3, S, S)``, normalised here.

        The embedding engine's entry point. A model may read the 8-bit values more cheaply than
        normalised floats (a colour histogram counts 8-bit levels instead of un-normalising); the
        features must be those of :meth:`forward_parts` on the normalised batch.
        """
        return self.forward_parts(normalise_batch(pixels, self.mean, self.std))

    def part_weight_array(self, kinds: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """The fusion weight of each part row from its kind (1 for a kind without one), or None when the
        model has no fusion weights (the plain sum): the ``part_weights`` argument of ``fuse_parts``."""
        if not self.part_weights:
            return None
        return np.array([self.part_weights.get(str(kind), 1.0) for kind in kinds], dtype=np.float32)

    def forward(self, images: Tensor) -> Tensor:
        """Same as :meth:`forward_parts`, so the model can be called like any module."""
        return self.forward_parts(images)

    def embed_images(self, images: Sequence[str | Path | Image.Image], batch_size: int = 64,
                     num_workers: int | None = 0, progress: bool = False) -> np.ndarray:
        """Embeddings ``(N, out_dim)`` float32, L2-normalised, of character images (paths or PIL images).

        Each image is taken as one whole-character part, exactly as `comicid search` embeds a query image,
        through the one engine (:func:`comicid.models.embed.embed_crops`) on the device the model was
        loaded on. ``num_workers`` decoding processes (0: decode here; ``None``: one per core).
        """
        parameter = next(self.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        features = embed_crops(list(images), self, batch_size=batch_size, device=device,
                               num_workers=num_workers, progress=progress)
        return fuse_parts(features, np.arange(len(features)), len(features), head=self.head)


def _head_out_dim(head: nn.Module, part_dim: int) -> int:
    if isinstance(head, nn.Identity):
        return part_dim
    if isinstance(head, nn.Linear):
        if head.in_features != part_dim:
            raise ModelError(f"head expects {head.in_features}-d input but the backbone gives "
                             f"{part_dim}-d features")
        return head.out_features
    raise ModelError(f"unsupported head {type(head).__name__}; use nn.Identity or nn.Linear")


def save_embedding_model(model: EmbeddingModel, path: str | Path) -> Path:
    """Write ``model`` as a comicid checkpoint (atomically); returns the path."""
    head = None if isinstance(model.head, nn.Identity) else _cpu_state(model.head)
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "kind": PLAIN_KIND,
        "version": CHECKPOINT_VERSION,
        "backbone": model.backbone.name,
        "input_size": model.input_size,
        "state_dict": _cpu_state(model.backbone),
        "head": head,
        "model_id": model.model_id,
    }
    return write_checkpoint(path, **checkpoint)


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}


def load_embedding_model(name_or_path: str | Path, device: str | torch.device = "cpu",
                         precision: str = "auto") -> EmbeddingModel:
    """A registry name (ImageNet weights where shipped) or a checkpoint file, ready for inference.

    The model is in eval mode on ``device``, channels_last on CPU (about 1.7x faster there).
    ``precision`` (:data:`PRECISIONS`): ``int8`` runs the backbone from the checkpoint's int8 graph
    (``<stem>.int8.onnx``, made by ``comicid quantize``; the shipped default model has one) and has
    its own ``model_id``, so fp32 and int8 features are never mixed in a cache; ``auto`` takes it
    on the CPU when it exists.

    Raises:
        ModelError: neither a known name nor an existing file, a checkpoint that does not match, or
            ``int8`` asked of a model without an int8 graph (or with one made from another checkpoint).
        ConfigError: CUDA requested but not available, an unknown precision, or int8 on CUDA.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; choose from {', '.join(PRECISIONS)}")
    target = resolve_device(device)
    text = str(name_or_path)
    if "+" in text and not Path(text).is_file():  # Manga-MMTL models combined: A.pt+B.pt
        return load_multimodal_embedder(text)  # type: ignore[return-value]
    path = Path(text)
    checkpoint: Path | None = None
    if text == DEFAULT_MODEL:
        if not DEFAULT_MODEL_PATH.is_file():
            raise ModelError(f"the shipped default model is missing ({DEFAULT_MODEL_PATH}); reinstall comicid, "
                             "rebuild it with `python benchmarks/train_default.py`, or pass --model "
                             "effnet-lite0-imagenet")
        checkpoint = DEFAULT_MODEL_PATH
        model = _load_checkpoint(DEFAULT_MODEL_PATH, name=DEFAULT_MODEL)
    elif text in list_backbones():
        model = EmbeddingModel(create_backbone(text, pretrained=True))
    elif path.is_file():
        checkpoint = path
        loaded = _load_checkpoint(path)
        if isinstance(loaded, MultimodalEmbedder):  # image and text features: no precision, no device move
            return loaded  # type: ignore[return-value]
        model = loaded
    elif path.suffix or "/" in text or "\\" in text:
        raise ModelError(f"checkpoint '{path}' not found")
    else:
        raise ModelError(f"unknown model '{text}'; give a checkpoint path or one of: "
                         f"{', '.join([DEFAULT_MODEL, *list_backbones()])}")
    if _wants_int8(precision, target, checkpoint, text):
        assert checkpoint is not None  # _wants_int8 says no int8 without a checkpoint
        _use_int8_graph(model, checkpoint, DEFAULT_MODEL if checkpoint == DEFAULT_MODEL_PATH else None)
    apply_calibration(model, checkpoint if checkpoint is not None else text)
    model = model.to(target).eval()
    if target.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def _wants_int8(precision: str, target: torch.device, checkpoint: Path | None, text: str) -> bool:
    graph = int8_graph_path(checkpoint) if checkpoint is not None else None
    if precision == "fp32":
        return False
    if precision == "auto":
        return target.type == "cpu" and graph is not None and graph.is_file()
    if target.type != "cpu":
        raise ConfigError("--precision int8 runs on the CPU only; use --precision fp32 (or auto) with CUDA")
    if graph is None or not graph.is_file():
        where = f" (looked for '{graph}')" if graph is not None else ""
        raise ModelError(f"model '{text}' has no int8 graph{where}; make one with `comicid quantize`")
    return True


def _use_int8_graph(model: EmbeddingModel, checkpoint: Path, name: str | None) -> None:
    """Swap ``model``'s backbone for the checkpoint's int8 graph, in place, and give it its own id."""
    backbone = Int8Backbone(int8_graph_path(checkpoint), source_sha256=model.checkpoint_sha256)
    if (backbone.input_size, backbone.feature_dim) != (model.input_size, model.backbone.feature_dim):
        raise ModelError(f"int8 graph '{backbone.path}' does not match its checkpoint "
                         f"(input {backbone.input_size} px, {backbone.feature_dim}-d)")
    model.backbone = backbone
    model.precision = "int8"
    model.model_id = f"{name or backbone.name}-int8@{backbone.sha256[:12]}"


def _load_checkpoint(path: Path, name: str | None = None) -> EmbeddingModel | MultimodalEmbedder:
    """Read a checkpoint strictly; ``model_id`` = ``name`` (default: the backbone) + ``@sha256[:12]``."""
    checkpoint, data = read_checkpoint(path, {CHECKPOINT_FORMAT: CHECKPOINT_VERSION,
                                              MULTIMODAL_FORMAT: MULTIMODAL_VERSION}, "comicid model checkpoint")
    if checkpoint["format"] == MULTIMODAL_FORMAT:
        net, net_id = multimodal_from_checkpoint(checkpoint, data)
        return MultimodalEmbedder([net], [net_id])
    backbone_name = checkpoint.get("backbone")
    if not isinstance(backbone_name, str):
        raise ModelError(f"checkpoint '{path}' names no backbone")
    sha256 = hashlib.sha256(data).hexdigest()
    model_id = f"{name or backbone_name}@{sha256[:12]}"
    model: EmbeddingModel
    kind = checkpoint_kind(checkpoint)
    if kind != PLAIN_KIND:  # e.g. a stage-2 face-body model (registered by comicid.models.facebody)
        model = CHECKPOINT_KINDS.lookup(kind)(checkpoint, model_id, f"checkpoint '{path}'")
    else:
        kwargs = {"input_size": checkpoint["input_size"]} if "input_size" in checkpoint else {}
        backbone = create_backbone(backbone_name, pretrained=False, **kwargs)
        load_strict(backbone, checkpoint.get("state_dict") or {}, f"checkpoint '{path}'")
        model = EmbeddingModel(backbone, _head_from_state(checkpoint.get("head"), path), model_id)
    model.checkpoint_sha256 = sha256
    return model


def _head_from_state(state: dict[str, Tensor] | None, path: Path) -> nn.Module | None:
    if state is None:
        return None
    weight = state.get("weight") if isinstance(state, dict) else None
    if weight is None or weight.dim() != 2 or set(state) - {"weight", "bias"}:
        raise ModelError(f"checkpoint '{path}' has a head that is not a linear projector "
                         f"(keys {sorted(state) if isinstance(state, dict) else type(state)})")
    head = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
    load_strict(head, state, f"head of checkpoint '{path}'")
    return head
