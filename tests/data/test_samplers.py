"""P x K samplers: identities per batch, crops per identity, domains, and exact replay of an epoch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from comicid.data.samplers import CrossDomainPKSampler, DomainPKSampler, PKBatchSampler
from comicid.errors import ConfigError


def _labels(identities: int, per: int) -> np.ndarray:
    return np.repeat(np.arange(identities), per)


def test_pk_batches_hold_p_identities_of_k_crops_and_replay_exactly() -> None:
    labels = _labels(10, 5)
    sampler = PKBatchSampler(labels, p=4, k=3, batches_per_epoch=6, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
    sampler.set_position(0, 2)
    assert list(sampler) == batches[2:]  # resume inside an epoch: the same batches
    sampler.set_position(1)
    assert list(sampler) != batches  # another epoch, other batches


def test_pk_sampler_needs_p_identities() -> None:
    with pytest.raises(ConfigError, match="only 3 identities for P = 4"):
        PKBatchSampler(_labels(3, 4), p=4, k=2, batches_per_epoch=1)


def test_cross_domain_batches_spread_each_identity_over_its_domains() -> None:
    # identities 0-5 in two domains (3 crops each), identity 6 in one domain only
    labels = np.concatenate([_labels(6, 6), np.full(4, 6)])
    domains = np.concatenate([np.tile([0, 0, 0, 1, 1, 1], 6), np.zeros(4, dtype=int)])
    sampler = CrossDomainPKSampler(labels, domains, p=3, k=4, batches_per_epoch=20, seed=0)
    assert sampler.left_out == 1
    for batch in sampler:
        assert len(batch) == 12 and 6 not in labels[batch]
        for identity in np.unique(labels[batch]):
            rows = [row for row in batch if labels[row] == identity]
            assert len(rows) == 4 and sorted(Counter(domains[rows].tolist()).values()) == [2, 2]
            assert len(set(rows)) == 4  # no repeat while a domain has crops left


def test_cross_domain_sampler_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="at least two domains"):
        CrossDomainPKSampler(_labels(4, 4), np.zeros(16, dtype=int), p=2, k=2, batches_per_epoch=1)
    with pytest.raises(ConfigError, match="identities seen in two or more domains"):
        CrossDomainPKSampler(_labels(4, 2), np.tile([0, 1], 4)[:8] * np.repeat([1, 0, 0, 0], 2), p=2, k=2,
                             batches_per_epoch=1)


def test_domain_batches_stay_in_one_domain_and_visit_domains_by_their_identities() -> None:
    # domain 0: identities 0-7 (8), domain 1: identities 8-9 (2, fewer than P), domain 2: identity 10 alone
    labels = np.concatenate([_labels(10, 3), np.full(3, 10)])
    domains = np.concatenate([np.zeros(24, dtype=int), np.ones(6, dtype=int), np.full(3, 2)])
    sampler = DomainPKSampler(labels, domains, p=4, k=2, batches_per_epoch=200, seed=3)
    assert sampler.left_out == 1  # identity 10: its domain has no negatives
    seen = Counter()
    for batch in sampler:
        batch_domains = set(domains[batch].tolist())
        assert len(batch_domains) == 1 and 2 not in batch_domains
        counts = Counter(labels[batch].tolist())
        assert set(counts.values()) == {2} and len(counts) == (4 if batch_domains == {0} else 2)
        seen[batch_domains.pop()] += 1
    assert 0.7 < seen[0] / 200 < 0.9  # 8 of the 10 usable identities live in domain 0
    sampler.set_position(0, 5)
    assert list(sampler) == sampler.batches()[5:]


def test_domain_sampler_needs_one_domain_with_p_identities() -> None:
    with pytest.raises(ConfigError, match="only 3 identities in the largest domain for P = 4"):
        DomainPKSampler(_labels(6, 2), np.repeat([0, 1], 6), p=4, k=2, batches_per_epoch=1)
    with pytest.raises(ValueError, match="one value per sample"):
        DomainPKSampler(_labels(6, 2), np.zeros(3, dtype=int), p=2, k=2, batches_per_epoch=1)
