"""Losses pytorch-metric-learning lacks; everything else is used from PML directly.

The face-body identity term: PML's ``NTXentLoss`` is InfoNCE for two views of one set of samples,
but it has no symmetric cross-modal form (each face against all bodies *and* each body against all
faces) nor a way to skip a term when a batch has too few samples for it. For the BoT recipe, the
center loss and a cross-domain batch-hard miner (PML has neither).
"""

from comicid.losses.center import CenterLoss
from comicid.losses.cross_domain import cross_domain_batch_hard
from comicid.losses.identity_infonce import IdentityInfoNCE

__all__ = ["CenterLoss", "IdentityInfoNCE", "cross_domain_batch_hard"]
