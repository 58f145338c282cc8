"""Losses pytorch-metric-learning lacks; everything else is used from PML directly.

Only the face-body identity term is here: PML's ``NTXentLoss`` is InfoNCE for two views of one set
of samples, but it has no symmetric cross-modal form (each face against all bodies *and* each body
against all faces) nor a way to skip a term when a batch has too few samples for it.
"""

from comicid.losses.identity_infonce import IdentityInfoNCE

__all__ = ["IdentityInfoNCE"]
