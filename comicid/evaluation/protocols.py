"""The re-identification protocols of Soykan et al. (2023), identity-aware comic character re-ID.

- **Local** (within a book or sequence): characters are only compared with characters of the same
  group, where every label names a different character. Each instance of a character with at least
  ``min_instances`` instances in its group queries, leave-one-out, the other kept instances of that
  group. Scores are averaged per character, then over characters, so frequent characters do not
  dominate.
- **Global** (across books): one query per character searches the pooled instances of every group
  (all instances but itself); the other books act as distractors.

A character is a (group, label) pair: the same label in two groups is two characters, as in comic
annotations whose ids are per book or per sequence. Pass one constant group to treat labels as global
identities. Both protocols rank by cosine similarity of L2-normalised embeddings and reuse
:func:`comicid.evaluation.retrieval.query_retrieval_scores`, so ties, skipping and metric definitions
are the same as in :mod:`comicid.evaluation.retrieval`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from comicid.evaluation.retrieval import QueryScores, encode_labels, query_retrieval_scores

__all__ = ["global_protocol", "local_protocol"]

# Query rows per similarity block: bounds memory at about 8 MB per (rows, N) float64 array for N = 1k.
_BLOCK_ELEMENTS = 1 << 20

_METRICS = ("map_at_r", "precision_at_1", "mrr", "r_precision")


def _characters(
    embeddings: np.ndarray, labels: Sequence[object] | np.ndarray, groups: Sequence[object] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates inputs; returns (embeddings, group codes, character codes), codes in sorted order."""
    embeddings = np.asarray(embeddings)
    label_codes, = encode_labels(labels)
    group_codes, = encode_labels(groups)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {embeddings.shape}")
    if not len(embeddings) == len(label_codes) == len(group_codes):
        raise ValueError(
            f"lengths differ: {len(embeddings)} embeddings, {len(label_codes)} labels, {len(group_codes)} groups"
        )
    pair = group_codes * (int(label_codes.max(initial=0)) + 1) + label_codes
    _, character_codes = np.unique(pair, return_inverse=True)
    return embeddings, group_codes, character_codes.astype(np.int64)


