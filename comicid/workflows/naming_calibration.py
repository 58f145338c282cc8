"""The bank-naming threshold of a model, measured on labelled identities it was not fitted on.

Naming a cluster from a character bank (:func:`comicid.workflows.bank.name_clusters`) is its own
decision: the cosine distance between a cluster's prototype (mean of many instances) and a character's
prototype (mean of a few exemplars) is not the average-linkage distance at which a clusterer stops
merging, and a model tuned to merge generously (to get the cast size right) names too generously at
its clustering threshold: extras take a main character's name. So the model carries a threshold of
its own for naming, measured here once per model and stored in its calibration file
(``rules["bank"]["naming_threshold"]``, :mod:`comicid.models.model_calibration`).

How (:func:`fit_naming_threshold`), per data set of labelled embeddings, over ``rounds`` random banks of
each size in ``bank_sizes``:

1. ``size`` identities with at least two instances are enrolled from ``min(3, n - 1)`` exemplars
   each (the ``representative`` suggestion, the default of ``comicid bank add --from``); every other
   identity of the set is an *extra*, a character the bank does not know.
2. The clusters to name are the true groups (identity, book) of the instances left: the naming rule is
   measured apart from clustering errors.
3. At each threshold of the grid a cluster takes the name of its nearest prototype when closer than
   the threshold. A bank identity's instances count as right when named after their own character, an
   extra's when left unnamed; the set's score is the mean of the two shares (balanced: wrongly naming an
   unknown character and failing to name a known one weigh alike whatever the mix of the set).

The threshold maximises the mean score over sets (every set one vote, as for the clustering rule in
:mod:`comicid.workflows.label_free`); ties go to the middle of the tied values. The best threshold
falls as a bank grows (more prototypes, more near misses: on the shipped default's cross-fitted dev
halves 0.425 for 4 characters, 0.4 for 8, 0.325 for 16), so a set's score is the mean over banks of
4, 8 and 16 characters for the model's one value, and each size's own best is kept beside it
(``NamingFit.by_size``): naming a bank of N characters uses the measured size nearest to N
(:func:`comicid.workflows.bank.nearest_bank_size`). The panel rule of
naming (two clusters in one panel never share a name) is not simulated: the dev sets have no panels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from comicid.errors import ConfigError
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.bank import _unit, suggest_exemplars

#: Characters per simulated bank: main casts of a series (the bank-naming benchmark enrols 4).
BANK_SIZES: tuple[int, ...] = (4, 8, 16)
#: Random banks drawn per data set and bank size (20: seeds 0 and 1 choose the same value for the
#: shipped default; with 5 banks of one size the choice moved by three grid steps between sizes' runs).
ROUNDS = 20
#: Exemplars enrolled per character (``comicid bank add --count`` default).
EXEMPLARS = 3
#: Naming thresholds tried (cosine distance between prototypes).
NAMING_GRID = np.round(np.arange(0.05, 1.0001, 0.025), 3)


@dataclass(frozen=True)
class NamingFit:
    """A naming threshold, its score and what it was measured on."""

    threshold: float
    score: float  # mean over sets of the balanced naming accuracy at ``threshold``
    n_sets: int
    bank_sizes: tuple[int, ...]
    rounds: int
    by_size: dict[int, float] = field(default_factory=dict)  # bank size -> its own best threshold
    curve: dict[str, float] = field(default_factory=dict)  # threshold -> mean score
    per_set: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> {named right, extras kept} at it


def naming_scores(vectors: np.ndarray, identity: np.ndarray, book: np.ndarray, bank: list[str],
                  grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares of bank-identity instances named right and of extra instances left unnamed, per threshold.

    ``bank`` identities are enrolled from their :data:`EXEMPLARS` most representative instances (at least
    one instance kept to be named); every (identity, book) group of the remaining instances is a cluster.
    Returns two ``(T,)`` arrays over ``grid``.
    """
    vectors = _unit(np.asarray(vectors, dtype=np.float64))
    enrolled = np.zeros(len(vectors), dtype=bool)
    prototypes = []
    for name in bank:
        rows = np.flatnonzero(identity == name)
        picked = rows[suggest_exemplars(vectors[rows], min(EXEMPLARS, len(rows) - 1))]
        enrolled[picked] = True
        prototypes.append(_unit(vectors[picked].mean(axis=0)))
    centres, sizes, own = [], [], []
    groups: dict[tuple[str, str], list[int]] = {}
    for index in np.flatnonzero(~enrolled):
        groups.setdefault((identity[index], book[index]), []).append(index)
    matrix = np.stack(prototypes)  # (B, D)
    for (name, _), rows in groups.items():
        centres.append(_unit(vectors[rows].mean(axis=0)))
        sizes.append(len(rows))
        own.append(bank.index(name) if name in bank else -1)
    similarity = np.stack(centres) @ matrix.T  # (C, B)
    nearest = similarity.argmax(axis=1)
    distance = 1.0 - similarity.max(axis=1)
    sizes_array, own_array = np.asarray(sizes, dtype=np.float64), np.asarray(own)
    known = own_array >= 0
    named = distance[:, None] < grid[None, :]  # (C, T)
    right = (named & (nearest == own_array)[:, None])[known]
    kept = (~named)[~known]
    share_right = (sizes_array[known] @ right) / max(sizes_array[known].sum(), 1e-12)
    share_kept = (sizes_array[~known] @ kept) / max(sizes_array[~known].sum(), 1e-12)
    return share_right, share_kept


