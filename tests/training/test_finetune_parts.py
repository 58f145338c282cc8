"""Stage-2 pieces: losses stay inside groups, validation ranks inside label scopes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses

from comicid.training.config import FinetuneLossConfig
from comicid.training.finetune import GroupMetricLoss, init_projector, scoped_retrieval


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


def test_pca_init_keeps_distances_of_data_in_its_top_subspace() -> None:
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(40, 6, generator=generator))[0].T  # 6 orthonormal directions in 40-d
    data = torch.randn(200, 6, generator=generator) @ basis + 0.01 * torch.randn(200, 40, generator=generator)
    linear = torch.nn.Linear(40, 8)
    init_projector(linear, data, "pca", seed=0)
    with torch.no_grad():
        projected = linear(data)
    before, after = torch.cdist(data, data), torch.cdist(projected, projected)
    assert torch.allclose(after, before, atol=0.05 * float(before.max()))
    assert torch.allclose(linear.weight @ linear.weight.T, torch.eye(8), atol=1e-5)  # orthonormal rows
    assert float(linear.bias.detach().abs().max()) == 0.0
    random = torch.nn.Linear(40, 8)
    with torch.no_grad():
        spread = torch.cdist(random(data), random(data))
    assert float((spread - before).abs().mean()) > float((after - before).abs().mean())


@pytest.mark.parametrize("how", ["orthogonal", "pca"])
def test_projector_starts_are_orthonormal_even_with_few_samples(how: str) -> None:
    linear = torch.nn.Linear(30, 10)
    init_projector(linear, torch.randn(4, 30, generator=torch.Generator().manual_seed(1)), how, seed=0)
    assert torch.allclose(linear.weight @ linear.weight.T, torch.eye(10), atol=1e-5)
