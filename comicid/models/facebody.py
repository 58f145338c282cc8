"""The face-body network of the identity-aware recipe (Soykan, Yuret, Sezgin 2023), and its stage-2 model.

Stage 1 (:class:`FaceBodyNetwork`): one backbone shared by faces and bodies (or one per part, for
the ablation) and a three-layer projection head, ``Linear-BN-ReLU, Linear-BN-ReLU, Linear`` to 128
followed by a BatchNorm without affine parameters, then L2-normalised. The final non-affine BN
centres and whitens each output dimension over the batch, which keeps contrastive embeddings from
collapsing onto a few directions.

Stage 2 (:class:`FineTunedFaceBodyModel`): the stage-1 network frozen and cut, each part's features
L2-normalised, fused, then a trained ``Linear`` to 256 and L2. Two cuts (:data:`CUTS`):

* ``hidden``: before the last projection (the paper; the contrastive output is tuned to the SSL
  task, the layer below it transfers better, as in SimCLR);
* ``backbone``: the backbone's pooled features. The cut head is a randomly initialised MLP trained
  for a few hundred steps on synthetic books; it throws away ImageNet information that sprites need
  (see docs/TRAINING.md), so the shipped recipe cuts at the backbone.

With ``colour_weight > 0`` a colour channel joins the CNN features: part features are
``cat(normalise(cnn), colour_weight * normalise(colour_histogram))``, the histogram being the
registry's ``color-hist`` baseline (:class:`~comicid.models.backbones.ColorHistogram`) of the same
crop. Identity in drawn characters is largely colour, which ImageNet features underweight.

With ``sum`` fusion this is exactly the :class:`~comicid.models.embedding_model.EmbeddingModel`
contract ``normalise(head(sum_i normalise(forward_parts(part_i))))``: ``forward_parts`` is
:func:`encode_parts`, ``head`` the linear projector. ``cat``, ``mean`` and ``weighted`` fusions are for
ablations and cannot be exported to that contract.

Checkpoint: the comicid-model format (``embedding_model.py``) plus three fields: ``"part_head"``, the
state dict of the cut head ``nn.Sequential(Linear(F, H), BatchNorm1d(H), ReLU(), Linear(H, H),
BatchNorm1d(H), ReLU())`` (keys ``0.*``, ``1.*``, ``3.*``, ``4.*``; H and F are read from it), or
``None`` for the ``backbone`` cut; ``"cut"``; and ``"colour_weight"``. Checkpoints written before the
last two fields existed are ``hidden`` cuts without colour and still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comicid.checkpoint import read_checkpoint, write_checkpoint
from comicid.data.preprocess import normalise_batch
from comicid.errors import ModelError
from comicid.models.backbones import Backbone, ColorHistogram, colour_histogram_uint8, create_backbone
from comicid.models.embedding_model import CHECKPOINT_FORMAT, CHECKPOINT_KINDS, CHECKPOINT_VERSION, EmbeddingModel
from comicid.models.weights import load_strict

PARTS = ("face", "body")
FUSIONS = ("sum", "cat", "mean", "weighted")
#: Where stage 2 cuts the stage-1 network (see the module docstring).
CUTS = ("backbone", "hidden")
#: The registry's colour-histogram baseline; it has no parameters, so one instance serves every model.
_COLOUR_HISTOGRAM = ColorHistogram("color-hist")
#: Format of stage-1 checkpoints (the whole network, head included); not an embedding model.
SSL_FORMAT = "comicid-facebody-ssl"


def cut_head(in_dim: int, hidden_dim: int) -> nn.Sequential:
    """The first two layers of the projection head: what stage 2 keeps (frozen)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
    )