def _source_codes(sources: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray:
    """Codes of ``sources`` with -1 for the empty source (which never excludes); all -1 when None."""
    if sources is None:
        return np.full(n, -1, dtype=np.int64)
    texts = np.asarray(["" if s is None else str(s) for s in np.asarray(sources, dtype=object).tolist()], dtype=object)
    if len(texts) != n:
        raise ValueError(f"lengths differ: {n} embeddings, {len(texts)} sources")
    codes, = encode_labels(texts) if n else (np.zeros(0, np.int64),)
    return np.where(texts == "", -1, codes)


def _leave_one_out_scores(
    embeddings: np.ndarray, character_codes: np.ndarray, query_rows: np.ndarray,
    source_codes: np.ndarray | None = None,
) -> QueryScores:
    """Scores ``query_rows`` against all rows of ``embeddings`` but themselves and, by re-ID's rule,
    the other instances of the same character from the query's source, a block at a time."""
    step = max(1, _BLOCK_ELEMENTS // max(1, len(embeddings)))
    gallery_rows = np.arange(len(embeddings))
    sources = np.full(len(embeddings), -1, dtype=np.int64) if source_codes is None else source_codes
    parts = []
    for start in range(0, len(query_rows), step):
        rows = query_rows[start:start + step]
        same_source = (sources[rows][:, None] == sources[None, :]) & (sources[rows] >= 0)[:, None] \
            & (character_codes[rows][:, None] == character_codes[None, :])
        parts.append(query_retrieval_scores(
            embeddings[rows] @ embeddings.T,
            character_codes[rows],
            character_codes,
            exclude=(rows[:, None] == gallery_rows[None, :]) | same_source,
        ))
    return QueryScores.concatenate(parts)


def _per_query_metrics(scores: QueryScores) -> dict[str, np.ndarray]:
    """The protocol metrics of each query (NaN where skipped)."""
    return {
        "map_at_r": scores.map_at_r,
        "precision_at_1": np.where(scores.evaluated, scores.first_rank == 1, np.nan),
        "mrr": scores.reciprocal_rank,
        "r_precision": scores.r_precision,
    }


def _class_average(scores: QueryScores, query_characters: np.ndarray) -> dict[str, float]:
    """Means per character over its evaluated queries, then the mean over characters."""
    ok = scores.evaluated
    codes = query_characters[ok]
    counts = np.bincount(codes)
    present = counts > 0
    result = {}
    for name, values in _per_query_metrics(scores).items():
        sums = np.bincount(codes, weights=values[ok], minlength=len(counts))
        result[name] = float((sums[present] / counts[present]).mean()) if present.any() else float("nan")
    return result


def _check_min_instances(min_instances: int) -> None:
    """A character needs one instance to query and one to find."""
    if min_instances < 2:
        raise ValueError(f"min_instances must be at least 2, got {min_instances}")


def local_protocol(
    embeddings: np.ndarray,
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    min_instances: int = 5,
    sources: Sequence[object] | np.ndarray | None = None,
) -> dict[str, float | int]:
    """Within-group leave-one-out retrieval, class-averaged.

    ``sources``: when given, other instances of the query's character from the query's non-empty
    source are left out of its ranking (re-ID's same-camera rule, as in the standard retrieval), so
    near-duplicate frames do not count as matches.

    Characters with fewer than ``min_instances`` instances in their group are left out entirely
    (neither queries nor references) and counted in ``skipped_characters`` / ``skipped_instances``.
    Returns ``map_at_r``, ``precision_at_1``, ``mrr``, ``r_precision`` (means over characters of the
    means over their queries; NaN when nothing is left) and the counts ``queries``, ``characters``,
    ``groups`` (groups with at least one kept character), ``skipped_characters``,
    ``skipped_instances``.
    """
    _check_min_instances(min_instances)
    embeddings, group_codes, character_codes = _characters(embeddings, labels, groups)
    source_codes = _source_codes(sources, len(embeddings))
    sizes = np.bincount(character_codes)
    kept = sizes[character_codes] >= min_instances
    parts: list[QueryScores] = []
    part_characters: list[np.ndarray] = []
    for group in np.unique(group_codes[kept]):
        rows = np.flatnonzero(kept & (group_codes == group))
        parts.append(_leave_one_out_scores(embeddings[rows], character_codes[rows], np.arange(len(rows)),
                                           source_codes[rows]))
        part_characters.append(character_codes[rows])
    metrics = (
        _class_average(QueryScores.concatenate(parts), np.concatenate(part_characters))
        if parts else dict.fromkeys(_METRICS, float("nan"))
    )
    return {
        **metrics,
        "queries": int(kept.sum()),
        "characters": int((sizes >= min_instances).sum()),
        "groups": len(parts),
        "skipped_characters": int((sizes < min_instances).sum()),
        "skipped_instances": int((~kept).sum()),
    }


def global_protocol(
    embeddings: np.ndarray,
    labels: Sequence[object] | np.ndarray,
    groups: Sequence[object] | np.ndarray,
    seed: int = 0,
    min_instances: int = 2,
    sources: Sequence[object] | np.ndarray | None = None,
) -> dict[str, float | int]:
    """One query per character against the pooled instances of all groups.

    ``sources``: as in :func:`local_protocol`, same-source instances of the query's character are
    left out of its ranking.

    The query of each character with at least ``min_instances`` instances is drawn with
    ``numpy.random.default_rng(seed)``, characters visited in sorted (group, label) order and
    instances in input order, so the choice depends only on the data and the seed. References are
    all other instances of all groups, rarer characters included as distractors. Returns
    ``map_at_r``, ``precision_at_1``, ``mrr``, ``r_precision`` (means over queries, i.e. over
    characters) and the counts ``queries``, ``characters``, ``groups``, ``references`` (instances
    each query is ranked against) and ``skipped_characters``.
    """
    _check_min_instances(min_instances)
    embeddings, group_codes, character_codes = _characters(embeddings, labels, groups)
    source_codes = _source_codes(sources, len(embeddings))
    sizes = np.bincount(character_codes)
    by_character = np.argsort(character_codes, kind="stable")  # instances grouped, input order inside
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    eligible = np.flatnonzero(sizes >= min_instances)
    offsets = np.random.default_rng(seed).integers(0, sizes[eligible]) if len(eligible) else eligible
    query_rows = by_character[starts[eligible] + offsets]
    if len(query_rows):
        scores = _leave_one_out_scores(embeddings, character_codes, query_rows, source_codes)
        metrics = {name: float(np.nanmean(v)) for name, v in _per_query_metrics(scores).items()}
    else:
        metrics = dict.fromkeys(_METRICS, float("nan"))
    return {
        **metrics,
        "queries": len(query_rows),
        "characters": len(eligible),
        "groups": len(np.unique(group_codes)),
        "references": max(0, len(embeddings) - 1),
        "skipped_characters": int((sizes < min_instances).sum()),
    }
