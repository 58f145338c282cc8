"""Clustering metrics: ARI, AMI, NMI, V-measure, B-cubed, pair counting and weighted cluster purity.

Information-theoretic and chance-adjusted scores come from scikit-learn. B-cubed, pair-counting
precision/recall and weighted cluster purity are written here because scikit-learn has none of them
(it only offers the raw pair confusion matrix); they are computed from the sparse contingency table,
so the cost grows with the number of non-empty (true, predicted) cells, never with N^2 pairs.

Noise: a predicted label of -1 (the clusterers' "unknown") makes that instance a singleton cluster
of its own. Scoring noise as one big cluster would reward a clusterer for dumping hard instances
together; a singleton is what an unassigned instance means to a reader of the collection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    v_measure_score,
)
from sklearn.metrics.cluster import contingency_matrix

from comicid.evaluation.ami import adjusted_mutual_info
from comicid.evaluation.retrieval import as_label_array, encode_labels

__all__ = ["NOISE", "clustering_metrics", "clustering_metrics_by_group"]

NOISE = -1
"""Predicted label of an instance that a clusterer left unassigned."""

_COUNT_KEYS = ("instances", "pred_clusters", "true_clusters")


def _noise_mask(pred: np.ndarray) -> np.ndarray:
    """True where the predicted label is the number -1 (never the string "-1" or a bool)."""
    if pred.dtype.kind in "iuf":
        return pred == NOISE
    if pred.dtype.kind != "O":
        return np.zeros(len(pred), dtype=bool)
    return np.fromiter(
        (isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v == NOISE for v in pred.tolist()),
        dtype=bool,
        count=len(pred),
    )


def _pred_codes(pred_labels: Sequence[object] | np.ndarray) -> np.ndarray:
    """Codes of predicted labels with every noise (-1) instance turned into its own cluster."""
    pred = as_label_array(pred_labels)
    (codes,) = encode_labels(pred)
    noise = _noise_mask(pred)
    codes = codes.copy()
    codes[noise] = codes.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return codes


def _safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0 / 0 = 1: a clustering that claims no pair makes no pair error."""
    return 1.0 if denominator == 0 else numerator / denominator


def _f_score(precision: float, recall: float) -> float:
    """Harmonic mean; 0 when both are 0."""
    total = precision + recall
    return 0.0 if total == 0 else 2 * precision * recall / total


def _pairs(counts: np.ndarray) -> float:
    """Number of unordered pairs inside groups of the given sizes."""
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def _table_scores(table: sparse.csr_matrix) -> dict[str, float]:
    """B-cubed, pairwise and WCP from a (true, predicted) contingency table."""
    cells = table.tocoo()
    n_ij = cells.data.astype(np.float64)
    true_sizes = np.asarray(table.sum(axis=1)).ravel().astype(np.float64)
    pred_sizes = np.asarray(table.sum(axis=0)).ravel().astype(np.float64)
    n = float(true_sizes.sum())

    # B-cubed: an instance in cell (i, j) has n_ij correct neighbours among b_j (its predicted
    # cluster, itself included) and among a_i (its true class); average over instances.
    bcubed_precision = float((n_ij**2 / pred_sizes[cells.col]).sum() / n)
    bcubed_recall = float((n_ij**2 / true_sizes[cells.row]).sum() / n)

    together = _pairs(n_ij)
    pairwise_precision = _safe_ratio(together, _pairs(pred_sizes))
    pairwise_recall = _safe_ratio(together, _pairs(true_sizes))

    # WCP: each predicted cluster votes for its majority identity, weighted by its size.
    majority = np.asarray(table.max(axis=0).todense()).ravel()
    wcp = float(majority.sum() / n)
    return {
        "bcubed_precision": bcubed_precision,
        "bcubed_recall": bcubed_recall,
        "bcubed_f": _f_score(bcubed_precision, bcubed_recall),
        "pairwise_precision": pairwise_precision,
        "pairwise_recall": pairwise_recall,
        "pairwise_f": _f_score(pairwise_precision, pairwise_recall),
        "wcp": wcp,
    }


