"""Label-free thresholds: measured on labelled books, stored beside the checkpoint, used by --threshold auto."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comicid.data.synth import generate_books
from comicid.errors import ModelError
from comicid.workflows.cluster import assign_identities, describe_threshold
from comicid.identity.calibration import DEFAULT_GRIDS, auto_threshold, calibrate_threshold
from comicid.identity import AgglomerativeClusterer
from comicid.models import load_embedding_model
from comicid.models.embed import fuse_parts
from comicid.models.model_calibration import calibration_path, write_calibration
from comicid.store.collection import Collection
from comicid.workflows.embed import embed_collection
from comicid.store.ingest import ingest
from comicid.data.manifest import read_manifest
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.label_free import (calibrate_model, fit_label_free_threshold, fit_silhouette_tolerance,
                                          labelled_rows)


def _blobs(n: int, per: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(32, 32)))[0][:n]
    truth = np.repeat(np.arange(n), per)
    points = centres[truth] + spread * rng.normal(size=(len(truth), 32)) / np.sqrt(32)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


def test_cluster_count_objective_finds_the_true_cast_size() -> None:
    unit, truth = _blobs(5, 6, 0.5, seed=0)
    result = calibrate_threshold(unit, truth, np.zeros(len(truth)), AgglomerativeClusterer,
                                 grid=np.linspace(0.05, 1.5, 30), objective="cluster_count")
    predicted = AgglomerativeClusterer(result.threshold).fit_predict(unit)
    assert result.score == 0.0 and len(set(predicted)) == 5
    assert result.scores[0] < 0 and result.scores[-1] < 0  # too many / too few clusters at the ends


def test_model_threshold_replaces_the_constant_only_without_dev_labels() -> None:
    unit, truth = _blobs(4, 6, 0.4, seed=4)
    only_test = pd.DataFrame({"identity": truth.astype(str), "split": "test", "book": "b"})
    choice = auto_threshold(unit, only_test, label_free=0.37)
    assert (choice.value, choice.source) == (0.37, "model")
    with_dev = only_test.assign(split="dev")
    assert auto_threshold(unit, with_dev, label_free=0.37, min_dev_instances=10).source == "dev"


def test_weighted_fusion_leans_towards_the_heavier_part() -> None:
    face, body = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    parts = np.stack([face * 3, body, body * 5])  # instance 0: face + body, instance 1: body only
    index = np.array([0, 0, 1])
    plain = fuse_parts(parts, index, 2)
    weighted = fuse_parts(parts, index, 2, part_weights=np.array([0.25, 1.0, 0.25]))
    assert plain[0, 0] == pytest.approx(plain[0, 1])
    assert weighted[0, 1] > 3 * weighted[0, 0]  # body weighs four times the face
    np.testing.assert_allclose(weighted[1], plain[1])  # a lone part is unaffected
    with pytest.raises(ValueError, match="positive"):
        fuse_parts(parts, index, 2, part_weights=np.array([0.0, 1.0, 1.0]))


def test_calibration_file_is_tied_to_its_checkpoint(tmp_path: Path, tiny_checkpoint: Path) -> None:
    path = tiny_checkpoint
    sha = load_embedding_model(path).checkpoint_sha256
    write_calibration(calibration_path(path), "m", sha, {"fp32": {"agglomerative": 0.33}}, part_weights={"face": 0.5})
    model = load_embedding_model(path)
    assert model.label_free_thresholds == {"agglomerative": 0.33} and model.part_weights == {"face": 0.5}
    write_calibration(calibration_path(path), "m", "0" * 64, {"fp32": {"agglomerative": 0.33}})
    with pytest.warns(UserWarning, match="another checkpoint"):
        stale = load_embedding_model(path)
    assert stale.label_free_thresholds == {} and stale.part_weights is None
    calibration_path(path).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelError, match="not a comicid model calibration"):
        load_embedding_model(path)


def test_calibrate_model_measures_on_non_test_rows_and_cluster_uses_it(tmp_path: Path, tiny_checkpoint: Path) -> None:
    manifest = generate_books(tmp_path / "synth", books=1, characters=4, pages=2, seed=0, page_size=(400, 550),
                              progress=False)
    checkpoint = tiny_checkpoint
    written = calibrate_model(checkpoint, [manifest], workdir=tmp_path / "work", progress=False)
    data = json.loads(written.read_text())
    assert written == calibration_path(checkpoint.resolve()) and set(data["thresholds"]) == {"fp32"}
    frame = read_manifest(manifest)
    assert data["fit"]["fp32/agglomerative"]["instances"] == labelled_rows(frame).groupby("instance").ngroups
    threshold = data["thresholds"]["fp32"]["agglomerative"]
    assert threshold in DEFAULT_GRIDS["agglomerative"]
    # the bank-naming threshold is measured on the same rows; too few dev characters to simulate a bank and
    # extras, so this model has none (naming falls back to the clustering threshold) and the file says why
    naming = data["fit"]["fp32/bank"]
    assert naming["naming_threshold"] is None and "four" in naming["skipped"] and "bank" not in data["rules"]

    model = load_embedding_model(checkpoint)  # a user's book: no dev labels at all
    assert model.label_free_params.get("bank", {}).get("naming_threshold") == naming["naming_threshold"]
    collection = Collection.create(tmp_path / "book")
    ingest(frame.assign(split="", identity=""), collection, progress=False)
    embedded = embed_collection(collection, model, progress=False)
    assignment = assign_identities(embedded, progress=False)
    assert assignment.info["threshold"] == threshold and assignment.info["threshold_source"] == "model"


def _two_scale_books() -> InstanceEmbeddings:
    """Labelled books of two data sets: look-alike characters drawn tightly, and distinct characters
    drawn loosely (the spread of the development sets, in miniature; see tests/identity/test_silhouette)."""
    rng = np.random.default_rng(7)
    vectors, rows = [], []
    for name, (identities, per, between, within) in {"tight": (8, 5, 0.6, 0.12), "loose": (6, 8, 3.0, 0.8)}.items():
        for book in range(2):
            axis = np.eye(64)[book]
            centres = axis + between * rng.normal(size=(identities, 64)) / 8
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            truth = np.repeat(np.arange(identities), per)
            points = centres[truth] + within * rng.normal(size=(len(truth), 64)) / 8
            vectors.append(points / np.linalg.norm(points, axis=1, keepdims=True))
            rows += [{"identity": f"{name}{book}-{i}", "book": f"{name}{book}", "set": name, "split": "dev"} for i in truth]
    table = pd.DataFrame(rows).assign(page="", panel="", sequence="", instance_key=lambda t: t.index.astype(str))
    return InstanceEmbeddings(table, np.concatenate(vectors).astype(np.float32), "two-scale")


def test_the_silhouette_rule_is_kept_only_where_it_beats_the_constant() -> None:
    embedded = _two_scale_books()
    constant = fit_label_free_threshold(embedded)
    rule = fit_silhouette_tolerance(embedded, constant.threshold)
    assert rule.tolerance is not None and rule.score > rule.scores["none"]  # one constant cannot fit both sets
    tight_only = embedded.subset((embedded.table["set"] == "tight").to_numpy())
    alone = fit_silhouette_tolerance(tight_only, fit_label_free_threshold(tight_only).threshold)
    assert alone.scores["none"] == 0.0 and alone.tolerance is None  # the constant is right: ties keep it


def test_the_models_rule_clusters_unlabelled_books_only(tmp_path: Path, tiny_checkpoint: Path) -> None:
    sha = load_embedding_model(tiny_checkpoint).checkpoint_sha256
    write_calibration(calibration_path(tiny_checkpoint), "m", sha, {"fp32": {"agglomerative": 0.5}},
                      rules={"agglomerative": {"silhouette_tolerance": 0.1}, "bank": {"naming_threshold": 0.4}})
    model = load_embedding_model(tiny_checkpoint)
    assert model.label_free_params == {"agglomerative": {"silhouette_tolerance": 0.1}, "bank": {"naming_threshold": 0.4}}
    books = _two_scale_books()
    rule = {"label_free_thresholds": dict(model.label_free_thresholds), "label_free_params": model.label_free_params}
    unlabelled = InstanceEmbeddings(books.table.assign(split="", identity=""), books.vectors, "m", **rule)
    assignment = assign_identities(unlabelled, progress=False)
    assert assignment.info["params"]["silhouette_tolerance"] == 0.1
    assert describe_threshold(assignment.info) == "silhouette cut per book (tolerance 0.1), else 0.5 (model)"
    truth = books.table.groupby("book")["identity"].nunique()
    found = assignment.table.groupby("book")["identity_id"].nunique()
    assert (found == truth).all()  # each book its own cut: 8 look-alikes and 6 distinct characters
    labelled = InstanceEmbeddings(books.table, books.vectors, "m", **rule)
    calibrated = assign_identities(labelled, progress=False)
    assert calibrated.info["threshold_source"] == "dev" and "silhouette_tolerance" not in calibrated.info["params"]
    assert describe_threshold(calibrated.info).endswith("(dev)")
    assert assign_identities(unlabelled, params={"silhouette_tolerance": 0.3},
                             progress=False).info["params"]["silhouette_tolerance"] == 0.3  # the caller wins