class ProjectionHead(nn.Module):
    """``features (B, F) -> (B, out_dim)``, not normalised; ``hidden`` gives the cut features (B, H)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.hidden = cut_head(in_dim, hidden_dim)
        self.last = nn.Linear(hidden_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim, affine=False)

    def forward(self, features: Tensor) -> Tensor:
        return self.norm(self.last(self.hidden(features)))


class FaceBodyNetwork(nn.Module):
    """Stage-1 network: ``embed(images, part) -> (B, out_dim)`` L2-normalised.

    ``shared=True`` (the paper) runs faces and bodies through one backbone and one head, so the
    identity term can pull a face and its body together in one space. ``shared=False`` gives every
    part its own backbone and head (the "separate" ablation); ``backbones`` then holds one per part.
    """

    def __init__(self, backbones: dict[str, Backbone], shared: bool, hidden_dim: int = 512,
                 out_dim: int = 128) -> None:
        super().__init__()
        names = {backbone.name for backbone in backbones.values()}
        sizes = {backbone.input_size for backbone in backbones.values()}
        if not backbones or set(backbones) - set(PARTS) or len(names) != 1 or len(sizes) != 1:
            raise ModelError("FaceBodyNetwork needs backbones keyed by part, all of one registry name and size")
        if shared and len({id(b) for b in backbones.values()}) != 1:
            raise ModelError("a shared FaceBodyNetwork needs the same backbone object for every part")
        self.shared = shared
        self.parts = tuple(part for part in PARTS if part in backbones)
        first = next(iter(backbones.values()))
        self.backbone_name = first.name
        self.input_size, self.mean, self.std = first.input_size, first.mean, first.std
        self.feature_dim, self.hidden_dim, self.out_dim = first.feature_dim, hidden_dim, out_dim
        slots = ("shared",) if shared else self.parts
        self.backbones = nn.ModuleDict({slot: backbones[self.parts[0] if shared else slot] for slot in slots})
        self.heads = nn.ModuleDict({slot: ProjectionHead(self.feature_dim, hidden_dim, out_dim) for slot in slots})

    def _slot(self, part: str) -> str:
        if part not in self.parts:
            raise ModelError(f"this network has no '{part}' branch (parts: {list(self.parts)})")
        return "shared" if self.shared else part

    def embed(self, images: Tensor, part: str) -> Tensor:
        """Contrastive embeddings ``(B, out_dim)``, L2-normalised, of normalised crops ``(B, 3, S, S)``."""
        slot = self._slot(part)
        return F.normalize(self.heads[slot](self.backbones[slot](images)), dim=1)

    def hidden(self, images: Tensor, part: str) -> Tensor:
        """Cut features ``(B, hidden_dim)`` (after the second ReLU), not normalised: stage 2's input."""
        slot = self._slot(part)
        return self.heads[slot].hidden(self.backbones[slot](images))

    def freeze_early(self, fraction: float) -> int:
        """Freeze the first ``fraction`` of every backbone's parameter tensors, in registration order.

        CNN trunks register stem and early blocks first: generic edge and texture filters that need
        no re-learning and whose backward pass costs the most on CPU (largest feature maps). Modules
        left with no trainable parameter (their BatchNorms included) stay in eval mode through
        :meth:`train`, so their running statistics are frozen too. Returns the number of tensors frozen.
        """
        frozen = 0
        self._frozen_modules: list[nn.Module] = []
        for backbone in self.backbones.values():
            parameters = list(backbone.parameters())
            for parameter in parameters[: int(len(parameters) * fraction)]:
                parameter.requires_grad_(False)
                frozen += 1
            self._frozen_modules += [module for module in backbone.modules()
                                     if not list(module.children()) and any(True for _ in module.parameters())
                                     and not any(p.requires_grad for p in module.parameters())]
        self.train(self.training)
        return frozen

    def freeze_backbone_norms(self) -> int:
        """Keep every BatchNorm of the backbone(s) in eval mode through :meth:`train`; returns how many.

        In train mode a BatchNorm replaces its running statistics with those of the training batches
        within a few dozen steps (momentum 0.1), whatever the learning rate: strongly augmented
        synthetic views then shift ImageNet statistics that the frozen stage 2 relies on. Their
        affine parameters still train where not frozen.
        """
        norms = [module for backbone in self.backbones.values() for module in backbone.modules()
                 if isinstance(module, nn.modules.batchnorm._BatchNorm)]
        self._frozen_modules = [*getattr(self, "_frozen_modules", []), *norms]
        self.train(self.training)
        return len(norms)

    def train(self, mode: bool = True) -> FaceBodyNetwork:
        super().train(mode)
        for module in getattr(self, "_frozen_modules", []):
            module.eval()
        return self

    def config(self) -> dict[str, Any]:
        return {"backbone": self.backbone_name, "input_size": self.input_size, "shared": self.shared,
                "parts": list(self.parts), "hidden_dim": self.hidden_dim, "out_dim": self.out_dim}


