"""Stage-2 pieces: losses stay inside groups, validation ranks inside label scopes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses

from comicid.training.config import FinetuneLossConfig
from comicid.training.finetune import GroupMetricLoss, scoped_retrieval


def _embeddings(n: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_contrastive_loss_is_the_mean_of_per_group_losses() -> None:
    emb = _embeddings(6)
    labels = torch.tensor([0, 0, 1, 0, 0, 1])  # label 0 in group 0 and in group 1: not the same character
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    books = torch.zeros(6, dtype=torch.long)
    got = GroupMetricLoss(FinetuneLossConfig(name="contrastive", cross_book_negatives=False))(
        emb, labels, groups, books)
    pml = losses.ContrastiveLoss()
    expected = (pml(emb[:3], labels[:3]) + pml(emb[3:], labels[3:])) / 2
    assert torch.allclose(got, expected)


def test_cross_book_negatives_join_every_group() -> None:
    emb = _embeddings(5, seed=1)
    labels = torch.tensor([0, 0, 1, 0, 0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    books = torch.tensor([0, 0, 0, 1, 1])
    got = GroupMetricLoss(FinetuneLossConfig(name="contrastive", cross_book_negatives=True))(
        emb, labels, groups, books)
    pml = losses.ContrastiveLoss()
    first = pml(emb[[0, 1, 2, 3]], torch.tensor([0, 0, 1, -1]))  # + the first row of book 1
    second = pml(emb[[3, 4, 0]], torch.tensor([0, 0, -1]))  # + the first row of book 0
    assert torch.allclose(got, (first + second) / 2)


def test_triplet_with_miner_runs_and_is_zero_when_groups_are_perfect() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    groups = torch.zeros(4, dtype=torch.long)
    loss = GroupMetricLoss(FinetuneLossConfig(name="triplet", cross_book_negatives=False))
    assert loss(emb, labels, groups, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0.0)


def test_scoped_retrieval_ranks_each_scope_on_its_own() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    labels = ["a", "a", "b", "b"]
    assert scoped_retrieval(emb, labels, ["s", "s", "s", "s"])["map_at_r"] == pytest.approx(1.0)
    # the same name in two scopes is not a match: each scope then has no positive pair for 'a'
    split = scoped_retrieval(emb, ["a", "b", "a", "b"], ["s1", "s1", "s2", "s2"])
    assert split["queries"] == 0.0 and np.isnan(split["map_at_r"])
