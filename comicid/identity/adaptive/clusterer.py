"""AdaptiveClusterer: VideoClusterNet's adapt-then-cluster pipeline on one book's instances.

Stages (each with its own progress bar; each result checkpointed in ``state_dir`` when given, so an
interrupted run resumes after the last finished stage):

1. **quality** of every crop from the spread of its view embeddings
   (:mod:`comicid.identity.adaptive.quality`); crops below the collection's lower fence are *pending*:
   kept out of groups and training pairs, and placed last.
2. **groups**: must-links, then stable mutual nearest neighbours (:mod:`~.groups`).
3. **rounds** of self-distillation (:func:`comicid.training.adapt.train_adapter`) on positive pairs
   from the groups, followed by Gaussian soft matching of the groups under the adapted metric
   (:mod:`~.matching`); stops when matching changes nothing, or after ``max_rounds``.
4. **final** parameter-free merging with per-cluster thresholds (:mod:`~.final`) under the adapted
   metric centred on the scope's mean (the collection-level analogue of DINO's centring), starting from the must-link seeds, then the pending crops join the cluster they fit or stay
   apart. The matched groups shape the metric (they are its training pairs) but are not the starting
   partition: that scored lower on every development set (docs/ADAPTIVE.md).

No threshold or cluster count is asked of the user. The learnt adapter is kept as ``adapter_`` after
``fit_predict`` so that it can be saved with the collection (:func:`save_adapter`) and applied to new
features for search (:func:`load_adapter` and :func:`comicid.training.adapt.apply_adapter`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from comicid.checkpoint import read_checkpoint, write_checkpoint
from comicid.identity.adaptive.final import attach_pending, merge_clusters
from comicid.identity.adaptive.groups import grow_groups
from comicid.identity.adaptive.matching import soft_match
from comicid.identity.adaptive.quality import dropout_views, low_quality_mask, quality_scores
from comicid.identity.base import ConstrainedClusterer
from comicid.identity.constraints import Constraints, IdentityInputError, first_appearance_labels
from comicid.atomic import atomic_write_bytes
from comicid.identity.registry import CLUSTERERS
from comicid.training.adapt import AdaptConfig, Adapter, DistillNetwork, apply_adapter, train_adapter

ADAPTER_FORMAT = "comicid-adapter"

LOW_QUALITY_MODES = ("assign", "unknown")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@CLUSTERERS.register("adaptive")
class AdaptiveClusterer(ConstrainedClusterer):
    """Adapt a small metric to the collection, then cluster with per-cluster thresholds.

    Args:
        max_rounds: cap on fine-tune + soft-match rounds (the paper iterates until nothing changes).
        adapt: hyper-parameters of each round's self-distillation; ``None`` uses the defaults.
        dropout_views: number of feature-dropout passes used as views when ``fit_predict`` gets none.
        low_quality: ``"assign"`` puts a low-quality crop in the cluster it fits or alone;
            ``"unknown"`` labels it -1 when it fits no cluster.
        state_dir: folder for stage checkpoints; a rerun on the same inputs resumes from it.
        progress: show a progress bar per stage.
        seed: seeds the dropout views and the training.

    ``threshold_parameter`` is None: there is no threshold for ``--threshold`` to set.
    """

    threshold_parameter: ClassVar[str | None] = None
    #: Augmented image views per crop that a collection workflow should compute and pass as ``views``
    #: (2 measured as enough on the dev sets; without views, feature-dropout views are much worse).
    image_views: ClassVar[int] = 2

    def __init__(self, max_rounds: int = 3, adapt: AdaptConfig | None = None, dropout_views: int = 4,
                 low_quality: str = "assign", state_dir: str | Path | None = None, progress: bool = False,
                 seed: int = 0) -> None:
        self.max_rounds = max_rounds
        self.adapt = adapt
        self.dropout_views = dropout_views
        self.low_quality = low_quality
        self.state_dir = state_dir
        self.progress = progress
        self.seed = seed

    def _validate(self) -> None:
        if self.max_rounds < 0:
            raise IdentityInputError(f"max_rounds must be >= 0, got {self.max_rounds}")
        if self.dropout_views < 2:
            raise IdentityInputError(f"dropout_views must be >= 2 to measure spread, got {self.dropout_views}")
        if self.low_quality not in LOW_QUALITY_MODES:
            raise IdentityInputError(
                f"low_quality must be one of {', '.join(LOW_QUALITY_MODES)}, got {self.low_quality!r}")

    def _fit_labels(self, unit: np.ndarray, constraints: Constraints, views: np.ndarray | None,
                    instance_parts: np.ndarray | None = None) -> np.ndarray:
        """Cluster one scope's instances (``fit``/``fit_predict`` take the same arguments by name).

        Constraints are part of the method (must-links seed the groups, cannot-links steer every
        match), so the shared must-link/repair wrapper of :class:`ConstrainedClusterer` is not used.

        Args:
            unit: (N, D) instance embeddings, L2-normalised.
            constraints: cannot-links (same panel) and must-links between the N instances.
            views: optional (V, N, D) embeddings of V augmented views of each instance's crop through
                the same frozen model; without them, feature-dropout passes stand in.
            instance_parts: optional (P, N, D) embeddings of each part alone (face, body), all-zero or
                NaN rows where an instance lacks the part; each part is trained to map like its instance.

        After the call, ``adapter_`` (the learnt :class:`Adapter`), ``centre_`` (D,) the scope's mean
        adapted embedding that the final clustering subtracts, ``quality_`` (N,), ``pending_`` (N,)
        low-quality mask, ``groups_`` (N,) matched groups and ``rounds_`` are set.
        """
        unit = unit.astype(np.float32)  # (N, D), L2-normalised
        n, dim = unit.shape
        cannot = constraints.cannot_link
        config = self.adapt or AdaptConfig(seed=self.seed)
        if n < 2:
            self._keep(Adapter(dim, config.hidden), np.ones(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64), 0)
            self.centre_ = np.zeros(dim, dtype=np.float32)
            return np.zeros(n, dtype=np.int64)
        views = self._views(unit, views)  # (V, N, D)
        bank, valid = _bank(unit, views, instance_parts)
        state = _Checkpoints(None if self.state_dir is None else Path(self.state_dir), self._fingerprint(unit, views, bank, constraints, config))

        quality = quality_scores(views)
        pending = low_quality_mask(quality)
        eligible = ~pending
        seeds = constraints.must_link_groups(n)
        groups = state.load_array("groups")
        if groups is None:
            groups = grow_groups(unit, seeds, views, cannot, eligible)
            state.save_array("groups", groups)

        network: DistillNetwork | None = None
        rounds = 0
        for round_index in tqdm(range(self.max_rounds), desc="adapt rounds", disable=not self.progress):
            saved = state.load_round(round_index, dim, config)
            if saved is None:
                round_config = AdaptConfig(**{**asdict(config), "seed": config.seed + round_index})
                network = train_adapter(bank, valid, groups, eligible, round_config, start=network,
                                        progress=self.progress, description=f"self-distillation {round_index + 1}")
                adapted = apply_adapter(network.adapter, unit)
                matched = soft_match(adapted, groups, apply_adapter(network.adapter, views), cannot, eligible)
                state.save_round(round_index, network, matched)
            else:
                network, matched = saved
            rounds = round_index + 1
            if np.array_equal(matched, groups):
                break
            groups = matched

        adapter = network.adapter if network is not None else Adapter(dim, config.hidden)
        with tqdm(total=2, desc="final clustering", disable=not self.progress) as bar:
            keep = np.flatnonzero(eligible)  # never empty: the lower fence cannot hold every crop
            # The learnt metric, centred on the scope's mean instance (see docs/ADAPTIVE.md: without it,
            # a book whose characters share one drawing style looks like one character).
            centre = apply_adapter(adapter, unit)[keep].mean(axis=0)
            adapted = _unit(apply_adapter(adapter, unit) - centre)  # (N, D)
            adapted_views = _unit(apply_adapter(adapter, views) - centre)  # (V, N, D)
            merged = np.zeros(n, dtype=np.int64)  # pending entries are ignored by attach_pending
            # From the must-link seeds, not the matched groups: matched groups are ~96% pure and the
            # final merge scored lower from them on the dev sets (docs/ADAPTIVE.md).
            merged[keep] = merge_clusters(adapted[keep], seeds[keep], constraints.subset(keep).cannot_link,
                                          adapted_views[:, keep])
            bar.update()
            labels = attach_pending(adapted, merged, pending, cannot, adapted_views,
                                    unknown=self.low_quality == "unknown")
            bar.update()
        self._keep(adapter, quality, pending, groups, rounds)
        self.centre_ = centre
        return first_appearance_labels(labels)

    def _views(self, unit: np.ndarray, views: np.ndarray | None) -> np.ndarray:
        if views is None:
            return dropout_views(unit, self.dropout_views, seed=self.seed)
        views = np.asarray(views, dtype=np.float32)
        if views.ndim != 3 or views.shape[1:] != unit.shape:
            raise IdentityInputError(f"views must have shape (V, {unit.shape[0]}, {unit.shape[1]}), got {views.shape}")
        if not np.isfinite(views).all():
            raise IdentityInputError("views hold NaN or infinity")
        return _unit(views)

    def _keep(self, adapter: Adapter, quality: np.ndarray, pending: np.ndarray, groups: np.ndarray,
              rounds: int) -> None:
        self.adapter_ = adapter
        self.quality_ = quality
        self.pending_ = pending
        self.groups_ = first_appearance_labels(groups, keep_unknown=False)
        self.rounds_ = rounds

    def _fingerprint(self, unit: np.ndarray, views: np.ndarray, bank: np.ndarray, constraints: Constraints,
                     config: AdaptConfig) -> str:
        digest = hashlib.sha256()
        for array in (unit, views, bank, constraints.cannot_link, constraints.must_link):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(json.dumps([asdict(config), self.max_rounds, self.seed], sort_keys=True).encode())
        return digest.hexdigest()[:16]


def _bank(unit: np.ndarray, views: np.ndarray, parts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Stack the original, the views and the parts into (W, N, D) with a (W, N) validity mask."""
    stacks = [unit[None], views]
    valid = [np.ones((1 + len(views), unit.shape[0]), dtype=bool)]
    if parts is not None:
        parts = np.asarray(parts, dtype=np.float32)
        if parts.ndim != 3 or parts.shape[1:] != unit.shape:
            raise IdentityInputError(f"instance_parts must have shape (P, {unit.shape[0]}, {unit.shape[1]}), "
                                     f"got {parts.shape}")
        present = np.isfinite(parts).all(axis=2) & (np.abs(np.nan_to_num(parts)).sum(axis=2) > 0)
        stacks.append(_unit(np.where(present[..., None], np.nan_to_num(parts), 0.0)).astype(np.float32))
        valid.append(present)
    return np.concatenate(stacks), np.concatenate(valid)


