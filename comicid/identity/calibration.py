"""Choosing the clustering threshold (``--threshold auto``) from labelled development instances.

The threshold decides how many identities a clusterer finds, and the right value depends on the
embedding model, so it is measured rather than guessed: on instances whose identity is known and
whose ``split`` is ``dev``, every value of a grid is tried and the one with the best mean per-scope
clustering score wins. Test rows are never looked at: :func:`calibrate_threshold` only sees what
its caller passes (pass dev rows only), and :func:`auto_threshold` selects ``split == "dev"`` itself.
Without enough dev rows the documented default of the method is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score

from comicid.identity.constraints import Constraints, IdentityInputError, check_embeddings
from comicid.identity.scopes import scope_keys

#: Thresholds used by ``--threshold auto`` when no dev rows are labelled. Agglomerative: a cosine
#: distance of 0.5 (average similarity 0.5) separates identities of an off-the-shelf backbone without
#: merging look-alikes on the development sets by a first reading; HDBSCAN: epsilon 0 (scikit-learn's
#: default: trust the density tree). Both are re-measured by ``benchmarks/`` on the development sets.
DEFAULT_THRESHOLDS: dict[str, float] = {"agglomerative": 0.5, "hdbscan": 0.0}

#: Values tried per method: cosine distance for agglomerative, euclidean-between-unit-vectors
#: epsilon (``sqrt(2 * cosine distance)``) for HDBSCAN.
DEFAULT_GRIDS: dict[str, np.ndarray] = {
    "agglomerative": np.round(np.arange(0.05, 1.2001, 0.05), 2),
    "hdbscan": np.round(np.arange(0.0, 1.0001, 0.05), 2),
}

OBJECTIVES = ("bcubed_f", "ami")


@dataclass(frozen=True)
class Calibration:
    """Outcome of a grid search: the chosen threshold and the whole curve (for reports)."""

    threshold: float
    score: float
    grid: np.ndarray  # (T,) thresholds tried
    scores: np.ndarray  # (T,) mean per-group objective
    n_instances: int
    n_groups: int


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold ``--threshold auto`` resolved to, and where it came from (``dev`` or ``default``)."""

    value: float
    source: str
    calibration: Calibration | None = None


