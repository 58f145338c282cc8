"""P x K identity batches for re-ID training: P identities, K crops each, across domains or within one.

Three samplers, all resumable exactly (the batches of epoch ``e`` are a function of the seed and
``e`` only, see :class:`~comicid.data.datasets._EpochSampler`):

* :class:`PKBatchSampler` (``cross_domain=False``): pytorch-metric-learning's ``MPerClassSampler``
  with its module-level NumPy generator re-seeded per epoch (PML draws from a global generator,
  which would make an interrupted epoch impossible to replay);
* :class:`CrossDomainPKSampler`: P identities that appear in at least two domains (drawing styles,
  sources), and K crops of each spread round-robin over its domains, so every anchor in the batch
  has a positive *and* negatives from another domain: what the cross-domain triplet rule of Deng,
  Xie & Liu (2024) mines from (:func:`cross_domain_batch_hard`). PML has no domain-aware sampler.
  Identities seen in one domain only cannot serve that rule; they are counted in ``left_out``.
* :class:`DomainPKSampler`: every batch from **one** domain (a data set, a tileset), P of its
  identities x K crops. Negatives then share the batch's drawing style, so a metric loss cannot
  separate them by style and must find what tells the characters apart, while positives across
  the styles inside the domain still teach invariance (torchreid's ``RandomDomainSampler`` with one
  domain per batch; PML has no domain-aware sampler).

All take integer label codes per sample (one sample = one part crop); the two domain-aware ones
also take a domain code per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common

from comicid.data.datasets import _EpochSampler
from comicid.errors import ConfigError


def _check_pk(p: int, k: int, identities: int, what: str) -> None:
    if p < 2 or k < 2:
        raise ConfigError(f"P x K batches need P >= 2 identities and K >= 2 crops each, got P={p}, K={k}")
    if identities < p:
        raise ConfigError(f"only {identities} {what} for P = {p} identities per batch; lower train.p or add data")


def _codes(labels: Sequence[int], domains: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Label and domain codes as int64 arrays of one length, or ``ValueError``."""
    labels_arr, domains_arr = np.asarray(labels, dtype=np.int64), np.asarray(domains, dtype=np.int64)
    if len(labels_arr) != len(domains_arr):
        raise ValueError("labels and domains must have one value per sample")
    return labels_arr, domains_arr


def _nested(outer: np.ndarray, inner: np.ndarray) -> list[list[np.ndarray]]:
    """For each ``outer`` value, the sample indices of each of its ``inner`` values; both in sorted order,
    so the groups (and the batches drawn from them) are the same on every run."""
    groups = []
    for value in np.unique(outer):
        rows = np.flatnonzero(outer == value)
        groups.append([rows[inner[rows] == sub] for sub in np.unique(inner[rows])])
    return groups


class _PKSampler(_EpochSampler):
    """What the three samplers share: ``p`` identities x ``k`` crops, ``batches_per_epoch`` batches."""

    def __init__(self, p: int, k: int, batches_per_epoch: int, seed: int) -> None:
        super().__init__(seed)
        self.p, self.k, self.batches_per_epoch = p, k, max(1, int(batches_per_epoch))

    def __len__(self) -> int:
        return self.batches_per_epoch


class PKBatchSampler(_PKSampler):
    """``batches_per_epoch`` batches of ``p`` random identities x ``k`` crops (with replacement when short)."""

    def __init__(self, labels: Sequence[int], p: int, k: int, batches_per_epoch: int, seed: int = 0) -> None:
        super().__init__(p, k, batches_per_epoch, seed)
        self.labels = np.asarray(labels, dtype=np.int64)
        _check_pk(p, k, len(np.unique(self.labels)), "identities")
        self.left_out = 0

    def batches(self) -> list[list[int]]:
        size = self.p * self.k
        sampler = MPerClassSampler(self.labels, self.k, batch_size=size,
                                   length_before_new_iter=size * self.batches_per_epoch)
        saved = pml_common.NUMPY_RANDOM
        pml_common.NUMPY_RANDOM = np.random.RandomState(np.random.SeedSequence([self.seed, self.epoch])
                                                        .generate_state(1)[0])
        try:
            order = [int(i) for i in sampler]
        finally:
            pml_common.NUMPY_RANDOM = saved
        return [order[start:start + size] for start in range(0, len(order), size)]

class CrossDomainPKSampler(_PKSampler):
    """P identities seen in >= 2 domains x K crops spread over their domains (see the module docstring)."""

    def __init__(self, labels: Sequence[int], domains: Sequence[int], p: int, k: int, batches_per_epoch: int,
                 seed: int = 0) -> None:
        super().__init__(p, k, batches_per_epoch, seed)
        labels_arr, domains_arr = _codes(labels, domains)
        by_identity = _nested(labels_arr, domains_arr)  # identity -> domain -> sample indices
        self.members: list[list[np.ndarray]] = [domains for domains in by_identity if len(domains) >= 2]
        self.left_out = len(by_identity) - len(self.members)
        if len(np.unique(domains_arr)) < 2:
            raise ConfigError("cross-domain triplets need at least two domains in the training data; "
                              "check data.domain_column or set loss.cross_domain: false")
        _check_pk(p, k, len(self.members), "identities seen in two or more domains")

    def batches(self) -> list[list[int]]:
        rng = self._generator()
        out = []
        for _ in range(self.batches_per_epoch):
            batch: list[int] = []
            for identity in rng.choice(len(self.members), size=self.p, replace=False):
                domains = self.members[identity]
                pools = [rng.permutation(domains[d]) for d in rng.permutation(len(domains))]
                for slot in range(self.k):  # round-robin over the domains; repeats only when a domain runs out
                    pool = pools[slot % len(pools)]
                    batch.append(int(pool[(slot // len(pools)) % len(pool)]))
            out.append(batch)
        return out

class DomainPKSampler(_PKSampler):
    """Batches of one domain each: ``min(p, its identities)`` identities x ``k`` crops (see the module docstring).

    A batch's domain is drawn with probability proportional to its identities, so every identity is
    visited about as often as under :class:`PKBatchSampler`. Domains with fewer than two identities
    give no negatives; they are skipped and their identities counted in ``left_out``.
    """

    def __init__(self, labels: Sequence[int], domains: Sequence[int], p: int, k: int, batches_per_epoch: int,
                 seed: int = 0) -> None:
        super().__init__(p, k, batches_per_epoch, seed)
        labels_arr, domains_arr = _codes(labels, domains)
        by_domain = _nested(domains_arr, labels_arr)  # domain -> identity -> sample indices
        self.members: list[list[np.ndarray]] = [identities for identities in by_domain if len(identities) >= 2]
        self.left_out = sum(len(identities) for identities in by_domain if len(identities) < 2)
        _check_pk(p, k, max((len(identities) for identities in self.members), default=0),
                  "identities in the largest domain")
        sizes = np.array([len(identities) for identities in self.members], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def batches(self) -> list[list[int]]:
        rng = self._generator()
        out = []
        for domain in rng.choice(len(self.members), size=self.batches_per_epoch, p=self.weights):
            identities = self.members[domain]
            batch: list[int] = []
            for identity in rng.choice(len(identities), size=min(self.p, len(identities)), replace=False):
                rows = identities[identity]
                batch += [int(row) for row in rng.choice(rows, size=self.k, replace=len(rows) < self.k)]
            out.append(batch)
        return out
