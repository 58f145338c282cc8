"""Threshold calibration: finds the gap between blobs, uses dev rows only, falls back to defaults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.identity import AgglomerativeClusterer, create_clusterer
from comicid.identity.agglomerative import cosine_distances
from comicid.identity.calibration import (
    DEFAULT_THRESHOLDS,
    auto_threshold,
    calibrate_threshold,
)
from comicid.identity.constraints import IdentityInputError


def blobs(n_identities: int, per_identity: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dim = 32
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:n_identities]  # orthonormal: cosine distance 1
    truth = np.repeat(np.arange(n_identities), per_identity)
    points = centres[truth] + spread * rng.normal(size=(len(truth), dim)) / np.sqrt(dim)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def gap(unit: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Any threshold strictly inside (largest within-identity, smallest between-identity distance) is perfect."""
    distance = cosine_distances(unit)
    same = truth[:, None] == truth[None, :]
    return float(distance[same].max()), float(distance[~same].min())


def test_calibration_lands_in_the_gap_between_identities() -> None:
    unit, truth = blobs(n_identities=5, per_identity=6, spread=0.5, seed=0)
    low, high = gap(unit, truth)
    assert 0.1 < low < high < 1.0
    result = calibrate_threshold(unit, truth, np.zeros(len(truth)), lambda t: AgglomerativeClusterer(t),
                                 grid=np.linspace(0.02, 1.5, 75))
    assert low < result.threshold < high
    assert abs(result.threshold - (low + high) / 2) < 0.15
    assert result.score == 1.0 and result.n_instances == 30 and result.n_groups == 1
    assert result.scores[-1] < 1.0 and result.scores[0] < 1.0  # both ends of the grid are wrong


def test_wider_spread_calibrates_to_a_larger_threshold() -> None:
    grid = np.linspace(0.02, 1.2, 60)
    chosen = []
    for spread in (0.3, 0.6):
        unit, truth = blobs(n_identities=5, per_identity=6, spread=spread, seed=1)
        chosen.append(calibrate_threshold(unit, truth, np.zeros(len(truth)), AgglomerativeClusterer, grid=grid,
                                          objective="ami").threshold)
    assert chosen[0] < chosen[1]


def test_groups_are_clustered_separately() -> None:
    unit, truth = blobs(n_identities=2, per_identity=4, spread=0.3, seed=2)
    groups = np.repeat(["a", "b"], 4)  # each group holds half of each identity... of one identity
    result = calibrate_threshold(unit, truth, groups, AgglomerativeClusterer, grid=[0.5, 1.9])
    assert result.n_groups == 2 and result.scores.tolist() == [1.0, 1.0]


def test_auto_threshold_uses_dev_rows_only() -> None:
    unit, truth = blobs(n_identities=6, per_identity=6, spread=0.4, seed=3)
    split = np.where(truth < 3, "dev", "test")
    table = pd.DataFrame({"identity": [f"id{t}" for t in truth], "split": split, "book": "b"})
    choice = auto_threshold(unit, table, "agglomerative", min_dev_instances=10)
    assert choice.source == "dev" and choice.calibration is not None
    assert choice.calibration.n_instances == int((split == "dev").sum())
    low, high = gap(unit[truth < 3], truth[truth < 3])
    assert low < choice.value < high


def test_auto_threshold_falls_back_to_the_default_without_dev_rows() -> None:
    unit, truth = blobs(n_identities=4, per_identity=6, spread=0.4, seed=4)
    only_test = pd.DataFrame({"identity": truth.astype(str), "split": "test", "book": "b"})
    assert auto_threshold(unit, only_test).value == DEFAULT_THRESHOLDS["agglomerative"]
    assert auto_threshold(unit, only_test, "hdbscan").source == "default"
    too_few = only_test.assign(split="dev")
    assert auto_threshold(unit, too_few, min_dev_instances=25).source == "default"
    assert auto_threshold(unit, pd.DataFrame({"book": ["b"] * 24})).source == "default"


def test_auto_threshold_tunes_the_hdbscan_epsilon() -> None:
    unit, truth = blobs(n_identities=4, per_identity=6, spread=0.4, seed=5)
    table = pd.DataFrame({"identity": truth.astype(str), "split": "dev"})
    choice = auto_threshold(unit, table, "hdbscan", params={"min_cluster_size": 2}, grid=[0.0, 0.5, 1.5])
    assert choice.source == "dev" and choice.value in (0.0, 0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"objective": "purity"}, "objective must be one of"),
    ({"grid": []}, "grid"),
    ({"groups": np.arange(4)}, "at least 2 labelled instances"),
])
def test_bad_calibration_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    unit, truth = blobs(n_identities=2, per_identity=2, spread=0.1, seed=6)
    arguments = {"groups": np.zeros(4), **kwargs}
    with pytest.raises(IdentityInputError, match=message):
        calibrate_threshold(unit, truth, clusterer_factory=AgglomerativeClusterer, **arguments)


def test_unknown_method_raises() -> None:
    with pytest.raises(IdentityInputError, match="unknown clustering method 'kmeans'"):
        auto_threshold(np.eye(2), pd.DataFrame({"book": ["a", "a"]}), "kmeans")
    assert create_clusterer("agglomerative", distance_threshold=0.3).distance_threshold == 0.3


def test_grid_values_the_clusterer_refuses_are_skipped() -> None:
    unit, truth = blobs(n_identities=3, per_identity=4, spread=0.3, seed=7)

    def factory(value: float) -> AgglomerativeClusterer:
        if value > 1.0:
            raise IdentityInputError("cannot run here")
        return AgglomerativeClusterer(value)

    result = calibrate_threshold(unit, truth, np.zeros(12), factory, grid=[0.5, 1.5])
    assert result.threshold == 0.5 and np.isnan(result.scores[1])
    with pytest.raises(IdentityInputError, match="cannot run here"):
        calibrate_threshold(unit, truth, np.zeros(12), factory, grid=[1.5])