def calibrate_threshold(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                        clusterer_factory: Callable[[float], object],
                        grid: np.ndarray = DEFAULT_GRIDS["agglomerative"], objective: str = "bcubed_f",
                        constraints: Constraints | None = None) -> Calibration:
    """Pick the grid threshold maximising the mean per-group ``objective`` on labelled instances.

    Args:
        embeddings: ``(N, D)`` embeddings of labelled **dev** instances only; the caller guarantees
            no test row is among them.
        labels: ``(N,)`` true identities (any hashable values).
        groups: ``(N,)`` scope key per instance; each group is clustered on its own, as in use.
        clusterer_factory: ``threshold -> clusterer`` with ``fit_predict(embeddings, constraints)``.
        grid: thresholds to try.
        objective: ``bcubed_f`` (default: rewards getting each instance's cluster right, robust to
            many singletons) or ``ami``.
        constraints: optional constraints over the N instances, subset per group.

    Groups with fewer than 2 instances are skipped (there is nothing to decide). When several
    thresholds tie for the best score, the middle one of them is taken: a flat optimum's centre is
    farthest from both over- and under-merging on unseen books.
    """
    if objective not in OBJECTIVES:
        raise IdentityInputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    unit = check_embeddings(embeddings)  # (N, D), L2-normalised
    labels, groups = np.asarray(labels), np.asarray(groups)
    if not len(labels) == len(groups) == len(unit):
        raise IdentityInputError(f"{len(unit)} embeddings, {len(labels)} labels and {len(groups)} groups differ in length")
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0:
        raise IdentityInputError("the threshold grid must be a non-empty 1-D sequence")
    constraints = constraints if constraints is not None else Constraints()
    constraints.check(len(unit))
    members = [positions for positions in pd.Series(groups).groupby(groups, sort=True).indices.values()
               if len(positions) >= 2]
    if not members:
        raise IdentityInputError("calibration needs a scope with at least 2 labelled instances")
    scores = np.array([
        np.mean([_score(labels[rows], clusterer_factory(float(value)).fit_predict(unit[rows], constraints.subset(rows)),
                        objective) for rows in members])
        for value in grid
    ])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    chosen = int(best[len(best) // 2])
    return Calibration(threshold=float(grid[chosen]), score=float(scores[chosen]), grid=grid, scores=scores,
                       n_instances=int(sum(len(rows) for rows in members)), n_groups=len(members))


def auto_threshold(embeddings: np.ndarray, table: pd.DataFrame, method: str = "agglomerative", scope: str = "book",
                   params: dict[str, object] | None = None, objective: str = "bcubed_f",
                   grid: np.ndarray | None = None, min_dev_instances: int = 20) -> ThresholdChoice:
    """Resolve ``--threshold auto`` for ``method``: calibrate on dev rows when there are enough.

    ``table`` has one row per instance in embedding order with ``identity`` and ``split`` columns
    (plus ``book``/``page``/``panel``/``sequence`` for scopes and cannot-links). Only rows with
    ``split == "dev"`` and a known identity are used; with fewer than ``min_dev_instances`` of them,
    or fewer than 2 identities, :data:`DEFAULT_THRESHOLDS` gives the value. ``params`` are the
    clusterer's other hyper-parameters, held fixed during the search.
    """
    from comicid.identity import CLUSTERERS, create_clusterer  # the registry imports this module

    if method not in CLUSTERERS:
        raise IdentityInputError(f"unknown clustering method {method!r}; choose one of {', '.join(sorted(CLUSTERERS))}")
    if len(table) != len(embeddings):
        raise IdentityInputError(f"the instance table has {len(table)} rows but there are {len(embeddings)} embeddings")
    default = ThresholdChoice(value=DEFAULT_THRESHOLDS[method], source="default")
    if not {"identity", "split"} <= set(table.columns):
        return default
    dev = np.flatnonzero((table["split"].astype(str).to_numpy() == "dev")
                         & (table["identity"].fillna("").astype(str).to_numpy() != ""))
    dev_table = table.iloc[dev].reset_index(drop=True)
    if len(dev) < min_dev_instances or dev_table["identity"].nunique() < 2:
        return default
    parameter = CLUSTERERS[method].threshold_parameter
    fixed = dict(params or {})

    def factory(value: float) -> object:
        return create_clusterer(method, **{**fixed, parameter: value})

    calibration = calibrate_threshold(
        np.asarray(embeddings)[dev], dev_table["identity"].astype(str).to_numpy(), scope_keys(dev_table, scope),
        factory, grid=DEFAULT_GRIDS[method] if grid is None else grid, objective=objective,
        constraints=Constraints.from_instances(dev_table))
    return ThresholdChoice(value=calibration.threshold, source="dev", calibration=calibration)


def _score(true: np.ndarray, predicted: np.ndarray, objective: str) -> float:
    predicted = np.asarray(predicted, dtype=np.int64).copy()
    noise = np.flatnonzero(predicted < 0)
    predicted[noise] = predicted.max(initial=-1) + 1 + np.arange(len(noise))  # unknown counts as a singleton
    if objective == "ami":
        return float(adjusted_mutual_info_score(true, predicted))
    return _bcubed_f(true, predicted)


def _bcubed_f(true: np.ndarray, predicted: np.ndarray) -> float:
    """B-cubed F1 (Bagga & Baldwin): harmonic mean of per-instance cluster precision and recall."""
    _, true_ids = np.unique(true, return_inverse=True)
    _, pred_ids = np.unique(predicted, return_inverse=True)
    overlap = np.zeros((true_ids.max() + 1, pred_ids.max() + 1))
    np.add.at(overlap, (true_ids, pred_ids), 1.0)
    squared = overlap ** 2
    precision = (squared.sum(axis=0) / overlap.sum(axis=0)).sum() / len(true)
    recall = (squared.sum(axis=1) / overlap.sum(axis=1)).sum() / len(true)
    return float(2 * precision * recall / (precision + recall))