def build_facebody_network(backbone: str, parts: list[str] | tuple[str, ...] = PARTS, shared: bool = True,
                           hidden_dim: int = 512, out_dim: int = 128, pretrained: bool = True,
                           input_size: int | None = None) -> FaceBodyNetwork:
    """A stage-1 network on registry backbone(s) ``backbone``; separate copies when not ``shared``."""
    kwargs = {"input_size": input_size} if input_size else {}
    if shared:
        trunk = create_backbone(backbone, pretrained=pretrained, **kwargs)
        backbones = {part: trunk for part in parts}
    else:
        backbones = {part: create_backbone(backbone, pretrained=pretrained, **kwargs) for part in parts}
    return FaceBodyNetwork(backbones, shared, hidden_dim, out_dim).train()


def _cpu_state(module: nn.Module, half: bool = False) -> dict[str, Tensor]:
    def convert(value: Tensor) -> Tensor:
        value = value.detach().cpu().contiguous()
        return value.half() if half and value.is_floating_point() else value
    return {key: convert(value) for key, value in module.state_dict().items()}


def save_facebody_network(network: FaceBodyNetwork, path: str | Path) -> Path:
    """Write a stage-1 network (atomically) for stage 2 to load."""
    return write_checkpoint(path, SSL_FORMAT, 1, config=network.config(), state_dict=_cpu_state(network))


def load_facebody_network(path: str | Path) -> FaceBodyNetwork:
    """Read a stage-1 network saved by :func:`save_facebody_network` (strictly)."""
    path = Path(path)
    checkpoint, _ = read_checkpoint(path, {SSL_FORMAT: 1}, "stage-1 (comicid train ssl) checkpoint")
    config = checkpoint["config"]
    network = build_facebody_network(config["backbone"], config["parts"], config["shared"],
                                     config["hidden_dim"], config["out_dim"], pretrained=False,
                                     input_size=config["input_size"])
    load_strict(network, checkpoint["state_dict"], f"stage-1 checkpoint '{path}'")
    return network


class FusionProjector(nn.Module):
    """Stage-2 trainable part: fuse per-part normalised features, project to ``out_dim``, L2-normalise.

    ``parts`` is ``(B, P, H)`` (P = number of part slots, a missing part given as zeros) and
    ``present`` ``(B, P)`` bool. Fusions: ``sum`` of the normalised parts (the paper, and the only
    one the inference contract can express), ``mean`` over the present parts, ``weighted`` sum with
    learned softmax weights per part slot, ``cat`` (concatenation, zeros for a missing part).
    """

    def __init__(self, part_dim: int, n_parts: int, out_dim: int = 256, fusion: str = "sum") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ModelError(f"unknown fusion '{fusion}'; choose from {list(FUSIONS)}")
        self.fusion, self.n_parts = fusion, n_parts
        self.part_weights = nn.Parameter(torch.zeros(n_parts)) if fusion == "weighted" else None
        in_dim = part_dim * n_parts if fusion == "cat" else part_dim
        self.linear = nn.Linear(in_dim, out_dim)

    def fuse(self, parts: Tensor, present: Tensor) -> Tensor:
        """``(B, P, H)`` raw part features -> fused ``(B, H)`` (``(B, P*H)`` for ``cat``)."""
        parts = F.normalize(parts, dim=2) * present.unsqueeze(2).to(parts.dtype)
        if self.fusion == "cat":
            return parts.flatten(1)
        if self.fusion == "mean":
            return parts.sum(dim=1) / present.sum(dim=1, keepdim=True).clamp(min=1).to(parts.dtype)
        if self.fusion == "weighted":
            assert self.part_weights is not None
            return (parts * torch.softmax(self.part_weights, 0).view(1, -1, 1)).sum(dim=1)
        return parts.sum(dim=1)

    def forward(self, parts: Tensor, present: Tensor) -> Tensor:
        return F.normalize(self.linear(self.fuse(parts, present)), dim=1)


