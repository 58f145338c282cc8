"""Constraints from comic structure, and the input checks every clusterer shares.

Two kinds of pairwise knowledge come for free from a comic page:

* **cannot-link**: two instances drawn in the same panel are different characters (a panel rarely
  shows one character twice);
* **must-link**: two instances known to be one character (e.g. groups found by another method).
  The face and body rows of one instance are already fused into one instance vector before
  clustering, so they never reach this module as two rows.

Indices are positions in the embedding matrix handed to a clusterer (0 .. N-1), not manifest rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from comicid.errors import ConfigError


class IdentityInputError(ConfigError, ValueError):
    """Embeddings, an instance table or constraints handed to identity assignment are malformed.

    A ``ValueError`` too, so code written against scikit-learn's conventions still catches it.
    """


def _as_pairs(pairs: object, name: str) -> np.ndarray:
    array = np.asarray(pairs) if pairs is not None else np.empty((0, 2), dtype=np.int64)
    if array.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise IdentityInputError(f"{name} must be an array of index pairs with shape (K, 2), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise IdentityInputError(f"{name} must hold integer instance indices, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


@dataclass(frozen=True)
class Constraints:
    """Pairwise constraints over N instances.

    Attributes:
        cannot_link: ``(K, 2)`` int64 index pairs that must end in different clusters.
        must_link: ``(M, 2)`` int64 index pairs that must end in the same cluster.
    """

    cannot_link: np.ndarray = field(default_factory=lambda: np.empty((0, 2), dtype=np.int64))
    must_link: np.ndarray = field(default_factory=lambda: np.empty((0, 2), dtype=np.int64))

    def __post_init__(self) -> None:
        object.__setattr__(self, "cannot_link", _as_pairs(self.cannot_link, "cannot_link"))
        object.__setattr__(self, "must_link", _as_pairs(self.must_link, "must_link"))
        selves = self.cannot_link[self.cannot_link[:, 0] == self.cannot_link[:, 1]]
        if len(selves):
            raise IdentityInputError(f"instance {int(selves[0, 0])} is cannot-linked to itself")

    @classmethod
    def from_instances(cls, table: pd.DataFrame, must_link: object = None) -> Constraints:
        """Cannot-links between instances sharing a known panel; ``must_link`` pairs passed through.

        ``table`` has one row per instance, in embedding order, with text columns ``book``, ``page``
        and ``panel`` ("" = unknown; a missing column counts as unknown). Instances with the same
        ``(book, page, panel)`` and a non-empty panel are pairwise cannot-linked. Panel ids are read as
        unique within a page; when the page is unknown the panel id is taken to name a panel of the book.
        """
        columns = {name: _text_column(table, name) for name in ("book", "page", "panel")}
        known = columns["panel"] != ""
        keys = np.array(["\x1f".join(parts) for parts in
                         zip(columns["book"][known], columns["page"][known], columns["panel"][known])], dtype=object)
        return cls(cannot_link=within_group_pairs(np.flatnonzero(known), keys), must_link=must_link)

    def check(self, n: int) -> None:
        """Raise :class:`IdentityInputError` when an index falls outside ``0 .. n-1``."""
        for name, pairs in (("cannot_link", self.cannot_link), ("must_link", self.must_link)):
            bad = pairs[(pairs < 0).any(axis=1) | (pairs >= n).any(axis=1)]
            if len(bad):
                raise IdentityInputError(
                    f"{name} pair ({int(bad[0, 0])}, {int(bad[0, 1])}) is out of range for {n} instances")

    def subset(self, indices: np.ndarray) -> Constraints:
        """Constraints among ``indices`` only, renumbered to positions in ``indices``.

        Pairs with one end outside ``indices`` are dropped: the caller decides whether that is
        allowed (see :func:`comicid.identity.scopes.cluster_by_scope`, which refuses split must-links).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(np.unique(indices)) != len(indices):
            raise IdentityInputError("subset indices must be unique")
        limit = int(max(indices.max(initial=-1) + 1, self.cannot_link.max(initial=-1) + 1,
                        self.must_link.max(initial=-1) + 1))
        position = np.full(limit, -1, dtype=np.int64)
        position[indices] = np.arange(len(indices))

        def remap(pairs: np.ndarray) -> np.ndarray:
            mapped = position[pairs] if len(pairs) else pairs
            return mapped[(mapped >= 0).all(axis=1)]

        return Constraints(cannot_link=remap(self.cannot_link), must_link=remap(self.must_link))

    def must_link_groups(self, n: int) -> np.ndarray:
        """Group id per instance (0 .. G-1, numbered by first member) after closing must-links.

        Raises :class:`IdentityInputError` when a cannot-link joins two members of one group, since
        no partition can then satisfy both.
        """
        self.check(n)
        links = coo_matrix((np.ones(len(self.must_link)), (self.must_link[:, 0], self.must_link[:, 1])), shape=(n, n))
        # scipy numbers components as it meets their lowest member: ids follow each group's first member.
        _, groups = connected_components(links, directed=False)
        clash = self.cannot_link[groups[self.cannot_link[:, 0]] == groups[self.cannot_link[:, 1]]]
        if len(clash):
            a, b = int(clash[0, 0]), int(clash[0, 1])
            raise IdentityInputError(
                f"instances {a} and {b} are cannot-linked (same panel) but must-linked through other pairs")
        return groups.astype(np.int64)


