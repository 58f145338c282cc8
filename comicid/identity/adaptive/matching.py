"""Iterative soft matching of groups under per-group normal distributions (VideoClusterNet, stage 2).

Each group is summarised by a normal distribution fitted to its samples: the embeddings of its
instances and of their augmented views. Another group scores by the log-likelihood of its mean sample
under that distribution, and it is matched when it scores at least the group's *own* threshold: the
mean of the lowest quarter of the group's members' log-likelihoods (the paper's rule).

Why the other group's *mean* and not the mean log-likelihood of its samples: in hundreds of
dimensions squared distances concentrate, so the spread of h's own samples alone already exceeds the
lowest quarter of g's members' scores even when h and g are two halves of one identity (measured on
blobs: no match at all). The mean of h removes h's spread and keeps only how far the two centres are. A tight
group therefore accepts only close neighbours, a group that already spans several poses accepts more,
and no global threshold is involved.

The distribution is isotropic (one variance per group, the maximum-likelihood fit). With a handful of
samples in hundreds of dimensions a full or diagonal covariance cannot be estimated, and for an
isotropic normal the matching test is scale-free: ``score(h | g) >= threshold(g)`` holds exactly when
the mean squared distance of h's samples to g's mean is at most the mean squared distance of g's
farthest quarter of members. That equivalence gives a scale-free ratio by which each group picks its most likely partner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comicid.identity.adaptive.groups import union_from_labels
from comicid.identity.constraints import first_appearance_labels

#: Fraction of a group's own members whose log-likelihoods set its threshold (the paper's 25 %).
LOWER_TAIL = 0.25


def _log_density(squared_distance: np.ndarray, variance: np.ndarray, dim: int) -> np.ndarray:
    """Log-density of an isotropic normal in ``dim`` dimensions at a squared distance from its mean."""
    return -squared_distance / (2 * variance) - 0.5 * dim * np.log(2 * np.pi * variance)


@dataclass(frozen=True)
class GroupGaussians:
    """Isotropic normal fits, one per group.

    ``means`` (G, D); ``variances`` (G,) per-dimension variance; ``thresholds`` (G,) log-likelihood
    another group's mean must reach under g to match it.
    """

    means: np.ndarray
    variances: np.ndarray
    thresholds: np.ndarray

    def sq_distances(self) -> np.ndarray:
        """(G, G): entry [h, g] is the squared distance between the means of h and g."""
        sq_norms = np.sum(self.means**2, axis=1)
        return np.maximum(sq_norms[:, None] - 2 * self.means @ self.means.T + sq_norms[None, :], 0.0)

    def threshold_radii_sq(self) -> np.ndarray:
        """(G,): the mean squared distance at which a group's log-likelihood equals its threshold."""
        constant = -0.5 * self.means.shape[1] * np.log(2 * np.pi * self.variances)
        return (constant - self.thresholds) * 2 * self.variances


def fit_gaussians(samples: np.ndarray, sample_group: np.ndarray, n_groups: int,
                  tail: float = LOWER_TAIL) -> GroupGaussians:
    """Fit one isotropic normal per group to (S, D) samples labelled by (S,) group ids in [0, G).

    A group whose samples coincide (one sample, or identical views) gets the smallest variance seen
    among the other groups, so its density stays finite and it still accepts near-duplicates.
    """
    samples = np.asarray(samples, dtype=np.float64)
    dim = samples.shape[1]
    counts = np.bincount(sample_group, minlength=n_groups).astype(np.float64)
    means = np.zeros((n_groups, dim))
    np.add.at(means, sample_group, samples)
    means /= np.maximum(counts, 1)[:, None]
    sq_distance = np.sum((samples - means[sample_group]) ** 2, axis=1)
    variances = np.bincount(sample_group, weights=sq_distance, minlength=n_groups) / np.maximum(counts, 1) / dim
    positive = variances[variances > 0]
    variances = np.where(variances > 0, variances, positive.min() if positive.size else 1e-8)
    own = _log_density(sq_distance, variances[sample_group], dim)  # each sample under its own group
    thresholds = np.empty(n_groups)
    order = np.lexsort((own, sample_group))  # by group, then ascending log-likelihood
    starts = np.searchsorted(sample_group[order], np.arange(n_groups))
    for group in range(n_groups):
        size = int(counts[group])
        lowest = own[order[starts[group]: starts[group] + max(1, int(np.ceil(tail * size)))]]
        thresholds[group] = lowest.mean() if size else np.inf
    return GroupGaussians(means, variances, thresholds)


def soft_match(embeddings: np.ndarray, groups: np.ndarray, views: np.ndarray | None = None,
               cannot_link: np.ndarray | None = None, eligible: np.ndarray | None = None,
               tail: float = LOWER_TAIL) -> np.ndarray:
    """One round of soft matching; returns new canonical group labels (N,).

    Args:
        embeddings: (N, D) L2-normalised instance embeddings under the current (adapted) model.
        groups: (N,) current labels; must not violate ``cannot_link``.
        views: optional (V, N, D) view embeddings, added to each group's samples.
        cannot_link: (K, 2) instance pairs that must stay apart; a match that would join them is skipped.
        eligible: (N,) boolean; ineligible (low-quality) instances are not matched this round.

    Only *mutually most likely* pairs of groups are candidates (each is the other's best match by the
    scale-free ratio below); a candidate pair is matched when either group passes the other's
    threshold. Letting every group pass every threshold it beats, as a literal reading of the paper
    allows, merged whole dev books into one group within two rounds: a group of restyled views has a
    wide radius and swallows its neighbours, which then widen further. Matches chain across rounds.
    """
    n = len(groups)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    groups = first_appearance_labels(groups, keep_unknown=False)
    active = np.unique(groups[eligible])
    if len(active) < 2:
        return groups
    local = np.searchsorted(active, groups[eligible])
    members = np.flatnonzero(eligible)
    spaces = [embeddings] + ([] if views is None else list(views))
    samples = np.concatenate([space[members] for space in spaces])
    sample_group = np.tile(local, len(spaces))
    fitted = fit_gaussians(samples, sample_group, len(active), tail)
    # For an isotropic normal, score >= threshold <=> |mean_h - mean_g|^2 <= radius(g)^2 (log-likelihood
    # is affine in squared distance), so ratio[h, g] <= 1 is the paper's test, free of any scale.
    ratio = fitted.sq_distances() / np.maximum(fitted.threshold_radii_sq()[None, :], 1e-12)
    np.fill_diagonal(ratio, np.inf)
    best = np.argmin(ratio, axis=1)
    mutual = np.flatnonzero((best[best] == np.arange(len(best))) & (np.arange(len(best)) < best))
    partner = best[mutual]
    accepted = (ratio[mutual, partner] <= 1.0) | (ratio[partner, mutual] <= 1.0)
    first_member = members[np.unique(local, return_index=True)[1]]
    union = union_from_labels(groups, cannot_link)
    for h, g in zip(mutual[accepted], partner[accepted], strict=True):
        union.union(int(first_member[h]), int(first_member[g]))
    return union.labels()
