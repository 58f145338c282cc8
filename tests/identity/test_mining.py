"""Identity mining: the farthest-first anchor rule, the assignment radius, panels never sharing a label."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.identity import CLUSTERERS, Constraints, IdentityInputError, create_clusterer
from comicid.identity.mining import farthest_first_anchors, mine_identities


def _clusters(centres: int = 4, per: int = 10, spread: float = 0.05, dim: int = 16, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    centre = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:centres]  # orthonormal: centres sqrt(2) apart
    truth = np.repeat(np.arange(centres), per)
    points = centre[truth] + spread * rng.normal(size=(len(truth), dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def test_anchors_are_farther_than_d_n_apart_and_cover_everything_within_d_n() -> None:
    unit, _ = _clusters(centres=5, spread=0.3)
    anchors = farthest_first_anchors(unit, d_n=0.9)
    between = np.linalg.norm(unit[anchors][:, None] - unit[anchors][None], axis=-1)
    assert (between[~np.eye(len(anchors), dtype=bool)] > 0.9).all()
    to_anchor = np.linalg.norm(unit[:, None] - unit[anchors][None], axis=-1).min(axis=1)
    assert (to_anchor <= 0.9 + 1e-9).all()  # the traversal stopped only when no row was farther


def test_tight_clusters_are_recovered_and_far_rows_stay_unlabelled() -> None:
    unit, truth = _clusters()
    outlier = np.zeros((1, unit.shape[1]))
    outlier[0, -1] = 1.0  # orthogonal to every centre
    labels = mine_identities(np.vstack([unit, outlier]), d_n=0.8, d_p=0.5)
    assert labels.dtype == np.int64
    assert len(np.unique(labels[:-1])) == 4
    assert all(len(np.unique(labels[:-1][truth == c])) == 1 for c in range(4))
    # The outlier becomes its own anchor (it is farther than d_n from all), so it is labelled alone.
    assert labels[-1] not in labels[:-1]


def test_rows_beyond_d_p_are_unlabelled() -> None:
    unit, _ = _clusters(centres=2, per=20, spread=0.25)
    labels = mine_identities(unit, d_n=1.2, d_p=0.1)
    assert (labels == -1).any()
    assert (labels >= 0).sum() >= 2  # the anchors themselves


def test_one_panels_instances_never_share_a_label() -> None:
    unit, truth = _clusters(centres=3, per=6, spread=0.02)
    panel = np.array([f"p{i // 6}-{i % 3}" for i in range(len(unit))], dtype=object)  # same identity in a panel
    free = mine_identities(unit, d_n=0.8, d_p=0.5)
    assert any(len(np.unique(free[panel == p])) < (panel == p).sum() for p in np.unique(panel))
    labels = mine_identities(unit, d_n=0.8, d_p=0.5, groups=panel)
    for name in np.unique(panel):
        known = labels[(panel == name) & (labels >= 0)]
        assert len(known) == len(np.unique(known))
    assert (labels >= 0).sum() < len(labels)  # the losers of each panel fell back to unlabelled


def test_closer_instance_of_a_panel_keeps_the_anchor() -> None:
    anchor_a, anchor_b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])  # two identities, sqrt(2) apart
    near = np.array([0.99, 0.0, 0.141])
    nearer = np.array([0.999, 0.0, 0.0447])
    rows = np.vstack([anchor_a, anchor_b, near, nearer])
    assert sorted(farthest_first_anchors(rows / np.linalg.norm(rows, axis=1, keepdims=True), d_n=1.0)) == [0, 1]
    labels = mine_identities(rows, d_n=1.0, d_p=0.3, groups=np.array(["a", "b", "c", "c"], dtype=object))
    assert labels[3] == labels[0] and labels[2] == -1
    assert (mine_identities(rows, d_n=1.0, d_p=0.3)[2:] == labels[0]).all()  # without the panel both join


def test_scales_without_a_square_matrix() -> None:
    rng = np.random.default_rng(1)
    unit = rng.normal(size=(20000, 8)).astype(np.float32)
    labels = mine_identities(unit, d_n=1.3, d_p=0.6)
    assert labels.shape == (20000,) and labels.max() >= 1


def test_bad_radii_are_clear_errors() -> None:
    unit, _ = _clusters()
    with pytest.raises(IdentityInputError, match="d_p"):
        mine_identities(unit, d_n=0.3, d_p=0.5)
    with pytest.raises(IdentityInputError, match="one value per row"):
        mine_identities(unit, groups=np.zeros(3))
    with pytest.raises(IdentityInputError, match="d_n"):
        create_clusterer("mining", d_n=-1.0).check_params()  # checked at fit, or when asked


def test_mining_clusterer_is_registered_and_honours_constraints() -> None:
    assert "mining" in CLUSTERERS and CLUSTERERS["mining"].threshold_parameter == "d_p"
    unit, truth = _clusters(centres=2, per=5, spread=0.02)
    cannot = np.array([[0, 1]])
    must = np.array([[2, 7]])  # across true clusters: the must-link wins over the features
    labels = create_clusterer("mining", d_n=0.8, d_p=0.5).fit_predict(unit, Constraints(cannot_link=cannot,
                                                                                      must_link=must))
    assert labels[0] != labels[1] or labels[0] == -1
    assert labels[2] == labels[7]
    assert labels[0] == 0 or labels[0] == -1  # numbered by first appearance