def _best(curve: np.ndarray) -> int:
    """Index of the best value of ``curve``; ties go to the middle of the tied values."""
    best = np.flatnonzero(curve >= curve.max() - 1e-12)
    return int(best[len(best) // 2])


def fit_naming_threshold(embedded: InstanceEmbeddings, bank_sizes: tuple[int, ...] = BANK_SIZES,
                         rounds: int = ROUNDS, grid: np.ndarray = NAMING_GRID, seed: int = 0) -> NamingFit:
    """The naming threshold with the best balanced accuracy on simulated banks, every set one vote.

    ``embedded.table`` needs ``identity`` and ``book`` (and ``set`` to vote per data set; one set when
    absent). A bank takes at most half the identities with two instances or more (one to enrol, one
    left to name), so that such identities are extras too; a set where that is under two is skipped.
    Deterministic for a ``seed``.
    """
    table = embedded.table
    labelled = (table["identity"].astype(str) != "").to_numpy() & np.any(embedded.vectors != 0, axis=1)
    sets = table["set"].astype(str).to_numpy() if "set" in table else np.full(len(table), "all", dtype=object)
    identities = table["identity"].astype(str).to_numpy()
    books = table["book"].astype(str).to_numpy()
    grid = np.asarray(grid, dtype=np.float64)
    curves: list[np.ndarray] = []
    size_curves: dict[int, list[np.ndarray]] = {}
    per_set: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in sorted(set(sets[labelled].tolist())):
        rows = np.flatnonzero(labelled & (sets == name))
        identity = identities[rows]
        names, counts = np.unique(identity, return_counts=True)
        eligible = names[counts >= 2]
        sizes = sorted({min(size, len(eligible) // 2) for size in bank_sizes} - {0, 1})
        if not sizes:
            continue
        # a stable seed per set (crc32, not hash(): the latter changes between Python processes)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        rights, kepts, of_size = [], [], {}
        for size in sizes:
            size_rights, size_kepts = [], []
            for _ in range(rounds):
                bank = sorted(rng.choice(eligible, size=size, replace=False).tolist())
                right, kept = naming_scores(embedded.vectors[rows], identity, books[rows], bank, grid)
                size_rights.append(right)
                size_kepts.append(kept)
            rights += size_rights
            kepts += size_kepts
            of_size[size] = (np.mean(size_rights, axis=0) + np.mean(size_kepts, axis=0)) / 2
        right, kept = np.mean(rights, axis=0), np.mean(kepts, axis=0)
        per_set[name] = (right, kept)
        curves.append((right + kept) / 2)
        for size in bank_sizes:  # a set too small for a bank of ``size`` votes with its largest bank
            size_curves.setdefault(size, []).append(of_size[min(size, len(eligible) // 2)])
    if not curves:
        raise ConfigError("no data set with enough labelled identities (four with two instances or more) to "
                          "measure a naming threshold on")
    mean = np.mean(np.stack(curves), axis=0)
    chosen = _best(mean)
    return NamingFit(threshold=float(grid[chosen]), score=float(mean[chosen]), n_sets=len(curves),
                     bank_sizes=tuple(bank_sizes), rounds=rounds,
                     by_size={size: float(grid[_best(np.mean(np.stack(c), axis=0))]) for size, c in size_curves.items()},
                     curve={f"{t:g}": round(float(s), 4) for t, s in zip(grid, mean, strict=True)},
                     per_set={name: {"named_right": round(float(r[chosen]), 4), "extras_kept": round(float(k[chosen]), 4)}
                              for name, (r, k) in per_set.items()})


__all__ = ["BANK_SIZES", "EXEMPLARS", "NAMING_GRID", "NamingFit", "ROUNDS", "fit_naming_threshold", "naming_scores"]
