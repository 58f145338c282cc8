"""Identity mining (IM): pseudo-labels for unlabelled instances, and a clusterer that abstains.

Deng, Xie & Liu (2024), after the person re-ID practice of mining identities from unlabelled data:

1. **anchors, farthest first**: the first anchor is the instance farthest from the mean direction;
   then, repeatedly, the instance farthest from every anchor chosen so far becomes a new anchor (a new
   identity) as long as that distance exceeds ``d_n``. Each anchor is therefore more than ``d_n``
   from all others: anchors are confidently *different* identities.
2. **members**: every instance closer than ``d_p < d_n`` to an anchor takes that anchor's label
   (the nearest anchor wins); instances farther than ``d_p`` from all anchors stay unlabelled (-1).
   Two instances of one panel (a cannot-link) never take the same label: candidate (instance,
   anchor) pairs are granted in order of distance, so the closer instance keeps the anchor and the
   other falls back to its next anchor within ``d_p``, or stays unlabelled.

Distances are Euclidean between L2-normalised rows (``sqrt(2 - 2 cos)``, 0..2), as in the paper.
Memory is O(N + A·k), never N×N: anchor selection keeps one running minimum distance per row
(Gonzalez's farthest-first traversal, O(N·A·D) time), and the nearest anchors come from a faiss
exact index over the anchors. Hand-written because no maintained library offers this rule.
"""

from __future__ import annotations

from typing import ClassVar

import faiss
import numpy as np

from comicid.identity.base import ConstrainedClusterer, group_means
from comicid.identity.constraints import (
    Constraints,
    IdentityInputError,
    check_embeddings,
    first_appearance_labels,
    within_group_pairs,
)
from comicid.identity.registry import CLUSTERERS

#: Paper defaults (BoT features, Euclidean between unit vectors). comicid's own defaults for
#: ``--method mining`` are chosen on dev identities; see :class:`MiningClusterer` and docs/CLUSTERING.md.
PAPER_D_N = 0.49
PAPER_D_P = 0.23

#: Nearest anchors looked up per instance when cannot-links may force a fall-back anchor.
FALLBACK_ANCHORS = 8


def _check_radii(d_n: float, d_p: float) -> None:
    for name, value in (("d_n", d_n), ("d_p", d_p)):
        if not np.isfinite(value) or value <= 0:
            raise IdentityInputError(f"{name} must be a positive distance, got {value!r}")
    if d_p >= d_n:
        raise IdentityInputError(f"d_p ({d_p}) must be below d_n ({d_n}): a member must be closer to its "
                                 "anchor than two anchors are to each other")


def farthest_first_anchors(unit: np.ndarray, d_n: float) -> np.ndarray:
    """Row indices of the anchors, in the order chosen (see module docstring, step 1).

    ``unit`` is ``(N, D)`` L2-normalised. Deterministic: ties go to the lowest row index. Time is
    O(N · anchors · D): 100,000 rows of 256-d with 8,010 anchors took 242 s on one contended core
    (load 14 on 2 cores), 84 MiB over the features.
    """
    n = len(unit)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    unit = np.ascontiguousarray(unit, dtype=np.float32)  # one (N, D) product per anchor: float32 halves it
    mean = unit.mean(axis=0)
    first = int(np.argmin(unit @ mean))  # farthest from the mean direction: an outlier starts the traversal
    anchors = [first]
    nearest = np.sqrt(np.maximum(2.0 - 2.0 * (unit @ unit[first]), 0.0))  # (N,) distance to nearest anchor
    while True:
        candidate = int(np.argmax(nearest))
        if nearest[candidate] <= d_n:
            return np.asarray(anchors, dtype=np.int64)
        anchors.append(candidate)
        np.minimum(nearest, np.sqrt(np.maximum(2.0 - 2.0 * (unit @ unit[candidate]), 0.0)), out=nearest)


