"""The per-scope silhouette cut: books drawn tighter or looser each get their own threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from comicid.identity import AgglomerativeClusterer
from comicid.identity.constraints import Constraints, IdentityInputError
from comicid.identity.silhouette import silhouette_cut


def _book(identities: int, per: int, between: float, within: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of ``identities`` characters: centres ``between`` apart around one direction (small =
    characters that look alike, as DiceBear faces do), members spread by ``within``."""
    rng = np.random.default_rng(seed)
    axis = np.zeros(64)
    axis[0] = 1.0
    centres = axis + between * rng.normal(size=(identities, 64)) / np.sqrt(64)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(identities), per)
    points = centres[truth] + within * rng.normal(size=(len(truth), 64)) / np.sqrt(64)
    return points / np.linalg.norm(points, axis=1, keepdims=True), truth


TIGHT = _book(8, 5, between=0.6, within=0.12, seed=1)  # look-alike characters, drawn consistently
LOOSE = _book(6, 8, between=3.0, within=0.8, seed=3)  # distinct characters, drawn in many ways


def test_no_constant_fits_both_books_but_each_books_own_cut_does() -> None:
    def count(unit: np.ndarray, **params: float) -> int:
        return len(set(AgglomerativeClusterer(**params).fit_predict(unit)))

    fits_both = [t for t in np.arange(0.05, 1.0, 0.025)
                 if count(TIGHT[0], distance_threshold=t) == 8 and count(LOOSE[0], distance_threshold=t) == 6]
    assert fits_both == []  # the premise: one threshold cannot get both cast sizes right
    assert count(TIGHT[0], distance_threshold=0.5, silhouette_tolerance=0.1) == 8
    assert count(LOOSE[0], distance_threshold=0.5, silhouette_tolerance=0.1) == 6
    tight, loose = (silhouette_cut(unit, 0.1).threshold for unit, _ in (TIGHT, LOOSE))
    assert tight is not None and loose is not None and tight < loose


def test_a_larger_tolerance_never_cuts_finer() -> None:
    unit = LOOSE[0]
    thresholds = [silhouette_cut(unit, tolerance).threshold for tolerance in (0.0, 0.1, 0.3, 0.6)]
    assert thresholds == sorted(thresholds)
    curve = silhouette_cut(unit, 0.0)
    chosen = int(np.flatnonzero(curve.grid == curve.threshold)[0])
    assert curve.silhouettes[chosen] == np.nanmax(curve.silhouettes)  # tolerance 0: a best cut (the coarsest)


def test_scopes_without_a_silhouette_fall_back_to_the_threshold() -> None:
    clusterer = AgglomerativeClusterer(distance_threshold=0.42, silhouette_tolerance=0.2)
    clusterer.fit(TIGHT[0][:2])
    assert clusterer.threshold_ == pytest.approx(0.42)  # 2 instances: no cut with 2 clusters and a pair
    assert silhouette_cut(TIGHT[0][:2], 0.2).threshold is None
    same = np.repeat(TIGHT[0][:1], 5, axis=0)  # one character, identical drawings: no positive silhouette
    assert silhouette_cut(same, 0.2).threshold is None
    assert AgglomerativeClusterer(distance_threshold=0.42, silhouette_tolerance=0.2).fit(same).threshold_ == 0.42


def test_cannot_links_hold_at_the_chosen_cut() -> None:
    unit, truth = TIGHT
    same_character = np.flatnonzero(truth == 0)[:2]
    constraints = Constraints(cannot_link=np.array([same_character]))
    labels = AgglomerativeClusterer(silhouette_tolerance=0.1).fit_predict(unit, constraints)
    assert labels[same_character[0]] != labels[same_character[1]]


def test_tolerance_is_a_checked_hyper_parameter() -> None:
    clusterer = AgglomerativeClusterer(silhouette_tolerance=0.2)
    assert clone(clusterer).get_params()["silhouette_tolerance"] == 0.2
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(IdentityInputError, match=r"silhouette_tolerance must be in \[0, 1\)"):
            AgglomerativeClusterer(silhouette_tolerance=bad).check_params()


def test_must_linked_instances_count_once_when_cutting() -> None:
    unit, truth = TIGHT
    copies = np.concatenate([unit, np.repeat(unit[:1], 30, axis=0)])  # 30 more drawings fused with instance 0
    links = np.array([[0, len(unit) + i] for i in range(30)])
    fused = silhouette_cut(copies, 0.1, constraints=Constraints(must_link=links))
    assert fused.threshold == silhouette_cut(unit, 0.1).threshold
