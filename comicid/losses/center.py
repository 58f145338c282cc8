"""Center loss (Wen et al. 2016), the optional third term of the BoT recipe (weight beta = 5e-4).

Hand-written: pytorch-metric-learning has no center loss (its ``CentroidTripletLoss`` is a
triplet loss on class centroids, not a pull towards learnt centres). Each identity has a learnt
centre; the loss is the mean squared Euclidean distance of each feature to its identity's centre.
It tightens identities in ``f_t`` space, which the triplet loss alone only does relatively.
The call shape is PML's ``(embeddings, labels, indices_tuple=None)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CenterLoss(nn.Module):
    """``mean_i ||f_i - c_{y_i}||^2`` over a batch; centres ``(n_classes, dim)`` are parameters."""

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(n_classes, dim))

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: object = None) -> Tensor:
        del indices_tuple  # every sample counts, as in BoT
        return (embeddings - self.centers[labels]).pow(2).sum(dim=1).mean()