def colour_histogram(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """The ``color-hist`` features ``(B, 64)`` of crops normalised with ``mean``/``std``.

    :class:`ColorHistogram` reads [0, 1] pixels, so the backbone's normalisation is undone first
    (exact up to float rounding, which the histogram's 8-bit rounding absorbs). The histogram is
    taken at the backbone's input size, not at ``color-hist``'s own 64 px: same bins, more pixels.
    """
    shape = (1, 3, 1, 1)
    pixels = images.float() * torch.tensor(std, device=images.device).view(shape) \
        + torch.tensor(mean, device=images.device).view(shape)
    return _COLOUR_HISTOGRAM(pixels)


def encode_parts(images: Tensor, backbone: Backbone, part_head: nn.Module | None,
                 colour_weight: float, pixels: Tensor | None = None) -> Tensor:
    """Stage-2 part features of normalised crops ``(B, 3, S, S)``: what the projector sees.

    ``part_head`` ``None`` is the ``backbone`` cut. Without colour the CNN features are returned raw
    (the fusion normalises them); with ``colour_weight > 0`` it is
    ``cat(normalise(cnn), colour_weight * normalise(colour histogram))``, ``(B, D + 64)``. An
    all-background crop has a zero histogram and keeps a zero colour block.

    ``pixels``: the same crops as 8-bit ``(B, 3, S, S)`` when the caller has them (the embedding
    engine): the histogram counts them directly; same features, without un-normalising and
    re-rounding ``images`` for the histogram.
    """
    features = backbone(images)
    if part_head is not None:
        features = part_head(features)
    if colour_weight <= 0:
        return features
    if pixels is not None:
        colour = colour_histogram_uint8(pixels)
    else:
        colour = colour_histogram(images, backbone.mean, backbone.std)
    return torch.cat([F.normalize(features.float(), dim=1), colour_weight * F.normalize(colour, dim=1)], dim=1)


def part_feature_dim(backbone: Backbone, part_head: nn.Sequential | None, colour_weight: float) -> int:
    """Length of :func:`encode_parts` features."""
    cnn = backbone.feature_dim if part_head is None else int(part_head[3].out_features)
    return cnn + (_COLOUR_HISTOGRAM.feature_dim if colour_weight > 0 else 0)


class FineTunedFaceBodyModel(EmbeddingModel):
    """A stage-2 model as an :class:`EmbeddingModel`: frozen backbone [+ cut head] [+ colour], projector.

    ``forward_parts(images) -> (B, part_dim)`` is :func:`encode_parts` (raw CNN features, or the
    normalised CNN + colour concatenation; the caller normalises per part as the contract says);
    ``head`` is the projector's ``nn.Linear``. ``part_head`` is ``None`` for the ``backbone`` cut.
    Only ``sum`` fusion over a shared backbone maps onto this contract, see :meth:`from_stages`.
    """

    def __init__(self, backbone: Backbone, part_head: nn.Sequential | None, head: nn.Linear,
                 model_id: str | None = None, colour_weight: float = 0.0) -> None:
        super().__init__(backbone, None, model_id or f"{backbone.name}+facebody")
        if colour_weight < 0:
            raise ModelError(f"colour_weight must not be negative, got {colour_weight}")
        self.part_head = part_head
        self.cut = "backbone" if part_head is None else "hidden"
        self.colour_weight = float(colour_weight)
        self.part_dim = part_feature_dim(backbone, part_head, self.colour_weight)
        if head.in_features != self.part_dim:
            raise ModelError(f"projector expects {head.in_features}-d input, the part features are {self.part_dim}-d")
        self.head = head
        self.out_dim = head.out_features

    @classmethod
    def from_stages(cls, network: FaceBodyNetwork, projector: FusionProjector, cut: str = "hidden",
                    colour_weight: float = 0.0) -> FineTunedFaceBodyModel:
        """Combine a stage-1 network and a trained projector (shares their modules, copies nothing)."""
        if not network.shared and len(network.parts) > 1:
            raise ModelError("only a shared-backbone network exports as an embedding model: "
                             "forward_parts(images) cannot tell a face crop from a body crop")
        if projector.fusion != "sum":
            raise ModelError(f"only 'sum' fusion exports as an embedding model, not '{projector.fusion}'")
        slot = "shared" if network.shared else network.parts[0]
        return cls(network.backbones[slot], part_encoder(network, slot, cut), projector.linear,
                   colour_weight=colour_weight)

    def forward_parts(self, images: Tensor) -> Tensor:
        return encode_parts(images, self.backbone, self.part_head, self.colour_weight)

    def forward_pixels(self, pixels: Tensor) -> Tensor:
        images = normalise_batch(pixels, self.mean, self.std)
        return encode_parts(images, self.backbone, self.part_head, self.colour_weight, pixels=pixels)


def part_encoder(network: FaceBodyNetwork, slot: str, cut: str) -> nn.Sequential | None:
    """The cut head of ``slot`` for ``cut='hidden'``, ``None`` for ``cut='backbone'``."""
    if cut not in CUTS:
        raise ModelError(f"unknown cut '{cut}'; choose from {list(CUTS)}")
    return network.heads[slot].hidden if cut == "hidden" else None


def save_finetuned_model(model: FineTunedFaceBodyModel, path: str | Path, half: bool = False) -> Path:
    """Write the comicid-model checkpoint with the ``part_head``, ``cut`` and ``colour_weight`` fields.

    ``half=True`` stores floating-point tensors as fp16 (half the size; they are cast back to fp32
    on load, a cosine above 0.999 to the fp32 model in practice). Written atomically.
    """
    return write_checkpoint(
        path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, kind="facebody",
        backbone=model.backbone.name, input_size=model.input_size,
        state_dict=_cpu_state(model.backbone, half),
        part_head=None if model.part_head is None else _cpu_state(model.part_head, half),
        cut=model.cut, colour_weight=model.colour_weight,
        head=_cpu_state(model.head, half),
        model_id=model.model_id,
    )


@CHECKPOINT_KINDS.register("facebody")
def finetuned_from_checkpoint(checkpoint: dict[str, Any], model_id: str, what: str) -> FineTunedFaceBodyModel:
    """Rebuild a :class:`FineTunedFaceBodyModel` from a loaded checkpoint dict, strictly.

    A checkpoint without ``cut`` predates the field: a ``hidden`` cut without colour.
    """
    kwargs = {"input_size": checkpoint["input_size"]} if "input_size" in checkpoint else {}
    backbone = create_backbone(checkpoint["backbone"], pretrained=False, **kwargs)
    load_strict(backbone, checkpoint.get("state_dict") or {}, what)
    cut = checkpoint.get("cut", "hidden")
    colour_weight = checkpoint.get("colour_weight", 0.0)
    if cut not in CUTS or not isinstance(colour_weight, (int, float)) or colour_weight < 0:
        raise ModelError(f"{what} has an unknown cut '{cut}' or colour weight {colour_weight!r}")
    part_state, head_state = checkpoint.get("part_head"), checkpoint.get("head")
    if not isinstance(head_state, dict) or "weight" not in head_state:
        raise ModelError(f"{what} has no face-body projector")
    part_head = None
    if cut == "hidden":
        if not isinstance(part_state, dict) or "0.weight" not in part_state:
            raise ModelError(f"{what} is a 'hidden' cut without its part head")
        hidden_dim, in_dim = part_state["0.weight"].shape
        part_head = cut_head(int(in_dim), int(hidden_dim))
        load_strict(part_head, part_state, f"part head of {what}")
    elif part_state is not None:
        raise ModelError(f"{what} is a 'backbone' cut but carries a part head")
    out_dim, head_in = head_state["weight"].shape
    head = nn.Linear(int(head_in), int(out_dim), bias="bias" in head_state)
    load_strict(head, head_state, f"projector of {what}")
    return FineTunedFaceBodyModel(backbone, part_head, head, model_id, float(colour_weight))
