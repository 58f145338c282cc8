"""Per-scope clustering: global ids, per-scope constraints, determinism, assignment table I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comicid.identity import AgglomerativeClusterer, HDBSCANClusterer
from comicid.identity.constraints import IdentityInputError
from comicid.data.manifest import display_key
from comicid.identity.scopes import OUTPUT_COLUMNS, cluster_by_scope, output_table, scope_keys, write_assignments


def two_books() -> tuple[np.ndarray, pd.DataFrame]:
    """Two books drawn from the same two look-alike centres: per book 2 identities x 3 instances."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8))
    truth = np.tile(np.repeat([0, 1], 3), 2)
    points = centres[truth] + 0.05 * rng.normal(size=(12, 8))
    table = pd.DataFrame({
        "book": ["a"] * 6 + ["b"] * 6,
        "page": ["1", "1", "2", "1", "2", "2"] * 2,
        "panel": ["x", "", "", "", "", ""] * 2,
        "sequence": [""] * 12,
    })
    return points, table


def test_labels_are_globally_unique_across_books() -> None:
    points, table = two_books()
    identity, scores = cluster_by_scope(points, table, AgglomerativeClusterer(0.5), scope="book")
    assert identity.tolist() == ["a/c0000"] * 3 + ["a/c0001"] * 3 + ["b/c0000"] * 3 + ["b/c0001"] * 3
    assert ((scores > 0.5) & (scores <= 1)).all()


def test_collection_scope_merges_across_books() -> None:
    points, table = two_books()
    identity, _ = cluster_by_scope(points, table, AgglomerativeClusterer(0.5), scope="collection")
    assert identity.tolist() == (["c0000"] * 3 + ["c0001"] * 3) * 2


def test_page_scope_keys_and_cannot_links_per_scope() -> None:
    points, table = two_books()
    table.loc[[0, 1, 2], "panel"] = "x"  # same identity, same panel: must be split
    identity, _ = cluster_by_scope(points, table, AgglomerativeClusterer(0.5), scope="page")
    assert identity[0] != identity[1] and identity[0].startswith("a/1/")
    assert len(set(identity[:3])) == 3
    assert identity[6].startswith("b/1/")


def test_scope_keys() -> None:
    table = pd.DataFrame({"book": ["a", "a"], "page": ["1", ""], "sequence": ["s", "s"]})
    assert scope_keys(table, "page").tolist() == ["a/1", "a/"]
    assert scope_keys(table, "sequence").tolist() == ["a/s", "a/s"]
    assert scope_keys(table, "collection").tolist() == ["", ""]
    with pytest.raises(IdentityInputError, match="scope must be one of"):
        scope_keys(table, "panel")


def test_deterministic_and_noise_is_unknown() -> None:
    points, table = two_books()
    points = np.vstack([points, -points.mean(axis=0)])
    table = pd.concat([table, pd.DataFrame({"book": ["a"]})], ignore_index=True).fillna("")
    clusterer = HDBSCANClusterer(noise="unknown")
    first = cluster_by_scope(points, table, clusterer)
    second = cluster_by_scope(points, table, clusterer)
    assert first[0].tolist() == second[0].tolist() and np.array_equal(first[1], second[1])
    assert first[0][-1] == "" and first[1][-1] == 0.0


def test_mismatched_table_length_raises() -> None:
    points, table = two_books()
    with pytest.raises(IdentityInputError, match="11 rows but there are 12 embeddings"):
        cluster_by_scope(points, table.iloc[:11], AgglomerativeClusterer())


def test_must_link_across_scopes_is_refused() -> None:
    points, table = two_books()
    with pytest.raises(IdentityInputError, match="different book scopes"):
        cluster_by_scope(points, table, AgglomerativeClusterer(), must_link=[[0, 6]])


def test_must_link_within_a_scope_is_honoured() -> None:
    points, table = two_books()
    identity, _ = cluster_by_scope(points, table, AgglomerativeClusterer(0.5), must_link=[[0, 5]])
    assert identity[0] == identity[5]


def test_assignment_table_round_trips_as_csv_and_parquet_in_its_output_form(tmp_path: Path) -> None:
    keys = ["b\x1fi0", "b\x1e0123"]  # a named instance and an anonymous one, as stored
    table = pd.DataFrame({"instance_key": keys, "book": ["b", "b"],
                          "identity_id": np.array(["b/c0000", ""], dtype=object), "confidence": [0.9, 0.0]})
    for name in ("assignments.csv", "assignments.parquet"):
        path = write_assignments(table, tmp_path / name)
        back = pd.read_parquet(path) if name.endswith("parquet") else pd.read_csv(path, keep_default_na=False)
        assert back.columns.tolist() == list(OUTPUT_COLUMNS)
        assert back["instance"].tolist() == ["b/i0", "b/#0123"] == [display_key(key) for key in keys]
        assert back["identity"].tolist() == ["b/c0000", ""]
        assert back["confidence"].tolist() == [0.9, 0.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assignments.csv", "assignments.parquet"]  # no temp left


def test_output_table_needs_the_library_schema() -> None:
    with pytest.raises(IdentityInputError, match="needs columns identity_id"):
        output_table(pd.DataFrame({"instance_key": ["i0"], "identity": ["x"], "confidence": [1.0]}))
