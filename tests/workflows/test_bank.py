from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comicid.cli import main
from comicid.workflows.bank import (BankError, CharacterBank, apply_bank, name_clusters, naming_threshold,
                                    nearest_bank_size, suggest_exemplars)
from comicid.workflows.cluster import Assignment
from comicid.identity.curation import Curator
from comicid.store.collection import Collection
from comicid.web.toy import embed_toy


def test_suggestions_are_representative_or_spread_out() -> None:
    angles = np.array([0.0, 0.05, -0.05, 0.6, -0.6])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert set(suggest_exemplars(vectors, 3, "representative")) == {0, 1, 2}
    assert set(suggest_exemplars(vectors, 3, "diverse")) == {0, 3, 4}
    with pytest.raises(BankError):
        suggest_exemplars(vectors, 2, "random")


def test_naming_is_open_set_and_respects_panels() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0.02], [-1, 0]], dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    identity = np.array(["c0", "c0", "c1", "c1", "c2", "c3"], dtype=object)
    table = pd.DataFrame({"book": "b", "page": "p", "panel": ["k0", "k1", "k2", "k3", "k0", "k4"]})
    naming = name_clusters(vectors, identity, table, ["Ann", "Bob"], [np.array([[1.0, 0]]), np.array([[0.0, 1]])], 0.3)
    assert list(naming.identity) == ["bank/Ann", "bank/Ann", "bank/Bob", "bank/Bob", "c2", "c3"]
    # c2 looks like Ann but shares panel k0 with Ann's cluster; c3 matches no one: both stay new identities
    assert naming.names == {"bank/Ann": "Ann", "bank/Bob": "Bob"}


def test_bank_from_identity_names_clusters_of_another_collection(toy: Collection, tmp_path: Path) -> None:
    curator = Curator(toy)
    members = curator.state().members()
    identity = max((i for i in members if i.startswith("b0/")), key=lambda i: len(members[i]))
    bank_dir = tmp_path / "bank"
    assert main(["-q", "bank", "add", "Ann", "--bank", str(bank_dir), "--from", str(toy.root),
                 "--identity", identity, "--count", "3"]) == 0
    assert len(CharacterBank(bank_dir).characters()["Ann"].exemplars) == 3
    embedded = embed_toy(toy)
    table = toy.assignments()
    named = apply_bank(Assignment(table, dict(toy.meta()["assignments"])), embedded, CharacterBank(bank_dir))
    renamed = named.table.set_index("instance_key")["identity_id"]
    assert set(renamed[members[identity]]) == {"bank/Ann"}
    assert (renamed == "bank/Ann").sum() == len(members[identity])  # nobody else took the name
    toy.write_assignments(named.table, named.info)
    assert Curator(toy).state().roster["bank/Ann"].name == "Ann"


def test_naming_needs_a_cosine_threshold(toy: Collection, tmp_path: Path) -> None:
    bank = CharacterBank(tmp_path / "bank")
    with pytest.raises(BankError, match="agglomerative"):
        apply_bank(Assignment(toy.assignments(), {"method": "hdbscan", "threshold": 0.0}), embed_toy(toy), bank)


def test_bank_cli_enrols_images_lists_and_suggests(toy: Collection, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    parts = toy.instances()
    faces = parts[parts["kind"] == "face"]["crop_hash"].head(3).tolist()
    images = [str(toy.crop_path(key)) for key in faces]
    bank_dir = tmp_path / "bank"
    assert main(["-q", "bank", "add", "Cid", *images, "--bank", str(bank_dir)]) == 0
    bank = CharacterBank(bank_dir)
    character = bank.characters()["Cid"]
    assert [e["key"] for e in character.exemplars] == faces  # crops are content addressed like the collection's
    assert all((bank_dir / "crops" / f"{key}.png").is_file() for key in faces)
    vectors = next(iter((bank_dir / "vectors").glob("*.npz")))
    with np.load(vectors) as archive:
        assert sorted(archive.files) == sorted(faces)
        assert np.allclose(np.linalg.norm(np.stack([archive[k] for k in faces]), axis=1), 1.0, atol=1e-4)
    capsys.readouterr()
    assert main(["bank", "list", "--bank", str(bank_dir)]) == 0
    assert capsys.readouterr().out.strip() == "Cid\t3 exemplars"
    members = Curator(toy).state().members()
    identity = max(members, key=lambda i: len(members[i]))
    assert main(["bank", "suggest", str(toy.root), identity, "--count", "2"]) == 0
    suggested = capsys.readouterr().out.split()
    assert len(suggested) == 2 and set(suggested) <= {key.replace("\x1f", "/") for key in members[identity]}
    assert main(["bank", "add", "X", "--bank", str(bank_dir), "--from", str(toy.root)]) == 1  # no --identity
    assert main(["bank", "add", "X", str(tmp_path / "missing.png"), "--bank", str(bank_dir)]) == 1


def test_naming_threshold_is_the_callers_else_the_models_else_the_clusterings(toy: Collection, tmp_path: Path) -> None:
    embedded = embed_toy(toy)
    agglomerative = Assignment(toy.assignments(), {"method": "agglomerative", "threshold": 0.5})
    assert naming_threshold(agglomerative, embedded) == (0.5, "clustering")
    calibrated = dataclasses.replace(embedded, label_free_params={"bank": {"naming_threshold": 0.25}})
    assert naming_threshold(agglomerative, calibrated) == (0.25, "model")
    assert naming_threshold(agglomerative, calibrated, 0.1) == (0.1, "user")
    hdbscan = Assignment(toy.assignments(), {"method": "hdbscan", "threshold": 0.0})
    assert naming_threshold(hdbscan, calibrated) == (0.25, "model")  # any method can name at the model's value
    by_size = dataclasses.replace(embedded, label_free_params={"bank": {
        "naming_threshold": 0.25, "bank_size_4": 0.3, "bank_size_16": 0.2}})
    assert naming_threshold(agglomerative, by_size, characters=3) == (0.3, "model, measured for banks of 4")
    assert naming_threshold(agglomerative, by_size, characters=40) == (0.2, "model, measured for banks of 16")
    assert naming_threshold(agglomerative, by_size) == (0.25, "model")  # bank size unknown: the one value
    assert nearest_bank_size([4, 8, 16], 6) == 8 and nearest_bank_size([4, 8, 16], 12) == 16
    with pytest.raises(BankError, match="cosine distance"):
        naming_threshold(agglomerative, embedded, 0.0)


def test_a_strict_naming_threshold_names_nobody(toy: Collection, tmp_path: Path) -> None:
    members = Curator(toy).state().members()
    identity = max(members, key=lambda i: len(members[i]))
    bank_dir = tmp_path / "bank"
    assert main(["-q", "bank", "add", "Ann", "--bank", str(bank_dir), "--from", str(toy.root), "--identity", identity]) == 0
    assignment = Assignment(toy.assignments(), dict(toy.meta()["assignments"]))
    strict = apply_bank(assignment, embed_toy(toy), CharacterBank(bank_dir), threshold=1e-9)
    assert not strict.table["identity_id"].str.startswith("bank/").any()
    assert strict.info["bank"]["threshold"] == 1e-9 and strict.info["bank"]["threshold_source"] == "user"
    assert main(["-q", "cluster", str(toy.root), "--bank-threshold", "0.3"]) == 1  # no --bank to name from
    assert main(["-q", "cluster", str(toy.root), "--bank", str(bank_dir), "--bank-threshold", "0"]) == 1
