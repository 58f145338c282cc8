"""Cross-domain batch-hard mining: the triplet rule of Deng, Xie & Liu (2024).

For every anchor, the hardest positive (farthest crop of its identity) and the hardest negative
(nearest crop of another identity) are both taken from *other* domains than the anchor's (another
drawing style, another source), so the triplet loss learns to match a character across styles
instead of the easy within-style pairs. The result is an indices tuple ``(anchors, positives,
negatives)`` for pytorch-metric-learning's ``TripletMarginLoss``, exactly like PML's
``BatchHardMiner`` returns; PML's miners cannot take a per-sample domain, hence this function.
Anchors without a cross-domain positive or negative in the batch are left out.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance
from torch import Tensor


def cross_domain_batch_hard(embeddings: Tensor, labels: Tensor, domains: Tensor,
                            distance: BaseDistance) -> tuple[Tensor, Tensor, Tensor]:
    """``(anchors, positives, negatives)`` row indices of the hardest cross-domain triplets.

    ``embeddings`` ``(B, D)``; ``labels`` and ``domains`` ``(B,)`` integer codes; ``distance`` a PML
    distance (the same one the loss uses, so "hardest" means hardest for that loss).
    """
    with torch.no_grad():
        matrix = distance(embeddings)  # (B, B)
        if distance.is_inverted:  # a similarity: hardest positive = least similar
            matrix = -matrix
        same_label = labels.unsqueeze(0) == labels.unsqueeze(1)
        other_domain = domains.unsqueeze(0) != domains.unsqueeze(1)
        positive = same_label & other_domain
        negative = ~same_label & other_domain
        far = matrix.masked_fill(~positive, float("-inf")).max(dim=1)
        near = matrix.masked_fill(~negative, float("inf")).min(dim=1)
        keep = positive.any(dim=1) & negative.any(dim=1)
        anchors = torch.nonzero(keep).flatten()
    return anchors, far.indices[anchors], near.indices[anchors]
