"""Retrieval metrics: CMC rank-k, mAP, mINP, MAP@R, MRR and R-precision.

One implementation serves every caller: :func:`query_retrieval_scores` scores each query from a
(Q, G) similarity or distance matrix; :func:`retrieval_metrics_from_similarity` averages those scores;
:func:`retrieval_metrics` computes the similarity of embeddings block by block and feeds each block to
:func:`query_retrieval_scores`, so a 10k x 10k evaluation never holds a full (Q, G) float matrix.

Conventions (see docs/METRICS.md):

- A gallery item is *relevant* to a query when their labels are equal. Labels are compared with
  ``==`` after :func:`encode_labels`; unknown identities must be removed by the caller.
- Ranking is by decreasing similarity (or increasing distance). Ties count against the query: among
  items with exactly equal scores, non-relevant ones rank first. Results therefore never depend on
  the order of the gallery rows (breaking ties by gallery index did: reversing a tied gallery moved
  rank-1 from 0.345 to 0.185), and a model that maps everything to one point scores the worst, not
  whatever the row order gives it.
- ``exclude[q, g] = True`` removes gallery item ``g`` from the ranking of query ``q`` (the re-ID
  same-camera rule: same source *and* same identity; or the query itself in leave-one-out);
  positions are counted among the remaining items only.
- A query with no relevant gallery item left is *skipped*: it contributes to no average and is
  counted in ``skipped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "QueryScores",
    "as_label_array",
    "encode_labels",
    "exclusion_mask",
    "query_retrieval_scores",
    "retrieval_metrics",
    "retrieval_metrics_from_similarity",
    "summarise_retrieval",
]

ScoreKind = Literal["similarity", "distance"]

# Elements of one (rows, G) working block; about 8 MB per float64 array, a handful alive at once.
_BLOCK_ELEMENTS = 1 << 20


def _label_sort_key(value: object) -> tuple[str, object]:
    """Orders labels of mixed types (str and int ids in one column) without comparing across types."""
    return (type(value).__name__, value)


def as_label_array(labels: Sequence[object] | np.ndarray) -> np.ndarray:
    """Labels as a 1-d array without numpy's type coercion of mixed lists.

    ``np.asarray(["7", 7])`` silently turns the int 7 into the string "7"; a list that mixes strings
    with other values becomes an object array instead, so distinct ids stay distinct.
    """
    if isinstance(labels, np.ndarray):
        return labels
    array = np.asarray(labels)
    if array.dtype.kind in "US" and not all(isinstance(v, (str, bytes)) for v in labels):
        array = np.empty(len(array), dtype=object)
        array[:] = list(labels)
    return array


def encode_labels(*label_arrays: Sequence[object] | np.ndarray) -> tuple[np.ndarray, ...]:
    """Maps hashable labels to int64 codes shared by all arrays.

    Codes follow the sorted order of the distinct labels (numbers numerically, strings
    lexicographically, mixed types grouped by type name), so they depend only on the set of labels,
    never on input order, set iteration order or ``PYTHONHASHSEED``.
    """
    arrays = [as_label_array(labels) for labels in label_arrays]
    for labels in arrays:
        if labels.ndim != 1:
            raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    sizes = [len(labels) for labels in arrays]
    if all(labels.dtype.kind in "biuU" for labels in arrays) and len({a.dtype.kind for a in arrays}) <= 1:
        _, codes = np.unique(np.concatenate(arrays), return_inverse=True)
    else:
        values = [value for labels in arrays for value in labels.tolist()]
        distinct = sorted(set(values), key=_label_sort_key)
        index = {label: code for code, label in enumerate(distinct)}
        codes = np.fromiter((index[value] for value in values), dtype=np.int64, count=len(values))
    return tuple(np.split(codes.astype(np.int64, copy=False), np.cumsum(sizes)[:-1]))


def exclusion_mask(
    query_sources: Sequence[object] | np.ndarray,
    gallery_sources: Sequence[object] | np.ndarray,
    query_ids: Sequence[object] | np.ndarray | None = None,
    gallery_ids: Sequence[object] | np.ndarray | None = None,
    *,
    query_labels: Sequence[object] | np.ndarray | None = None,
    gallery_labels: Sequence[object] | np.ndarray | None = None,
) -> np.ndarray:
    """Builds the (Q, G) boolean mask of gallery items left out of each query's ranking.

    The source rule is re-ID's same-camera rule (Market-1501, torchreid, fast-reid): a gallery item is
    left out when it shares the query's non-empty ``source`` **and** its identity (near-duplicates
    such as frames of one animation). Gallery items of the query's source with another identity stay:
    they are the same-style distractors that reveal a model's style bias. When ids are given, the
    query itself (same id) is left out too (leave-one-out). An empty source (``""`` or ``None``)
    never excludes.

    Raises:
        ValueError: a non-empty source without ``query_labels``/``gallery_labels`` (the rule needs
            identities), or ids given for one side only.
    """
    q_text, g_text = _sources_as_text(query_sources), _sources_as_text(gallery_sources)
    q_src, g_src = encode_labels(q_text, g_text)
    mask = (q_src[:, None] == g_src[None, :]) & (q_text != "")[:, None]
    if (query_labels is None) != (gallery_labels is None):
        raise ValueError("give both query_labels and gallery_labels, or neither")
    if query_labels is not None and gallery_labels is not None:
        q_lab, g_lab = encode_labels(query_labels, gallery_labels)
        if len(q_lab) != len(q_text) or len(g_lab) != len(g_text):
            raise ValueError("give one label per query and per gallery item")
        mask &= q_lab[:, None] == g_lab[None, :]
    elif mask.any():
        raise ValueError("the source rule leaves out same source and same identity: pass query_labels "
                         "and gallery_labels")
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither")
    if query_ids is not None and gallery_ids is not None:
        q_ids, g_ids = encode_labels(query_ids, gallery_ids)
        mask |= q_ids[:, None] == g_ids[None, :]
    return mask


def _sources_as_text(sources: Sequence[object] | np.ndarray) -> np.ndarray:
    """Sources as a str array, with ``None`` read as the empty source ``""``."""
    texts = ["" if s is None else str(s) for s in np.asarray(sources, dtype=object).tolist()]
    return np.asarray(texts, dtype=str) if texts else np.zeros(0, dtype=str)


@dataclass(frozen=True)
class QueryScores:
    """Per-query retrieval scores; entries of skipped queries are NaN (floats) or 0 (ints).

    ``first_rank`` is the 1-based position of the first relevant item among the ranked (not
    excluded) gallery items; ``num_relevant`` is R, the number of relevant items ranked.
    """

    evaluated: np.ndarray  # (Q,) bool: False for queries without any relevant gallery item
    num_relevant: np.ndarray  # (Q,) int64
    first_rank: np.ndarray  # (Q,) int64, 0 when skipped
    average_precision: np.ndarray  # (Q,) float64
    inverse_negative_penalty: np.ndarray  # (Q,) float64: R / position of the last relevant item
    map_at_r: np.ndarray  # (Q,) float64
    r_precision: np.ndarray  # (Q,) float64

    @property
    def reciprocal_rank(self) -> np.ndarray:
        """1 / first_rank, NaN for skipped queries."""
        with np.errstate(divide="ignore"):
            return np.where(self.evaluated, 1.0 / np.maximum(self.first_rank, 1), np.nan)

    @staticmethod
    def concatenate(parts: Iterable[QueryScores]) -> QueryScores:
        """Joins scores of consecutive query blocks, in order."""
        parts = list(parts)
        fields = QueryScores.__dataclass_fields__
        return QueryScores(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in fields})


def query_retrieval_scores(
    scores: np.ndarray,
    query_labels: Sequence[object] | np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    exclude: np.ndarray | None = None,
    kind: ScoreKind = "similarity",
) -> QueryScores:
    """Scores each query of a (Q, G) similarity (higher = closer) or distance (lower = closer) matrix.

    Rows are processed in blocks, so the extra memory is bounded whatever Q is. Raises ``ValueError``
    on NaN scores (a NaN has no rank) and on shape mismatches.
    """
    scores = np.asarray(scores)
    q_codes, g_codes = encode_labels(query_labels, gallery_labels)
    _check_shapes(scores, q_codes, g_codes, exclude)
    rows = max(1, _BLOCK_ELEMENTS // max(1, scores.shape[1]))
    parts = []
    for start in range(0, scores.shape[0], rows):
        block = slice(start, start + rows)
        parts.append(_score_block(
            scores[block], q_codes[block], g_codes, None if exclude is None else exclude[block], kind
        ))
    if not parts:
        return _score_block(scores, q_codes, g_codes, exclude, kind)
    return QueryScores.concatenate(parts)


def _check_shapes(
    scores: np.ndarray, q_codes: np.ndarray, g_codes: np.ndarray, exclude: np.ndarray | None
) -> None:
    """Rejects inputs whose sizes disagree, naming the sizes so the caller can find the bad one."""
    expected = (len(q_codes), len(g_codes))
    if scores.ndim != 2 or scores.shape != expected:
        raise ValueError(f"scores have shape {scores.shape}, labels imply {expected}")
    if exclude is not None and np.shape(exclude) != expected:
        raise ValueError(f"exclude has shape {np.shape(exclude)}, labels imply {expected}")


def _score_block(
    scores: np.ndarray,
    q_codes: np.ndarray,
    g_codes: np.ndarray,
    exclude: np.ndarray | None,
    kind: ScoreKind,
) -> QueryScores:
    """Scores a block of query rows; all arrays here are (b, G) and ordered by rank."""
    if kind not in ("similarity", "distance"):
        raise ValueError(f"kind must be 'similarity' or 'distance', got {kind!r}")
    if scores.dtype.kind != "f":  # negating unsigned or bool scores would wrap, not reverse the order
        scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; every gallery item needs a comparable score")
    key = -scores if kind == "similarity" else scores
    relevant = g_codes[None, :] == q_codes[:, None]
    order = np.lexsort((relevant, key), axis=-1)  # by score; among exact ties non-relevant items first
    ranked = ~np.asarray(exclude, dtype=bool) if exclude is not None else np.ones(scores.shape, bool)
    ranked = np.take_along_axis(ranked, order, axis=1)
    hit = (g_codes[order] == q_codes[:, None]) & ranked
    position = np.cumsum(ranked, axis=1)  # 1-based position among ranked items
    hits_so_far = np.cumsum(hit, axis=1)
    num_relevant = hits_so_far[:, -1] if hit.shape[1] else np.zeros(len(hit), np.int64)
    evaluated = num_relevant > 0
    safe_r = np.maximum(num_relevant, 1)

    precision = np.where(hit, hits_so_far / np.maximum(position, 1), 0.0)
    within_r = position <= num_relevant[:, None]
    first_rank = np.where(hit, position, np.iinfo(np.int64).max).min(axis=1, initial=np.iinfo(np.int64).max)
    last_rank = np.where(hit, position, 0).max(axis=1, initial=0)

    def per_query(values: np.ndarray) -> np.ndarray:
        return np.where(evaluated, values, np.nan)

    return QueryScores(
        evaluated=evaluated,
        num_relevant=num_relevant.astype(np.int64),
        first_rank=np.where(evaluated, first_rank, 0).astype(np.int64),
        average_precision=per_query(precision.sum(axis=1) / safe_r),
        inverse_negative_penalty=per_query(num_relevant / np.maximum(last_rank, 1)),
        map_at_r=per_query(np.where(within_r, precision, 0.0).sum(axis=1) / safe_r),
        r_precision=per_query((hit & within_r).sum(axis=1) / safe_r),
    )


def summarise_retrieval(scores: QueryScores, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float | int]:
    """Averages per-query scores over evaluated queries (each query weighs the same).

    Keys: ``queries`` (evaluated), ``skipped``, ``rank{k}`` for each k (CMC), ``mAP``, ``mINP``,
    ``map_at_r``, ``mrr``, ``r_precision``. Averages are NaN when no query was evaluated.
    """
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r}")
    ok = scores.evaluated
    n = int(ok.sum())

    def mean(values: np.ndarray) -> float:
        return float(values[ok].mean()) if n else float("nan")

    result: dict[str, float | int] = {"queries": n, "skipped": int(len(ok) - n)}
    for k in ks:
        result[f"rank{int(k)}"] = mean((scores.first_rank <= k).astype(np.float64))
    result["mAP"] = mean(scores.average_precision)
    result["mINP"] = mean(scores.inverse_negative_penalty)
    result["map_at_r"] = mean(scores.map_at_r)
    result["mrr"] = mean(scores.reciprocal_rank)
    result["r_precision"] = mean(scores.r_precision)
    return result


def retrieval_metrics_from_similarity(
    sim: np.ndarray,
    query_labels: Sequence[object] | np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    kind: ScoreKind = "similarity",
) -> dict[str, float | int]:
    """Retrieval metrics of a precomputed (Q, G) matrix (re-ranked, ensembled, or plain cosine).

    Pass ``kind="distance"`` when lower values mean closer. See :func:`summarise_retrieval` for keys.
    """
    return summarise_retrieval(query_retrieval_scores(sim, query_labels, gallery_labels, exclude, kind), ks)


def retrieval_metrics(
    query_emb: np.ndarray,
    query_labels: Sequence[object] | np.ndarray,
    gallery_emb: np.ndarray,
    gallery_labels: Sequence[object] | np.ndarray,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float | int]:
    """Retrieval metrics of L2-normalised embeddings ranked by cosine similarity (dot product).

    ``query_emb`` is (Q, D), ``gallery_emb`` (G, D); rows must already be L2-normalised (the
    instance-embedding contract), since the dot product is used as is. Similarities are computed
    one block of queries at a time.
    """
    query_emb = np.asarray(query_emb)
    gallery_emb = np.asarray(gallery_emb)
    if query_emb.ndim != 2 or gallery_emb.ndim != 2 or query_emb.shape[1] != gallery_emb.shape[1]:
        raise ValueError(f"embeddings must be (Q, D) and (G, D), got {query_emb.shape} and {gallery_emb.shape}")
    q_codes, g_codes = encode_labels(query_labels, gallery_labels)
    if len(q_codes) != len(query_emb) or len(g_codes) != len(gallery_emb):
        raise ValueError("each embedding row needs exactly one label")
    if exclude is not None and np.shape(exclude) != (len(query_emb), len(gallery_emb)):
        raise ValueError(f"exclude has shape {np.shape(exclude)}, embeddings imply {(len(query_emb), len(gallery_emb))}")
    rows = max(1, _BLOCK_ELEMENTS // max(1, len(gallery_emb)))
    parts = [
        query_retrieval_scores(
            query_emb[start:start + rows] @ gallery_emb.T,
            q_codes[start:start + rows],
            g_codes,
            None if exclude is None else exclude[start:start + rows],
        )
        for start in range(0, len(query_emb), rows)
    ]
    if not parts:
        return retrieval_metrics_from_similarity(
            np.zeros((0, len(gallery_emb))), q_codes, g_codes, exclude, ks
        )
    return summarise_retrieval(QueryScores.concatenate(parts), ks)
