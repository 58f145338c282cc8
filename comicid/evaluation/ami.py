"""Adjusted mutual information that stays fast with hundreds of thousands of clusters.

scikit-learn's expected mutual information (EMI) loops over every (true class, predicted cluster)
pair: with 25,000 identities and as many clusters that is 6 x 10^8 pairs, hours of work. The EMI
term of a pair depends only on the two *sizes*, and long-tailed clusterings have few distinct sizes
(a few hundred), so summing over distinct size pairs weighted by how often each occurs gives the same
number in seconds. scikit-learn has no such path, hence this module; below :data:`DIRECT_MAX` pairs
:func:`adjusted_mutual_info` simply calls scikit-learn.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.special import gammaln
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

#: Up to this many (class, cluster) pairs scikit-learn's own AMI is used.
DIRECT_MAX = 1_000_000


def expected_mutual_information(true_sizes: np.ndarray, pred_sizes: np.ndarray) -> float:
    """EMI (nats) of two random partitions with these class and cluster sizes (Vinh et al., 2010)."""
    true_sizes = np.asarray(true_sizes, dtype=np.int64)
    pred_sizes = np.asarray(pred_sizes, dtype=np.int64)
    n = int(true_sizes.sum())
    a_values, a_counts = np.unique(true_sizes, return_counts=True)
    b_values, b_counts = np.unique(pred_sizes, return_counts=True)
    b = b_values.astype(np.float64)[None, :]
    log_n = gammaln(n + 1)
    total = 0.0
    for a, a_count in zip(a_values.tolist(), a_counts.tolist(), strict=True):
        nij = np.arange(1, min(a, int(b_values.max())) + 1, dtype=np.float64)[:, None]  # (r, 1)
        valid = (nij <= b) & (nij >= a + b - n)
        log_term = (gammaln(a + 1) + gammaln(b + 1) + gammaln(n - a + 1) + gammaln(n - b + 1) - log_n
                    - gammaln(nij + 1) - gammaln(a - nij + 1) - gammaln(np.maximum(b - nij, 0) + 1)
                    - gammaln(np.maximum(n - a - b + nij, 0) + 1))
        value = (nij / n) * (np.log(n) + np.log(nij) - np.log(a) - np.log(b)) * np.exp(np.where(valid, log_term, -np.inf))
        total += a_count * float((value.sum(axis=0) * b_counts).sum())
    return total


def _entropy(sizes: np.ndarray) -> float:
    p = sizes[sizes > 0].astype(np.float64) / sizes.sum()
    return float(-(p * np.log(p)).sum())


def adjusted_mutual_info(true_codes: np.ndarray, pred_codes: np.ndarray,
                         table: sparse.spmatrix | None = None) -> float:
    """AMI with arithmetic normalisation, as ``sklearn.metrics.adjusted_mutual_info_score`` defines it.

    ``table`` is the sparse contingency matrix of the codes when the caller has it already.
    """
    if table is None:
        from sklearn.metrics.cluster import contingency_matrix

        table = contingency_matrix(true_codes, pred_codes, sparse=True)
    rows, columns = table.shape
    if rows * columns <= DIRECT_MAX:
        return float(adjusted_mutual_info_score(true_codes, pred_codes))
    true_sizes = np.asarray(table.sum(axis=1)).ravel()
    pred_sizes = np.asarray(table.sum(axis=0)).ravel()
    mutual = mutual_info_score(None, None, contingency=table)
    expected = expected_mutual_information(true_sizes, pred_sizes)
    normaliser = (_entropy(true_sizes) + _entropy(pred_sizes)) / 2
    denominator = normaliser - expected
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mutual - expected) / denominator)