class _Checkpoints:
    """Stage results in ``folder/<fingerprint>/``; a no-op without a folder.

    The fingerprint covers inputs and hyper-parameters, so a checkpoint is only ever reused for the
    run that wrote it.
    """

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.folder = folder / fingerprint if folder is not None else None

    def load_array(self, name: str) -> np.ndarray | None:
        if self.folder is None or not (self.folder / f"{name}.npy").is_file():
            return None
        return np.load(self.folder / f"{name}.npy")

    def save_array(self, name: str, array: np.ndarray) -> None:
        if self.folder is not None:
            buffer = io.BytesIO()
            np.save(buffer, array)
            atomic_write_bytes(self.folder / f"{name}.npy", buffer.getvalue())

    def load_round(self, index: int, dim: int, config: AdaptConfig) -> tuple[DistillNetwork, np.ndarray] | None:
        path = self.folder / f"round-{index}.pt" if self.folder is not None else None
        if path is None or not path.is_file():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network = DistillNetwork(dim, config)
        network.load_state_dict(saved["network"])
        return network.eval(), saved["groups"].numpy()

    def save_round(self, index: int, network: DistillNetwork, groups: np.ndarray) -> None:
        if self.folder is not None:
            buffer = io.BytesIO()
            torch.save({"network": network.state_dict(), "groups": torch.as_tensor(groups)}, buffer)
            atomic_write_bytes(self.folder / f"round-{index}.pt", buffer.getvalue())


def save_adapter(adapter: Adapter, path: str | Path) -> Path:
    """Write a learnt adapter atomically (a torch file holding its sizes and weights)."""
    return write_checkpoint(path, ADAPTER_FORMAT, 1, dim=adapter.dim, hidden=adapter.hidden,
                            state_dict=adapter.state_dict())


def load_adapter(path: str | Path) -> Adapter:
    """Read an adapter written by :func:`save_adapter`; raises :class:`IdentityInputError` if it is not one."""
    saved, _ = read_checkpoint(path, {ADAPTER_FORMAT: 1}, "adapter", IdentityInputError)
    adapter = Adapter(int(saved["dim"]), int(saved["hidden"]))
    adapter.load_state_dict(saved["state_dict"])
    return adapter.eval()
