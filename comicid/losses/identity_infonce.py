"""InfoNCE between two views, and the symmetric face-body identity term, on PML's ``NTXentLoss``.

``NTXentLoss`` *is* InfoNCE (SimCLR's name for it): for every anchor, the positive's similarity
divided by temperature competes in a softmax with all negatives. This module only adds:

* the SimCLR two-view call (``loss(view_a, view_b)``): the views are stacked and sample ``i`` of one
  view is the positive of sample ``i`` of the other, every other sample of either view a negative;
* the *cross-modal* identity term of Soykan et al. (2023): with ``ref_emb``, PML takes anchors from
  one set and positives/negatives from the other; a face is then contrasted only against bodies.
  PML computes one direction; the term averages face->body and body->face so neither part is
  privileged;
* a guard against a PML trap: passing the same tensor as ``labels`` and ``ref_labels`` makes PML
  drop the diagonal pairs, i.e. every face-body positive (the loss silently becomes 0);
* an empty, graph-connected zero when fewer than two samples are given, so a batch where no instance
  has both a face and a body still trains its other terms.

The call shape is PML's ``(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.losses import NTXentLoss
from torch import Tensor, nn


class IdentityInfoNCE(nn.Module):
    """InfoNCE with temperature ``temperature`` (0.07 in the paper); symmetric when ``ref_emb`` is given.

    Embeddings should be L2-normalised (PML's default cosine similarity normalises again anyway).
    Samples sharing a label are positives of each other; with ``ref_emb`` only cross pairs count.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.ntxent = NTXentLoss(temperature=temperature)

    def forward(self, embeddings: Tensor, labels: Tensor, indices_tuple: tuple | None = None,
                ref_emb: Tensor | None = None, ref_labels: Tensor | None = None) -> Tensor:
        if len(embeddings) < 2 or (ref_emb is not None and len(ref_emb) < 2):
            return embeddings.sum() * 0.0  # keeps the graph (and DDP/AMP bookkeeping) intact
        if ref_emb is None:
            return self.ntxent(embeddings, labels, indices_tuple)
        # PML treats ``ref_labels is labels`` as "the same samples" and drops the diagonal pairs,
        # which are exactly the face-body positives here: always hand it a distinct tensor.
        ref_labels = labels.clone() if ref_labels is None or ref_labels is labels else ref_labels
        forward = self.ntxent(embeddings, labels, None, ref_emb, ref_labels)
        backward = self.ntxent(ref_emb, ref_labels, None, embeddings, labels)
        return (forward + backward) / 2

    def two_views(self, view_a: Tensor, view_b: Tensor) -> Tensor:
        """SimCLR's loss of two views ``(N, D)`` of the same N samples (row i of each is one sample)."""
        labels = torch.arange(len(view_a), device=view_a.device)
        return self(torch.cat([view_a, view_b]), torch.cat([labels, labels]))
