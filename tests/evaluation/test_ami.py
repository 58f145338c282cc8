"""AMI by distinct sizes equals scikit-learn's, and stays fast with many clusters."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from comicid.evaluation import ami
from comicid.evaluation.ami import adjusted_mutual_info


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_scikit_learn_on_long_tailed_partitions(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = np.minimum(rng.zipf(1.6, 3000), 400)
    predicted = np.where(rng.random(3000) < 0.8, truth, rng.integers(0, 500, 3000))
    monkeypatch.setattr(ami, "DIRECT_MAX", 0)  # always the by-sizes path
    ours = adjusted_mutual_info(truth, predicted)
    assert ours == pytest.approx(adjusted_mutual_info_score(truth, predicted), abs=1e-9)


def test_identical_and_independent_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ami, "DIRECT_MAX", 0)
    labels = np.repeat(np.arange(50), 4)
    assert adjusted_mutual_info(labels, labels) == pytest.approx(1.0)
    shuffled = np.random.default_rng(0).permutation(labels)
    assert abs(adjusted_mutual_info(labels, shuffled)) < 0.05


def test_many_clusters_take_the_by_sizes_path() -> None:
    # scikit-learn would loop over 4 x 10^8 (class, cluster) pairs here; the by-sizes path finishes in
    # seconds (no timing is asserted: the machine is shared).
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 20_000, 200_000)
    predicted = np.where(rng.random(200_000) < 0.9, truth, rng.integers(0, 20_000, 200_000))
    table = contingency_matrix(truth, predicted, sparse=True)
    assert table.shape[0] * table.shape[1] > ami.DIRECT_MAX
    value = adjusted_mutual_info(truth, predicted, table)
    assert 0.5 < value < 1.0
