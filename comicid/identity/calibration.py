"""Choosing the clustering threshold (``--threshold auto``) from labelled development instances.

The threshold decides how many identities a clusterer finds, and the right value depends on the
embedding model, so it is measured rather than guessed: on instances whose identity is known and
whose ``split`` is ``dev``, every value of a grid is tried and the one with the best mean per-scope
clustering score wins. Test rows are never looked at: :func:`calibrate_threshold` only sees what
its caller passes (pass dev rows only), and :func:`auto_threshold` selects ``split == "dev"`` itself.
Without enough dev rows the threshold the embedding model carries for the method is used (measured
on labelled data when the model was built, :mod:`comicid.workflows.label_free`), and for a model
without one the documented default of the method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from comicid.evaluation.clustering import clustering_metrics
from comicid.identity.constraints import Constraints, IdentityInputError, check_embeddings
from comicid.identity.registry import CLUSTERERS, create_clusterer
from comicid.identity.scopes import scope_keys

#: Thresholds used by ``--threshold auto`` when no dev rows are labelled. Agglomerative: a cosine
#: distance of 0.5 (average similarity 0.5) separates identities of an off-the-shelf backbone without
#: merging look-alikes on the development sets by a first reading; HDBSCAN: epsilon 0 (scikit-learn's
#: default: trust the density tree). Both are re-measured by ``benchmarks/`` on the development sets.
DEFAULT_THRESHOLDS: dict[str, float] = {"agglomerative": 0.5, "hdbscan": 0.0, "graph": 0.5}

#: Values tried per method: cosine distance for agglomerative, euclidean-between-unit-vectors
#: epsilon (``sqrt(2 * cosine distance)``) for HDBSCAN and the assignment radius ``d_p`` for mining.
DEFAULT_GRIDS: dict[str, np.ndarray] = {
    "agglomerative": np.round(np.arange(0.05, 1.2001, 0.05), 2),
    "hdbscan": np.round(np.arange(0.0, 1.0001, 0.05), 2),
    "mining": np.round(np.arange(0.1, 1.4001, 0.05), 2),  # d_p; values >= d_n are refused and skipped
    "graph": np.round(np.arange(0.05, 1.2001, 0.05), 2),  # the same cosine-distance scale as agglomerative
}

#: ``cluster_count`` scores ``-|log(predicted / true clusters)|``: a cast of the right size, whatever its
#: members (what a label-free default must get right first; see docs/CLUSTERING.md).
OBJECTIVES = ("bcubed_f", "ami", "cluster_count")


@dataclass(frozen=True)
class Calibration:
    """Outcome of a grid search: the chosen threshold and the whole curve (for reports)."""

    threshold: float
    score: float
    grid: np.ndarray  # (T,) thresholds tried
    scores: np.ndarray  # (T,) mean per-group objective; NaN where the clusterer refused the value
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
        objective: a key of :func:`comicid.evaluation.clustering.clustering_metrics` (predicted -1
            counts as a singleton there): ``bcubed_f`` (default: rewards getting each instance's
            cluster right, robust to many singletons) or ``ami``.
        constraints: optional constraints over the N instances, subset per group.

    Groups with fewer than 2 instances are skipped (there is nothing to decide). When several
    thresholds tie for the best score, the middle one of them is taken: a flat optimum's centre is
    farthest from both over- and under-merging on unseen books. A value at which the clusterer
    raises :class:`IdentityInputError` (e.g. an HDBSCAN epsilon hitting scikit-learn #33219) scores
    NaN and is not chosen; if every value fails, the first error is raised.
    """
    if objective not in OBJECTIVES:
        raise IdentityInputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    unit = check_embeddings(embeddings)  # (N, D), L2-normalised
    labels, groups = np.asarray(labels), np.asarray(groups)
    if not len(labels) == len(groups) == len(unit):
        raise IdentityInputError(
            f"{len(unit)} embeddings, {len(labels)} labels and {len(groups)} groups differ in length")
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0:
        raise IdentityInputError("the threshold grid must be a non-empty 1-D sequence")
    constraints = constraints if constraints is not None else Constraints()
    constraints.check(len(unit))
    members = [positions for positions in pd.Series(groups).groupby(groups, sort=True).indices.values()
               if len(positions) >= 2]
    if not members:
        raise IdentityInputError("calibration needs a scope with at least 2 labelled instances")

    def mean_score(value: float) -> float:
        clusterer = clusterer_factory(value)
        predictions = [clusterer.fit_predict(unit[rows], constraints.subset(rows)) for rows in members]
        return float(np.mean([_objective(clustering_metrics(labels[rows], predicted), objective)
                              for rows, predicted in zip(members, predictions, strict=True)]))

    scores = np.full(len(grid), np.nan)
    errors: list[IdentityInputError] = []
    for position, value in enumerate(grid):
        try:
            scores[position] = mean_score(float(value))
        except IdentityInputError as error:  # a value the method cannot run at is no candidate
            errors.append(error)
    if np.isnan(scores).all():
        raise errors[0]
    best = np.flatnonzero(scores >= np.nanmax(scores) - 1e-12)
    chosen = int(best[len(best) // 2])
    return Calibration(threshold=float(grid[chosen]), score=float(scores[chosen]), grid=grid, scores=scores,
                       n_instances=int(sum(len(rows) for rows in members)), n_groups=len(members))


def _objective(scores: dict[str, float], objective: str) -> float:
    if objective == "cluster_count":
        return -abs(float(np.log(scores["pred_clusters"] / scores["true_clusters"])))
    return float(scores[objective])


def auto_threshold(embeddings: np.ndarray, table: pd.DataFrame, method: str = "agglomerative", scope: str = "book",
                   params: dict[str, object] | None = None, objective: str = "bcubed_f",
                   grid: np.ndarray | None = None, min_dev_instances: int = 20,
                   label_free: float | None = None) -> ThresholdChoice:
    """Resolve ``--threshold auto`` for ``method``: calibrate on dev rows when there are enough.

    ``table`` has one row per instance in embedding order with ``identity`` and ``split`` columns
    (plus ``book``/``page``/``panel``/``sequence`` for scopes and cannot-links). Only rows with
    ``split == "dev"`` and a known identity are used. With fewer than ``min_dev_instances`` of them,
    or fewer than 2 identities, the value is ``label_free`` (source ``model``): the threshold measured
    for the embedding model on labelled data it was built with and stored with it
    (:mod:`comicid.models.model_calibration`); a model without one gets :data:`DEFAULT_THRESHOLDS`
    (source ``default``; for a registered method not listed there, its constructor's default; its
    grid then spans 0.5x to 1.5x that default). ``params`` are the clusterer's other
    hyper-parameters, held fixed during the search.
    """
    if method not in CLUSTERERS:
        raise IdentityInputError(f"unknown clustering method {method!r}; choose one of {', '.join(sorted(CLUSTERERS))}")
    if len(table) != len(embeddings):
        raise IdentityInputError(f"the instance table has {len(table)} rows but there are {len(embeddings)} embeddings")
    if CLUSTERERS[method].threshold_parameter is None:
        raise IdentityInputError(f"clustering method {method!r} has no threshold to calibrate")
    default = ThresholdChoice(value=_default_threshold(method), source="default") if label_free is None else \
        ThresholdChoice(value=float(label_free), source="model")
    if not {"identity", "split"} <= set(table.columns):
        return default
    dev = np.flatnonzero((table["split"].astype(str).to_numpy() == "dev")
                         & (table["identity"].fillna("").astype(str).to_numpy() != ""))
    dev_table = table.iloc[dev].reset_index(drop=True)
    if len(dev) < min_dev_instances or dev_table["identity"].nunique() < 2:
        return default
    parameter = CLUSTERERS[method].threshold_parameter
    base = create_clusterer(method, **dict(params or {}))

    def factory(value: float) -> object:
        return clone(base).set_params(**{parameter: value})

    calibration = calibrate_threshold(
        np.asarray(embeddings)[dev], dev_table["identity"].astype(str).to_numpy(), scope_keys(dev_table, scope),
        factory, grid=_default_grid(method) if grid is None else grid, objective=objective,
        constraints=Constraints.from_instances(dev_table))
    return ThresholdChoice(value=calibration.threshold, source="dev", calibration=calibration)


def _default_threshold(method: str) -> float:
    """The documented default, or for a method not listed here its constructor's default."""
    if method in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[method]
    parameter = CLUSTERERS[method].threshold_parameter
    return float(CLUSTERERS[method]().get_params()[parameter])


def _default_grid(method: str) -> np.ndarray:
    """The method's grid, or for a method not listed here 11 values from 0.5x to 1.5x its default."""
    if method in DEFAULT_GRIDS:
        return DEFAULT_GRIDS[method]
    return np.round(_default_threshold(method) * np.linspace(0.5, 1.5, 11), 6)