def within_group_pairs(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Every pair of ``rows`` whose ``keys`` (one per row, compared as text) are equal, as sorted
    ``(K, 2)`` int64 with ``a < b`` per pair. Groups are panels (a few rows each), so K stays small."""
    rows = np.asarray(rows, dtype=np.int64)
    ids = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)[1].reshape(-1)
    order = np.lexsort((rows, ids))
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    pairs = [(int(a), int(b)) for members in np.split(rows[order], bounds) if len(members) > 1
             for i, a in enumerate(members) for b in members[i + 1:]]
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def _text_column(table: pd.DataFrame, name: str) -> np.ndarray:
    if name not in table.columns:
        return np.full(len(table), "", dtype=object)
    return table[name].fillna("").astype(str).to_numpy(dtype=object)


def check_embeddings(embeddings: object) -> np.ndarray:
    """Return ``embeddings`` as a float64 ``(N, D)`` array with unit rows, or raise a clear error.

    Clusterers compare by cosine, so rows are re-normalised here: a caller that forgot to normalise
    gets the intended result, and float32 round-off does not leak into distance ties.
    """
    array = np.array(embeddings, dtype=np.float64)  # always a copy, normalised in place below
    if array.ndim != 2:
        raise IdentityInputError(f"embeddings must be a 2-D array (instances x dimensions), got shape {array.shape}")
    if array.shape[0] and array.shape[1] == 0:
        raise IdentityInputError("embeddings have zero dimensions")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise IdentityInputError(f"embedding row {int(np.flatnonzero(~finite)[0])} holds NaN or infinity")
    norms = np.linalg.norm(array, axis=1)
    if (norms == 0).any():
        raise IdentityInputError(
            f"embedding row {int(np.flatnonzero(norms == 0)[0])} is all zeros: cosine distance is undefined")
    array /= norms[:, None]  # in place: at 1M x 256 a second float64 copy is 2 GB more peak
    return array


def first_appearance_labels(labels: np.ndarray, keep_unknown: bool = True) -> np.ndarray:
    """Renumber cluster ids 0, 1, ... in order of first appearance; -1 (unknown) stays -1.

    Makes output independent of the library's internal numbering, so equal partitions give equal arrays
    (the one relabel helper of the package). With ``keep_unknown=False`` negative ids are ordinary ids
    too: the canonical form of any partition.
    """
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    known = labels >= 0 if keep_unknown else np.ones(len(labels), dtype=bool)
    _, first, inverse = np.unique(labels[known], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    out[known] = rank[inverse]
    return out
