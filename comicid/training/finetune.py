"""Stage 2, semi-supervised fine-tuning (``comicid train finetune``).

The stage-1 network is frozen, BatchNorm statistics included (it runs in eval mode: the few labelled
instances must not shift statistics learnt on all the unlabelled ones), and cut before its last
projection. Each part's cut features are L2-normalised, a missing part is a zero vector, the parts
are fused (``sum`` by default; ``cat``, ``mean``, ``weighted`` for ablations), projected by a
trained ``Linear`` to 256 and L2-normalised.

Labels only say which characters differ *inside a group* (a sequence of panels in the paper's
COMICS annotations; a whole fully-labelled book for sprite sets), so every loss is computed inside
each group of the batch: PML's ``ContrastiveLoss`` on all pairs, or ``TripletMarginLoss`` (margin
0.2) on the pairs of a ``MultiSimilarityMiner`` (epsilon 0.2). Characters of different books are
certainly different, so with ``cross_book_negatives`` each group also gets one instance of every
other book in the batch as an extra negative. Batches are whole groups
(:class:`~comicid.data.datasets.GroupBatchSampler`).

Because the network is frozen, its features are computed once: a clean view plus ``feature_views``
augmented views of every crop. Training then samples one view per part and step and never runs the
backbone again, which turns stage 2 from hours into seconds on a CPU. Validation MAP@R (per label
scope, leave-one-out, clean views) selects the best projector and stops early.

Three switches keep ImageNet information that sprites need (docs/TRAINING.md): ``cut: backbone``
(the backbone's pooled features instead of the stage-1 head's hidden layer), ``colour_weight`` (a
colour-histogram channel next to the CNN features) and ``projector_init: pca`` (the projector starts
as the top principal directions of the training features, so it starts by keeping them).
``ssl_checkpoint: null`` runs stage 2 on the pretrained backbone alone: the control for stage 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning import losses, miners
from torch import Tensor, nn
from tqdm import tqdm

from comicid.data.augment import clean_view, strong_view
from comicid.data.datasets import CropCache, GroupBatchSampler, Instance, MultiViewDataset, make_loader
from comicid.errors import ConfigError
from comicid.evaluation.retrieval import encode_labels, retrieval_metrics
from comicid.models.facebody import (
    FaceBodyNetwork,
    FineTunedFaceBodyModel,
    FusionProjector,
    build_facebody_network,
    encode_parts,
    load_facebody_network,
    part_encoder,
    part_feature_dim,
    save_finetuned_model,
)
from comicid.models.embed import run_forward
from comicid.runtime import resolve_device
from comicid.training.config import FinetuneConfig, FinetuneLossConfig
from comicid.training.loop import TrainResult, fit
from comicid.training.ssl import TrainingData, fingerprint, prepare_training_data

log = logging.getLogger(__name__)

MODEL_NAME = "model.pt"


@dataclass
class PartFeatures:
    """Frozen part features (:func:`~comicid.models.facebody.encode_parts`) of a set of instances.

    ``features``: ``(N, V, P, D)`` (V views, view 0 the clean one; P part slots in network order),
    ``present``: ``(N, P)`` bool.
    """

    features: Tensor
    present: Tensor


def compute_features(network: FaceBodyNetwork, instances: Sequence[Instance], cache: CropCache,
                     augmented_views: int, augment_config: object, device: torch.device, seed: int,
                     batch_size: int = 32, progress: bool = False, cut: str = "hidden",
                     colour_weight: float = 0.0) -> PartFeatures:
    """Embed a clean view and ``augmented_views`` strong views of every part with the frozen network.

    Features are :func:`~comicid.models.facebody.encode_parts` at ``cut`` with ``colour_weight``:
    exactly what the exported model's ``forward_parts`` computes, run by the engine's
    :func:`~comicid.models.embed.run_forward`.

    This keeps its own batch loop rather than :func:`~comicid.models.embed.embed_crops`: a batch is
    whole instances (every part, clean and augmented views seeded per instance by
    :class:`~comicid.data.datasets.MultiViewDataset`) encoded by a per-part encoder of a network that is
    not yet an ``EmbeddingModel``, and ``present`` masks come from the same batch.
    """
    size, mean, std = network.input_size, network.mean, network.std
    views = [clean_view(size, mean, std)]
    views += [strong_view(size, mean, std, augment_config) for _ in range(augmented_views)]  # type: ignore[arg-type]
    dataset = MultiViewDataset(instances, cache, network.parts, views, size, seed=seed)
    order = [list(range(start, min(start + batch_size, len(dataset))))
             for start in range(0, len(dataset), batch_size)]
    loader = make_loader(dataset, order, 0)  # type: ignore[arg-type]
    slots = {part: "shared" if network.shared else part for part in network.parts}
    encoders = {part: (network.backbones[slot], part_encoder(network, slot, cut)) for part, slot in slots.items()}
    first_backbone, first_head = next(iter(encoders.values()))
    n_parts, n_views = len(network.parts), len(views)
    features = torch.zeros(len(dataset), n_views, n_parts, part_feature_dim(first_backbone, first_head, colour_weight))
    present = torch.zeros(len(dataset), n_parts, dtype=torch.bool)
    network.eval()
    with torch.no_grad(), tqdm(total=len(dataset), desc="frozen features", unit="instance",
                               disable=not progress) as bar:
        for batch in loader:
            index = batch["index"]
            for slot, part in enumerate(network.parts):
                has = batch[f"has_{part}"]
                present[index, slot] = has
                if not has.any():
                    continue
                backbone, head = encoders[part]
                encoded = run_forward(lambda images, b=backbone, h=head: encode_parts(images, b, h, colour_weight),
                                      batch[part][has].flatten(0, 1), device)
                features[index[has], :, slot] = encoded.view(int(has.sum()), n_views, -1)
            bar.update(len(index))
    return PartFeatures(features, present)


def init_projector(linear: nn.Linear, inputs: Tensor, how: str, seed: int) -> None:
    """Start the projector ``linear`` (in place) as ``how`` says; ``inputs`` ``(N, D)`` are fused features.

    ``pca``: the rows are the top principal directions of ``inputs`` (centred), an isometry on the
    subspace where the data varies most, so nearest neighbours are kept as far as ``out_features``
    dimensions allow; rows beyond the rank of ``inputs`` are filled with orthonormal directions of
    the rest of the space. ``orthogonal``: a random orthonormal map. Both set the bias to 0, so
    a zero input still maps to zero. ``random``: PyTorch's default init, left as it is.
    """
    if how == "random":
        return
    generator = torch.Generator().manual_seed(seed)
    out_dim, in_dim = linear.weight.shape
    random_rows = torch.linalg.qr(torch.randn(in_dim, max(out_dim, 1), generator=generator))[0].T[:out_dim]
    if how == "orthogonal":
        weight = random_rows
    elif how == "pca":
        centred = inputs.double() - inputs.double().mean(dim=0, keepdim=True)
        directions = torch.linalg.svd(centred, full_matrices=False)[2][:out_dim].float()  # (k, D)
        if len(directions) < out_dim:  # fewer samples than dimensions: complete the basis
            rest = random_rows[len(directions):]
            rest = rest - rest @ directions.T @ directions
            directions = torch.cat([directions, torch.linalg.qr(rest.T)[0].T[: out_dim - len(directions)]])
        weight = directions
    else:
        raise ConfigError(f"unknown projector_init '{how}'")
    with torch.no_grad():
        linear.weight.copy_(weight.to(linear.weight))
        if linear.bias is not None:
            linear.bias.zero_()


class GroupMetricLoss:
    """A PML loss (and miner) applied inside each group of a batch, averaged over groups.

    ``labels``, ``groups`` and ``books`` are integer codes per batch row. A group with fewer than two
    rows is skipped. With ``cross_book_negatives`` the first row of every other book present in the
    batch joins each group with a label of its own (a certain negative).
    """

    def __init__(self, config: FinetuneLossConfig) -> None:
        if config.name == "triplet":
            self.loss: nn.Module = losses.TripletMarginLoss(margin=config.margin)
            self.miner: nn.Module | None = miners.MultiSimilarityMiner(epsilon=config.miner_epsilon)
        else:
            self.loss = losses.ContrastiveLoss(pos_margin=config.pos_margin, neg_margin=config.neg_margin)
            self.miner = None
        self.cross_book_negatives = config.cross_book_negatives

    def __call__(self, embeddings: Tensor, labels: Tensor, groups: Tensor, books: Tensor) -> Tensor:
        total, counted = embeddings.sum() * 0.0, 0
        first_of_book = {int(book): int(torch.nonzero(books == book)[0]) for book in torch.unique(books)}
        for group in torch.unique(groups):
            members = torch.nonzero(groups == group).flatten()
            if len(members) < 2:
                continue
            group_labels = labels[members]
            if self.cross_book_negatives:
                own_book = int(books[members[0]])
                extra = [row for book, row in first_of_book.items() if book != own_book]
                if extra:
                    members = torch.cat([members, torch.tensor(extra, device=members.device)])
                    unique = -1 - torch.arange(len(extra), device=labels.device)  # never a real label
                    group_labels = torch.cat([group_labels, unique])
            chosen = embeddings[members]
            pairs = self.miner(chosen, group_labels) if self.miner is not None else None
            total = total + self.loss(chosen, group_labels, pairs)
            counted += 1
        return total / max(counted, 1)


def scoped_retrieval(embeddings: np.ndarray, labels: Sequence[str], scopes: Sequence[str]) -> dict[str, float]:
    """Leave-one-out MAP@R and rank-1 inside each label scope, averaged over all queries.

    Labels are only comparable inside a scope (a book, or a sequence), so each scope is ranked on its
    own; every query weighs the same. Queries with no other instance of their identity are skipped.
    """
    scopes_arr, labels_arr = np.asarray(scopes, dtype=object), np.asarray(labels, dtype=object)
    sums = {"map_at_r": 0.0, "rank1": 0.0}
    queries = 0
    for scope in sorted(set(scopes_arr.tolist())):
        rows = np.flatnonzero(scopes_arr == scope)
        if len(rows) < 2:
            continue
        (codes,) = encode_labels(labels_arr[rows])
        metrics = retrieval_metrics(embeddings[rows], codes, embeddings[rows], codes,
                                    exclude=np.eye(len(rows), dtype=bool), ks=(1,))
        n = int(metrics["queries"])
        if n:
            queries += n
            sums["map_at_r"] += float(metrics["map_at_r"]) * n
            sums["rank1"] += float(metrics["rank1"]) * n
    if not queries:
        return {"map_at_r": float("nan"), "rank1": float("nan"), "queries": 0.0}
    return {"map_at_r": sums["map_at_r"] / queries, "rank1": sums["rank1"] / queries, "queries": float(queries)}


def _codes(values: Sequence[str]) -> Tensor:
    (codes,) = encode_labels(np.asarray(list(values), dtype=object))
    return torch.from_numpy(codes)


def _label_scope(instance: Instance) -> str:
    return instance.label.rsplit("\x1f", 1)[0]


def load_stage1(config: FinetuneConfig, target: torch.device) -> FaceBodyNetwork:
    """The frozen stage-1 network, or with ``ssl_checkpoint: null`` the pretrained registry backbone."""
    if config.ssl_checkpoint is None:
        network = build_facebody_network(config.backbone, config.data.parts, shared=True, pretrained=True,
                                         input_size=config.input_size)
    else:
        network = load_facebody_network(config.ssl_checkpoint)
    network = network.to(target).eval()
    if target.type == "cpu":
        network = network.to(memory_format=torch.channels_last)
    network.requires_grad_(False)
    if list(config.data.parts) != list(network.parts):
        raise ConfigError(f"data.parts {config.data.parts} differ from the stage-1 network's parts "
                          f"{list(network.parts)}")
    return network


def train_projector(config: FinetuneConfig, data: TrainingData, train_features: PartFeatures,
                    val_features: PartFeatures | None, target: torch.device,
                    progress: bool = True, resume: bool = False) -> tuple[TrainResult, FusionProjector]:
    """Fit the fusion + projector on frozen features (the part of stage 2 that learns)."""
    n_parts, part_dim = train_features.features.shape[2:]
    torch.manual_seed(config.train.seed)
    projector = FusionProjector(part_dim, n_parts, config.out_dim, config.fusion).to(target)
    with torch.no_grad():
        clean = projector.fuse(train_features.features[:, 0].to(target), train_features.present.to(target))
    init_projector(projector.linear, clean.cpu(), config.projector_init, config.train.seed)
    labels = _codes([i.label for i in data.train])
    groups = _codes([i.group for i in data.train])
    books = _codes([i.book for i in data.train])
    sampler = GroupBatchSampler(data.train, config.train.batch_size, config.train.seed)
    if sampler.left_out:
        log.info("%d training instances are alone in their group and carry no pair", sampler.left_out)
    criterion = GroupMetricLoss(config.loss)
    features = train_features.features.to(target)
    present = train_features.present.to(target)

    def batches(epoch: int, skip: int) -> Iterator[Tensor]:
        sampler.set_position(epoch, skip)
        return (torch.tensor(batch) for batch in sampler)

    def step(index: Tensor) -> dict[str, Tensor]:
        rows = index.to(target)
        view = torch.randint(features.shape[1], (len(rows), features.shape[2]), device=target)
        chosen = features[rows.unsqueeze(1), view, torch.arange(features.shape[2], device=target)]  # (B, P, D)
        embeddings = projector(chosen, present[rows])
        cpu_rows = index.cpu()
        return {"loss": criterion(embeddings, labels[cpu_rows].to(target), groups[cpu_rows].to(target),
                                  books[cpu_rows].to(target))}

    validate: Callable[[], dict[str, float]] | None = None
    if val_features is not None and len(data.val) >= 2:
        val_labels = [i.label for i in data.val]
        val_scopes = [_label_scope(i) for i in data.val]
        val_parts = val_features.features[:, 0].to(target)
        val_present = val_features.present.to(target)

        def validate() -> dict[str, float]:
            embeddings = projector(val_parts, val_present).cpu().numpy()
            return scoped_retrieval(embeddings, val_labels, val_scopes)

        with torch.no_grad():
            start = validate()
        log.info("validation MAP@R of the projector's start (%s): %.4f", config.projector_init, start["map_at_r"])
    result = fit(projector, batches, step, config.train, config.output_dir, target, validate,
                 monitor="map_at_r", mode="max", resume=resume,
                 progress=progress, fingerprint=fingerprint(config))
    return result, projector


def train_finetune(config: FinetuneConfig, device: str | torch.device = "cpu", resume: bool = False,
                   progress: bool = True) -> tuple[TrainResult, Path | None]:
    """Run stage 2; returns the training result and the exported embedding model's path.

    The export (``export.path``, default ``output_dir/model.pt``) is written when the model fits the
    embedding-model contract (shared backbone, ``sum`` fusion); otherwise the path is ``None`` and
    the projector's weights stay in ``output_dir/best.pt`` / ``checkpoint.pt`` for ablation tables.
    """
    target = resolve_device(device)
    network = load_stage1(config, target)
    data = prepare_training_data(config.data, config.train.seed, progress, require_labels=True)
    for note in data.notes:
        log.info(note)
    encode = {"cut": config.cut, "colour_weight": config.colour_weight}
    train_features = compute_features(network, data.train, data.cache, config.feature_views, config.augment,
                                      target, config.train.seed, progress=progress, **encode)
    val_features = compute_features(network, data.val, data.cache, 0, config.augment, target,
                                    config.train.seed, progress=progress, **encode) if data.val else None
    result, projector = train_projector(config, data, train_features, val_features, target, progress, resume)
    if not network.shared and len(network.parts) > 1 or config.fusion != "sum":
        log.info("fusion '%s' / separate backbones: no embedding-model export", config.fusion)
        return result, None
    model = FineTunedFaceBodyModel.from_stages(network.cpu(), projector.cpu(), config.cut, config.colour_weight)
    path = config.export.path or Path(config.output_dir) / MODEL_NAME
    return result, save_finetuned_model(model, path, half=config.export.half)
