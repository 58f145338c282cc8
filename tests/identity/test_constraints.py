"""Constraints from panels, index checks, subsetting, and the shared embedding checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.errors import ComicidError
from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    check_embeddings,
    first_appearance_labels,
)


def test_same_panel_instances_are_cannot_linked_and_unknown_panels_are_not() -> None:
    table = pd.DataFrame({
        "book": ["a", "a", "a", "a", "b", "a", "a"],
        "page": ["1", "1", "1", "2", "1", "1", "1"],
        "panel": ["p", "p", "q", "p", "p", "", ""],
    })
    constraints = Constraints.from_instances(table)
    assert constraints.cannot_link.tolist() == [[0, 1]]
    assert constraints.must_link.shape == (0, 2)


def test_three_in_a_panel_give_all_pairs_and_must_links_pass_through() -> None:
    table = pd.DataFrame({"book": ["a"] * 4, "page": ["1"] * 4, "panel": ["p", "p", "p", "q"]})
    constraints = Constraints.from_instances(table, must_link=[[2, 3]])
    assert constraints.cannot_link.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert constraints.must_link.tolist() == [[2, 3]]


def test_missing_columns_count_as_unknown() -> None:
    assert len(Constraints.from_instances(pd.DataFrame({"book": ["a", "a"]})).cannot_link) == 0


def test_subset_renumbers_and_drops_pairs_leaving_the_subset() -> None:
    constraints = Constraints(cannot_link=[[0, 3], [3, 5], [1, 2]], must_link=[[5, 0]])
    part = constraints.subset(np.array([3, 5, 0]))
    assert part.cannot_link.tolist() == [[2, 0], [0, 1]]
    assert part.must_link.tolist() == [[1, 2]]


@pytest.mark.parametrize("pairs, message", [
    ([[0, 9]], "out of range"),
    ([[-1, 0]], "out of range"),
])
def test_out_of_range_indices_raise(pairs: list[list[int]], message: str) -> None:
    with pytest.raises(IdentityInputError, match=message):
        Constraints(cannot_link=pairs).check(3)


@pytest.mark.parametrize("pairs, message", [
    ([[0, 1, 2]], r"shape \(K, 2\)"),
    ([[0.5, 1.0]], "integer"),
    ([[2, 2]], "cannot-linked to itself"),
])
def test_malformed_pairs_raise_user_errors(pairs: list[list[float]], message: str) -> None:
    with pytest.raises(ComicidError, match=message):
        Constraints(cannot_link=pairs)


def test_cannot_link_inside_a_must_link_group_is_a_contradiction() -> None:
    constraints = Constraints(cannot_link=[[0, 2]], must_link=[[0, 1], [1, 2]])
    with pytest.raises(IdentityInputError, match="instances 0 and 2"):
        constraints.must_link_groups(3)


def test_must_link_groups_close_transitively() -> None:
    groups = Constraints(must_link=[[3, 1], [1, 4]]).must_link_groups(5)
    assert groups.tolist() == [0, 1, 2, 1, 1]


@pytest.mark.parametrize("embeddings, message", [
    (np.ones(4), "2-D"),
    (np.array([[1.0, np.nan]]), "row 0 holds NaN"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), "row 1 is all zeros"),
])
def test_bad_embeddings_raise_readable_errors(embeddings: np.ndarray, message: str) -> None:
    with pytest.raises(IdentityInputError, match=message):
        check_embeddings(embeddings)
    assert issubclass(IdentityInputError, ValueError) and issubclass(IdentityInputError, ComicidError)


def test_embeddings_are_renormalised() -> None:
    unit = check_embeddings(np.array([[3.0, 4.0]], dtype=np.float32))
    assert unit.dtype == np.float64 and np.allclose(unit, [[0.6, 0.8]])


def test_labels_are_renumbered_by_first_appearance() -> None:
    assert first_appearance_labels(np.array([7, -1, 3, 7, 0])).tolist() == [0, -1, 1, 0, 2]
