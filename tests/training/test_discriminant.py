"""The discriminant head: the maths on blobs, the head it builds, the recipe end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from comicid.cli import main as cli_main
from comicid.data.manifest import read_manifest
from comicid.data.synth import generate_books
from comicid.errors import ConfigError
from comicid.models import load_embedding_model
from comicid.models.model_calibration import calibration_path
from comicid.training.config import load_config
from comicid.training.discriminant import DiscriminantConfig, extend_head, fit_discriminant
from comicid.workflows.discriminant import train_discriminant
from comicid.workflows.label_free import labelled_rows


def _styled_identities(n_ids: int, n_styles: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identity in 4 weak dimensions, drawing style in 12 strong ones: raw nearest neighbours follow style."""
    rng = np.random.default_rng(seed)
    identity = rng.normal(size=(n_ids, 4))
    style = 3.0 * rng.normal(size=(n_styles, 12))
    ids, styles = np.meshgrid(np.arange(n_ids), np.arange(n_styles), indexing="ij")
    ids, styles = ids.ravel(), styles.ravel()
    points = np.hstack([identity[ids], style[styles]]) + 0.1 * rng.normal(size=(len(ids), 16))
    return points, ids, styles


def _cross_style_rank1(points: np.ndarray, ids: np.ndarray, styles: np.ndarray) -> float:
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    similarity = unit @ unit.T
    similarity[styles[:, None] == styles[None, :]] = -np.inf  # rank only other styles' drawings
    return float(np.mean(ids[similarity.argmax(axis=1)] == ids))


def test_discriminant_finds_identity_directions_that_carry_across_styles() -> None:
    train, train_ids, _ = _styled_identities(40, 4, seed=0)
    test, test_ids, test_styles = _styled_identities(30, 4, seed=1)  # new identities, new styles
    fit = fit_discriminant(train, train_ids.astype(str), dims=4, shrinkage=0.1)
    projected = (test - fit.mean) @ fit.weight
    assert fit.weight.shape == (16, 4) and fit.n_identities == 40
    assert _cross_style_rank1(test, test_ids, test_styles) < 0.5
    assert _cross_style_rank1(projected, test_ids, test_styles) > 0.9


def test_dims_are_capped_and_singletons_dropped() -> None:
    points, ids, _ = _styled_identities(5, 3, seed=2)
    labels = ids.astype(str)
    labels[0] = "alone"  # one instance: no within-class information
    fit = fit_discriminant(points, labels, dims=64)
    assert fit.weight.shape[1] == 4 and fit.n_identities == 5 and fit.n_instances == len(points) - 1
    with pytest.raises(ConfigError, match="at least 3 identities"):
        fit_discriminant(points[:6], np.array(["a", "a", "a", "b", "b", "b"]))


def test_extended_head_keeps_the_old_embedding_and_weighs_the_new_block() -> None:
    points, ids, _ = _styled_identities(10, 3, seed=3)
    fit = fit_discriminant(points, ids.astype(str), dims=6)
    old = nn.Linear(16, 5)
    head = extend_head(old, 16, fit, points, weight=0.5)
    with torch.no_grad():
        out = head(torch.from_numpy(points).float()).numpy()
        before = old(torch.from_numpy(points).float()).numpy()
    assert head.out_features == 11
    np.testing.assert_allclose(out[:, :5], before, rtol=1e-5, atol=1e-5)
    ratio = np.linalg.norm(out[:, 5:], axis=1).mean() / np.linalg.norm(out[:, :5], axis=1).mean()
    assert ratio == pytest.approx(0.5, rel=1e-3)
    identity = extend_head(nn.Identity(), 16, fit, points)
    np.testing.assert_allclose(identity.weight.detach().numpy()[:16], np.eye(16), atol=1e-6)
    with pytest.raises(ConfigError, match="cannot extend"):
        extend_head(nn.Sequential(nn.Linear(16, 4)), 16, fit, points)


