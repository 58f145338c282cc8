"""Algorithm pieces of the adaptive clusterer, on small Gaussian blobs (fast, numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.identity.adaptive.final import attach_pending, cluster_thresholds, merge_clusters
from comicid.identity.adaptive.groups import ConstrainedUnion, grow_groups
from comicid.identity.constraints import first_appearance_labels
from comicid.identity.adaptive.matching import _log_density, fit_gaussians, soft_match
from comicid.identity.adaptive.quality import dropout_views, low_quality_mask, quality_scores


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def blobs(k: int = 6, per: int = 5, dim: int = 32, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated identities on the unit sphere, ``per`` instances each: (N, D), (N,)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(k, dim)))
    labels = np.repeat(np.arange(k), per)
    return unit(centres[labels] + rng.normal(scale=spread, size=(k * per, dim))), labels


def jitter(x: np.ndarray, n_views: int, scale: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(x[None] + rng.normal(scale=scale / np.sqrt(x.shape[1]), size=(n_views,) + x.shape))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(first_appearance_labels(a, keep_unknown=False), first_appearance_labels(b, keep_unknown=False))


# --- groups ---------------------------------------------------------------------------------------

def test_union_refuses_a_cannot_link_even_through_a_chain() -> None:
    union = ConstrainedUnion(4, np.array([[0, 3]]))
    assert union.union(0, 1) and union.union(2, 3)
    assert not union.union(1, 2)  # would put 0 and 3 together
    assert same_partition(union.labels(), np.array([0, 0, 1, 1]))


def test_growth_joins_mutual_nearest_neighbours_only() -> None:
    # 0-1 are mutual neighbours; 2's neighbour is 1, but 1 prefers 0: 2 stays alone.
    x = unit(np.array([[1.0, 0.0], [0.99, 0.14], [0.8, 0.6], [-1.0, 0.05]]))
    grown = grow_groups(x, np.arange(4))
    assert grown[0] == grown[1] and len(set(grown.tolist())) == 3


def test_growth_respects_cannot_links_and_ineligible_instances() -> None:
    x = unit(np.array([[1.0, 0.0], [0.99, 0.14], [-1.0, 0.05], [-0.99, -0.1]]))
    assert len(set(grow_groups(x, np.arange(4), cannot_link=np.array([[0, 1]])).tolist())) == 3
    eligible = np.array([True, True, True, False])
    assert len(set(grow_groups(x, np.arange(4), eligible=eligible).tolist())) == 3


def test_growth_needs_the_match_to_hold_in_every_view() -> None:
    x = unit(np.array([[1.0, 0.0], [0.99, 0.14], [-1.0, 0.05], [-0.99, -0.1]]))
    views = np.stack([x, x[[0, 2, 1, 3]]])  # in the second view, instances 1 and 2 trade places
    grown = grow_groups(x, np.arange(4), views=views)
    assert grown[0] != grown[1]


# --- quality --------------------------------------------------------------------------------------

def test_quality_falls_as_views_spread_and_the_fence_finds_the_tail() -> None:
    x, _ = blobs(k=10, per=6)
    clean = jitter(x, 5, 0.2)
    noisy = clean.copy()
    noisy[:, :3] = jitter(x[:3], 5, 3.0)
    scores = quality_scores(noisy)
    assert scores[:3].max() < scores[3:].min()
    assert set(np.flatnonzero(low_quality_mask(scores))) == {0, 1, 2}
    assert not low_quality_mask(quality_scores(clean)).any() or low_quality_mask(quality_scores(clean)).sum() <= 2


def test_quality_of_identical_views_is_one_and_dropout_views_keep_shape() -> None:
    x, _ = blobs()
    assert np.allclose(quality_scores(np.stack([x, x])), 1.0)
    views = dropout_views(x, 3, seed=0)
    assert views.shape == (3,) + x.shape and np.allclose(np.linalg.norm(views, axis=2), 1.0, atol=1e-5)


# --- soft matching --------------------------------------------------------------------------------

def test_gaussian_thresholds_are_the_mean_of_the_lowest_quarter() -> None:
    samples = np.array([[0.0], [1.0], [-1.0], [3.0]])
    fitted = fit_gaussians(samples, np.zeros(4, dtype=np.int64), 1)
    own = _log_density((samples[:, 0] - samples.mean()) ** 2, fitted.variances, 1)
    assert np.isclose(fitted.thresholds[0], np.sort(own)[:1].mean())


def test_soft_match_joins_groups_of_one_identity_and_not_others() -> None:
    x, labels = blobs(k=4, per=6, spread=0.1)
    groups = labels * 2 + (np.arange(len(labels)) % 2)  # each identity split in two groups
    views = jitter(x, 4, 0.3)
    matched = soft_match(x, groups, views)
    assert same_partition(matched, labels)


def test_soft_match_never_joins_cannot_linked_groups() -> None:
    x, labels = blobs(k=2, per=6, spread=0.1)
    groups = labels * 2 + (np.arange(len(labels)) % 2)
    matched = soft_match(x, groups, jitter(x, 4, 0.3), cannot_link=np.array([[0, 1]]))
    assert matched[0] != matched[1]


# --- final merging --------------------------------------------------------------------------------

def test_thresholds_are_mean_similarity_among_a_clusters_samples() -> None:
    x = unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    _, sizes, thresholds = cluster_thresholds(x, np.array([0, 0, 1]))
    assert np.allclose(sizes, [2, 1]) and np.isclose(thresholds[0], 0.0) and np.isinf(thresholds[1])
    views = np.stack([x, x])  # each sample duplicated: a singleton's samples now agree perfectly
    _, _, with_views = cluster_thresholds(x, np.array([0, 0, 1]), views)
    assert np.isclose(with_views[1], 1.0) and np.isclose(with_views[0], (6 * 1 + 9 * 0) / 15)  # 6 same-crop pairs of 15


def test_merge_recovers_separated_identities_from_singletons() -> None:
    x, labels = blobs(k=6, per=5, spread=0.1)
    merged = merge_clusters(x, np.arange(len(x)), views=jitter(x, 2, 1.0))
    assert same_partition(merged, labels)


def test_merge_never_violates_a_cannot_link() -> None:
    x, labels = blobs(k=3, per=5, spread=0.1)
    cannot = np.array([[0, 1], [5, 6]])
    merged = merge_clusters(x, np.arange(len(x)), cannot, jitter(x, 2, 1.0))
    assert merged[0] != merged[1] and merged[5] != merged[6]
    assert all(len(set(labels[merged == c].tolist())) == 1 for c in set(merged.tolist()))  # still pure


def test_merge_keeps_apart_clusters_less_alike_than_their_own_members() -> None:
    x, labels = blobs(k=2, per=5, spread=0.1)
    merged = merge_clusters(x, labels, views=jitter(x, 2, 0.3))
    assert same_partition(merged, labels)


def test_pending_instances_join_a_fitting_cluster_or_stay_apart() -> None:
    x, labels = blobs(k=2, per=5, spread=0.1)
    far = unit(np.random.default_rng(3).normal(size=(1, x.shape[1])))
    x = np.concatenate([x, far])
    views = jitter(x, 2, 1.0)
    pending = np.zeros(len(x), dtype=bool)
    pending[[0, len(x) - 1]] = True
    out = attach_pending(x, np.concatenate([labels, [9]]), pending, views=views)
    assert out[0] == out[1] and out[-1] not in set(out[:-1].tolist())
    unknown = attach_pending(x, np.concatenate([labels, [9]]), pending, views=views, unknown=True)
    assert unknown[-1] == -1 and unknown[0] == unknown[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_is_independent_of_instance_order(seed: int) -> None:
    x, labels = blobs(k=5, per=4, spread=0.2, seed=seed)
    views = jitter(x, 2, 1.0)
    order = np.random.default_rng(seed).permutation(len(x))
    direct = merge_clusters(x, np.arange(len(x)), views=views)
    shuffled = merge_clusters(x[order], np.arange(len(x)), views=views[:, order])
    assert same_partition(direct[order], shuffled)
