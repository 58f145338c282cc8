"""Ensembles: parsing --model lists and files, the weighted combination, distinct ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comicid.errors import ConfigError
from comicid.models.ensemble import (
    Ensemble,
    combine_embeddings,
    is_ensemble,
    load_model,
    parse_ensemble,
)


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_combined_cosine_is_the_weighted_mean_of_member_cosines() -> None:
    a, b = _unit(7, 5, 0), _unit(7, 3, 1)
    combined = combine_embeddings([a, b], np.array([3.0, 1.0]))
    assert combined.shape == (7, 8) and combined.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(combined, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(combined @ combined.T, 0.75 * (a @ a.T) + 0.25 * (b @ b.T), atol=1e-6)


def test_zero_rows_stay_defined_and_mismatches_are_errors() -> None:
    a, b = _unit(3, 4, 2), _unit(3, 4, 3)
    a[1] = 0.0
    combined = combine_embeddings([a, b], (0.5, 0.5))
    assert np.isfinite(combined).all()
    np.testing.assert_allclose(combined[1, 4:], b[1], atol=1e-6)  # only the member with evidence speaks
    with pytest.raises(ConfigError, match="number of instances"):
        combine_embeddings([a, b[:2]], (0.5, 0.5))


def test_parsing_lists_weights_and_files(tmp_path: Path) -> None:
    assert not is_ensemble("default") and is_ensemble("a,b") and is_ensemble("e.yaml")
    spec = parse_ensemble("tiny-cnn=3, color-hist=1")
    assert spec.models == ("tiny-cnn", "color-hist") and spec.weights == (0.75, 0.25)
    assert parse_ensemble("tiny-cnn,color-hist").weights == (0.5, 0.5)
    (tmp_path / "m.pt").write_bytes(b"")
    file = tmp_path / "e.yaml"
    file.write_text("members:\n  - {model: tiny-cnn, weight: 2}\n  - {model: m.pt}\n", encoding="utf-8")
    spec = parse_ensemble(file)
    assert spec.models == ("tiny-cnn", str(tmp_path / "m.pt")) and spec.weights == pytest.approx((2 / 3, 1 / 3))


@pytest.mark.parametrize(("text", "message"), [
    ("tiny-cnn,tiny-cnn", "listed twice"), ("tiny-cnn=x,color-hist", "must be a number"),
    ("tiny-cnn=0,color-hist=0", "positive"), ("tiny-cnn,", "empty member"), ("missing.yaml", "not found"),
])
def test_bad_ensembles_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ensemble(text)


def test_loaded_ensemble_has_its_own_id_and_dimension() -> None:
    ensemble = load_model("tiny-cnn=1,color-hist=3")
    assert isinstance(ensemble, Ensemble)
    assert ensemble.model_id == "ensemble(tiny-cnn*0.25+color-hist*0.75)"
    assert ensemble.out_dim == sum(member.out_dim for member in ensemble.members)
    assert load_model("tiny-cnn").model_id == "tiny-cnn"
    assert load_model("color-hist,tiny-cnn").model_id != ensemble.model_id