def clustering_metrics(
    true_labels: Sequence[object] | np.ndarray, pred_labels: Sequence[object] | np.ndarray
) -> dict[str, float | int]:
    """Scores a predicted clustering against true identities (all scores in [0, 1] except ARI).

    Keys: ``ari``, ``ami``, ``nmi``, ``v_measure``, ``bcubed_precision``, ``bcubed_recall``,
    ``bcubed_f``, ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f``, ``wcp``, and the counts
    ``instances``, ``pred_clusters`` (noise singletons included) and ``true_clusters``. Labels may be
    any hashable ids; predicted -1 is noise (one singleton each). Raises ``ValueError`` on empty or
    mismatched inputs.
    """
    (true_codes,) = encode_labels(true_labels)
    pred_codes = _pred_codes(pred_labels)
    if len(true_codes) != len(pred_codes):
        raise ValueError(f"{len(true_codes)} true labels but {len(pred_codes)} predicted labels")
    if len(true_codes) == 0:
        raise ValueError("cannot score an empty clustering")
    table = contingency_matrix(true_codes, pred_codes, sparse=True)
    scores: dict[str, float | int] = {
        "ari": float(adjusted_rand_score(true_codes, pred_codes)),
        "ami": adjusted_mutual_info(true_codes, pred_codes, table),  # fast with many clusters
        "nmi": float(normalized_mutual_info_score(true_codes, pred_codes)),
        "v_measure": float(v_measure_score(true_codes, pred_codes)),
    }
    scores.update(_table_scores(table))
    scores["instances"] = len(true_codes)
    scores["pred_clusters"] = int(table.shape[1])
    scores["true_clusters"] = int(table.shape[0])
    return scores


#: Books with fewer labelled instances than this are left out of the per-book means: a one-instance book
#: scores a perfect 1.0 on most metrics whatever the clusterer did, and would weigh as much as a
#: hundred-instance book. They still count in the pooled scores.
MIN_BOOK_INSTANCES = 2


def clustering_metrics_by_group(
    true_labels: Sequence[object] | np.ndarray,
    pred_labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
) -> dict[str, object]:
    """Scores each group (book) on its own and averages the scores over groups; also pooled scores.

    Clustering is done per book, so a book is the unit: every book with at least
    :data:`MIN_BOOK_INSTANCES` instances weighs the same whatever its size; smaller books are left out
    of the means and counted in ``books_skipped``. Score keys are those means (NaN when no book is
    large enough); ``instances``, ``pred_clusters`` and ``true_clusters`` are sums over all books;
    ``books`` is the number of books in the means. ``pooled`` holds :func:`clustering_metrics` over all
    instances at once, every instance weighing the same, with identities and predicted clusters taken
    per book (the same label in two books is two clusters, as the per-book scores see it). Books are
    visited in sorted order of their ids, so the floating-point sums are reproducible.
    """
    (group_codes,) = encode_labels(groups)
    true = as_label_array(true_labels)
    pred = as_label_array(pred_labels)
    if not len(true) == len(pred) == len(group_codes):
        raise ValueError(f"lengths differ: {len(true)} true, {len(pred)} predicted, {len(group_codes)} groups")
    if len(group_codes) == 0:
        raise ValueError("cannot score an empty clustering")
    per_book = [clustering_metrics(true[group_codes == g], pred[group_codes == g])
                for g in range(int(group_codes.max()) + 1)]
    counted = [book for book in per_book if book["instances"] >= MIN_BOOK_INSTANCES]
    result: dict[str, object] = {}
    for key in per_book[0]:
        if key in _COUNT_KEYS:
            result[key] = int(sum(book[key] for book in per_book))
        else:
            result[key] = float(np.mean([book[key] for book in counted])) if counted else float("nan")
    result["books"] = len(counted)
    result["books_skipped"] = len(per_book) - len(counted)
    (true_codes,) = encode_labels(true)
    pred_codes = _pred_codes(pred)  # noise singletons stay singletons
    result["pooled"] = clustering_metrics(group_codes * (int(true_codes.max()) + 1) + true_codes,
                                          group_codes * (int(pred_codes.max()) + 1) + pred_codes)
    return result