@pytest.mark.parametrize(("values", "message"), [
    ({"manifests": []}, "at least one labelled manifest"),
    ({"shrinkage": 1.5}, "shrinkage must be in"),
    ({"dims": 0}, "dims must be at least 1"),
    ({"weight": 0}, "weight must be positive"),
    ({"epochs": 3}, "unknown key"),
])
def test_config_errors_are_one_line(tmp_path: Path, values: dict[str, object], message: str) -> None:
    raw = {"base_model": "m.pt", "manifests": ["a.csv"], "output": "new.pt", **values}
    path = tmp_path / "discriminant.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    with pytest.raises(ConfigError, match=message):
        load_config(path, DiscriminantConfig)


def test_recipe_writes_a_model_whose_first_block_is_the_base_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    manifest = generate_books(tmp_path / "synth", books=2, characters=10, pages=2, seed=0, page_size=(400, 550),
                              progress=False)
    unfitted = generate_books(tmp_path / "other", books=1, characters=4, pages=2, seed=1, page_size=(400, 550),
                              progress=False)
    base_path = tiny_checkpoint
    config = DiscriminantConfig(base_model=str(base_path), manifests=[manifest], output=tmp_path / "new.pt", dims=4,
                                quantize=False, half=False, workdir=tmp_path / "work", calibration_manifests=[unfitted])
    result = train_discriminant(config, progress=False)
    frame = read_manifest(manifest)
    assert result.n_identities <= labelled_rows(frame)["identity"].nunique()
    assert result.out_dim == 8 + result.dims and result.int8_cosine is None
    calibration = json.loads(calibration_path(result.path.resolve()).read_text())  # its own label-free rule
    assert "not fitted on" in calibration["fit"]["rule"]
    measured_on = calibration["fit"]["data"]
    assert len(measured_on) == 2 and "cross-fitted" in measured_on[0] and "cross-fitted" not in measured_on[1]
    base, new = load_embedding_model(base_path), load_embedding_model(result.path)
    inputs = torch.randn(7, 32)
    with torch.no_grad():
        np.testing.assert_allclose(new.head(inputs)[:, :8].numpy(), base.head(inputs).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="is the base model itself"):
        train_discriminant(DiscriminantConfig(base_model=str(base_path), manifests=[manifest], output=base_path,
                                              quantize=False), progress=False)


def test_cli_refuses_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "d.yaml"
    config.write_text("base_model: m.pt\nmanifests: [a.csv]\noutput: new.pt\n")
    assert cli_main(["train", "discriminant", str(config), "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_the_shipped_recipe_file_loads() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "discriminant.yaml", DiscriminantConfig)
    assert (config.dims, config.shrinkage, config.weight) == (256, 0.3, 1.0)
    assert config.tail is not None and config.tail.steps == 600  # the recipe of benchmarks/train_default.py
    assert all(path.name.endswith(".csv") for path in config.manifests)


def test_held_out_embeddings_come_from_a_head_not_fitted_on_their_identity() -> None:
    import pandas as pd

    from comicid.workflows.discriminant import HeadInputs, held_out_embeddings, identity_halves

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 24))
    ids = np.repeat(np.arange(40), 6)
    inputs = (centres[ids] + 1.5 * rng.normal(size=(len(ids), 24))).astype(np.float32)
    labels = np.array([f"m0|{i}" for i in ids])
    data = HeadInputs(inputs, labels, pd.DataFrame({"identity": ids.astype(str), "book": "m0:b"}), ["set"])
    config = DiscriminantConfig(base_model="x", manifests=["x"], output="y", dims=16)
    base = nn.Identity()
    held_out = held_out_embeddings(base, data, config, "m").vectors
    np.testing.assert_allclose(np.linalg.norm(held_out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(identity_halves(labels), identity_halves(labels.copy()))  # stable
    seen = extend_head(base, 24, fit_discriminant(inputs, labels, 16), inputs).eval()
    with torch.no_grad():
        fitted = seen(torch.from_numpy(inputs)).numpy()
    fitted /= np.linalg.norm(fitted, axis=1, keepdims=True)

    def same_identity_similarity(unit: np.ndarray) -> float:
        similarity = unit @ unit.T
        same = (ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)
        return float(similarity[same].mean())

    # the bias cross-fitting removes: a head draws the identities it was fitted on tighter than new ones
    assert same_identity_similarity(fitted) > same_identity_similarity(held_out) + 0.05
