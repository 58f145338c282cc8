from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.errors import ConfigError
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.naming_calibration import fit_naming_threshold, naming_scores


def _sets(identities: int = 12, spread: float = 0.05, seed: int = 3) -> InstanceEmbeddings:
    """Two data sets of characters at random directions (cosine distance about 1 between characters),
    each drawn ``spread`` around its direction in two books."""
    rng = np.random.default_rng(seed)
    vectors, rows = [], []
    for name in ("a", "b"):
        centres = rng.normal(size=(identities, 48))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        for identity in range(identities):
            for instance in range(6):
                point = centres[identity] + spread * rng.normal(size=48)
                vectors.append(point / np.linalg.norm(point))
                rows.append({"identity": f"{name}{identity}", "book": f"{name}-book{instance % 2}", "set": name})
    return InstanceEmbeddings(pd.DataFrame(rows), np.stack(vectors).astype(np.float32), "toy")


def test_naming_scores_count_instances_named_right_and_extras_left_unnamed() -> None:
    vectors = np.array([[1, 0], [1, 0], [1, 0.1], [1, 0.1], [0.6, 0.8], [0.6, 0.8]], dtype=float)
    identity = np.array(["ann", "ann", "ann", "ann", "eve", "eve"])
    book = np.array(["b0", "b0", "b1", "b1", "b0", "b0"])
    grid = np.array([0.001, 0.1, 0.5])
    right, kept = naming_scores(vectors, identity, book, ["ann"], grid)
    # Ann enrols from her 3 most typical instances, one is left to name (distance ~0.002 to her prototype);
    # Eve (distance ~0.35 from Ann) stays unnamed until the threshold passes her
    assert list(right) == [0.0, 1.0, 1.0]
    assert list(kept) == [1.0, 1.0, 0.0]


def test_threshold_falls_between_one_character_and_two() -> None:
    embedded = _sets()
    fit = fit_naming_threshold(embedded)
    within = 0.05  # prototypes of one character: a few thousandths apart; of two characters: ~1
    assert within < fit.threshold < 0.7
    assert fit.score > 0.99 and fit.n_sets == 2 and set(fit.per_set) == {"a", "b"}
    assert fit == fit_naming_threshold(embedded)  # deterministic
    assert fit.curve[f"{fit.threshold:g}"] == round(fit.score, 4)
    assert set(fit.by_size) == {4, 8, 16} and all(within < value < 0.7 for value in fit.by_size.values())


def test_looser_drawings_need_a_looser_threshold() -> None:
    tight = fit_naming_threshold(_sets(spread=0.05))
    loose = fit_naming_threshold(_sets(spread=0.25))
    assert loose.curve["0.05"] < tight.curve["0.05"]  # loose drawings are missed at a strict threshold


def test_sets_too_small_to_simulate_a_bank_are_skipped_or_refused() -> None:
    embedded = _sets()
    small = embedded.subset((embedded.table["identity"].isin(["a0", "a1", "a2"]) |
                             (embedded.table["set"] == "b")).to_numpy())
    assert fit_naming_threshold(small).n_sets == 1  # set a: three identities cannot make a bank and extras
    with pytest.raises(ConfigError, match="naming threshold"):
        fit_naming_threshold(small.subset((small.table["set"] == "a").to_numpy()))
