"""The InfoNCE identity term against a hand-written cross-entropy, and its edge cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from comicid.losses import IdentityInfoNCE


def _unit(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_identity_term_is_symmetric_clip_style_infonce() -> None:
    face, body = _unit(8, seed=1), _unit(8, seed=2)
    labels = torch.arange(8)
    logits = face @ body.T / 0.07
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    # passing the same label tensor twice must not drop the face-body positives (a PML trap)
    got = IdentityInfoNCE(0.07)(face, labels, ref_emb=body, ref_labels=labels)
    assert torch.allclose(got, expected, atol=1e-5)


def test_two_views_is_simclr_ntxent() -> None:
    a, b = _unit(6, seed=3), _unit(6, seed=4)
    both = torch.cat([a, b])
    logits = both @ both.T / 0.5
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(6, 12), torch.arange(0, 6)])
    expected = F.cross_entropy(logits, target)
    assert torch.allclose(IdentityInfoNCE(0.5).two_views(a, b), expected, atol=1e-5)


def test_matching_views_score_lower_than_random_ones() -> None:
    a = _unit(8, seed=5)
    loss = IdentityInfoNCE(0.1)
    assert loss.two_views(a, a) < loss.two_views(a, _unit(8, seed=6))


def test_fewer_than_two_samples_give_a_connected_zero() -> None:
    one = _unit(1).requires_grad_()
    value = IdentityInfoNCE()(one, torch.zeros(1, dtype=torch.long), ref_emb=one, ref_labels=torch.zeros(1))
    value.backward()
    assert value.item() == 0.0 and one.grad is not None