def mine_identities(features: np.ndarray, *, d_n: float = PAPER_D_N, d_p: float = PAPER_D_P,
                    groups: np.ndarray | None = None, cannot_link: np.ndarray | None = None) -> np.ndarray:
    """Pseudo-label ``features`` by identity mining; return int64 labels ``(N,)``, -1 = unlabelled.

    Args:
        features: ``(N, D)`` embeddings, L2-normalised (re-normalised here; zero rows are an error).
        d_n: minimum Euclidean distance between two anchors (identities).
        d_p: maximum Euclidean distance from an anchor for an instance to take its label; ``< d_n``.
        groups: optional ``(N,)`` group per row (e.g. a panel key); rows sharing a value never share a
            label. ``None`` or NaN/"" values impose nothing.
        cannot_link: optional ``(K, 2)`` row-index pairs that must not share a label (added to ``groups``).

    Labels are numbered by first appearance; every anchor is labelled, so the number of identities
    is the number of anchors that kept their label.
    """
    _check_radii(float(d_n), float(d_p))
    unit = check_embeddings(features)  # (N, D), L2-normalised, float64
    n = len(unit)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = _pairs_from_groups(groups, n)
    if cannot_link is not None:
        extra = Constraints(cannot_link=cannot_link).cannot_link
        Constraints(cannot_link=extra).check(n)
        pairs = np.concatenate([pairs, extra])
    anchors = farthest_first_anchors(unit, float(d_n))
    k = min(len(anchors), FALLBACK_ANCHORS if len(pairs) else 1)
    index = faiss.IndexFlatL2(unit.shape[1])
    index.add(np.ascontiguousarray(unit[anchors], dtype=np.float32))
    squared, nearest = index.search(np.ascontiguousarray(unit, dtype=np.float32), k)  # (N, k) each
    distance = np.sqrt(np.maximum(squared.astype(np.float64), 0.0))
    distance[anchors, :] = np.inf  # an anchor takes its own label, whatever float32 says
    distance[anchors, 0], nearest[anchors, 0] = 0.0, np.arange(len(anchors))

    labels = np.where(distance[:, 0] < d_p, nearest[:, 0], -1).astype(np.int64)
    if len(pairs):
        constrained = np.unique(pairs)
        labels[constrained] = _grant_in_distance_order(constrained, distance, nearest, pairs, float(d_p), n)
    return first_appearance_labels(labels)


def _grant_in_distance_order(rows: np.ndarray, distance: np.ndarray, nearest: np.ndarray, pairs: np.ndarray,
                             d_p: float, n: int) -> np.ndarray:
    """Labels for cannot-linked ``rows``: (row, anchor) candidates within ``d_p`` granted closest first,
    skipping an anchor that a cannot-linked partner already holds."""
    partners: dict[int, list[int]] = {}
    for a, b in pairs:
        partners.setdefault(int(a), []).append(int(b))
        partners.setdefault(int(b), []).append(int(a))
    row_of, column = np.nonzero(distance[rows] < d_p)
    candidate_rows = rows[row_of]
    candidate_distance = distance[candidate_rows, column]
    order = np.lexsort((nearest[candidate_rows, column], candidate_rows, candidate_distance))
    label = np.full(n, -1, dtype=np.int64)
    for position in order:
        row, anchor = int(candidate_rows[position]), int(nearest[candidate_rows[position], column[position]])
        if label[row] >= 0 or any(label[other] == anchor for other in partners[row]):
            continue
        label[row] = anchor
    return label[rows]


def _pairs_from_groups(groups: np.ndarray | None, n: int) -> np.ndarray:
    """All within-group row pairs (groups are panels: a few rows each), as ``(K, 2)`` int64."""
    if groups is None:
        return np.empty((0, 2), dtype=np.int64)
    values = np.asarray(groups, dtype=object)
    if values.shape != (n,):
        raise IdentityInputError(f"groups must have one value per row ({n}), got shape {values.shape}")
    known = np.array([not (value is None or value == "" or (isinstance(value, float) and np.isnan(value)))
                      for value in values], dtype=bool)
    return within_group_pairs(np.flatnonzero(known), values[known])


@CLUSTERERS.register("mining")
class MiningClusterer(ConstrainedClusterer):
    """``--method mining``: identity mining as a clusterer that leaves low-confidence instances unknown.

    Instances farther than ``d_p`` from every anchor get -1 (shown as unknown, scored as singletons).
    Must-linked instances are mined as their normalised mean; cannot-links are honoured exactly.

    Args:
        d_n: anchor separation (Euclidean between unit vectors); the threshold parameter's partner.
        d_p: assignment radius, set by ``--threshold``; must be below ``d_n``.

    The defaults (1.0, 0.9) gave the best mean B-cubed F on the ``split=dev`` rows of the development
    sets with the shipped model (``benchmarks/retrieval_dev.py``, docs/BENCHMARKS.md "retrieval-dev");
    the paper's 0.49 / 0.23 assume BoT features far tighter per identity, and on the shipped model's
    embeddings leave 96% of instances alone or unlabelled.
    """

    threshold_parameter: ClassVar[str] = "d_p"

    def __init__(self, d_n: float = 1.0, d_p: float = 0.9) -> None:
        self.d_n = d_n  # stored unchanged (scikit-learn's rule); checked in fit
        self.d_p = d_p

    def _validate(self) -> None:
        _check_radii(float(self.d_n), float(self.d_p))

    def _fit_labels(self, unit: np.ndarray, constraints: Constraints, views: np.ndarray | None) -> np.ndarray:
        """Mining honours cannot-links inside (an anchor never takes a cannot-linked member), so it
        replaces the base class's merge-then-repair."""
        n = len(unit)
        groups = constraints.must_link_groups(n)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        merged = group_means(unit, groups)  # (G, D), L2-normalised
        cannot = groups[constraints.cannot_link]
        labels = mine_identities(merged, d_n=float(self.d_n), d_p=float(self.d_p), cannot_link=cannot if len(cannot) else None)
        return first_appearance_labels(labels[groups])
