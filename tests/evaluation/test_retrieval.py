"""Retrieval metrics against hand-computed rankings and pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest

from comicid.evaluation import retrieval
from comicid.evaluation.retrieval import (
    encode_labels,
    exclusion_mask,
    query_retrieval_scores,
    retrieval_metrics,
    retrieval_metrics_from_similarity,
)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_hand_computed_single_query() -> None:
    # Ranked labels: b a b a c -> relevant at positions 2 and 4 (R = 2).
    sim = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    m = retrieval_metrics_from_similarity(sim, ["a"], ["b", "a", "b", "a", "c"])
    assert m["queries"] == 1 and m["skipped"] == 0
    assert (m["rank1"], m["rank5"], m["rank10"]) == (0.0, 1.0, 1.0)
    assert m["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m["mINP"] == pytest.approx(2 / 4)
    assert m["map_at_r"] == pytest.approx((0 + 1 / 2) / 2)
    assert m["mrr"] == pytest.approx(1 / 2)
    assert m["r_precision"] == pytest.approx(1 / 2)


def test_hand_computed_two_queries_are_averaged() -> None:
    # Both queries see the gallery ranked x y x.
    # Query x: hits at 1 and 3 -> AP = (1/1 + 2/3) / 2, INP = 2/3, MAP@R (R=2) = (1 + 0) / 2.
    # Query y: hit at 2 -> AP = 1/2, INP = 1/2, MAP@R (R=1) = 0.
    sim = np.array([[0.9, 0.5, 0.1], [0.9, 0.8, 0.1]])
    m = retrieval_metrics_from_similarity(sim, ["x", "y"], ["x", "y", "x"], ks=(1, 2, 3))
    assert (m["rank1"], m["rank2"], m["rank3"]) == (0.5, 1.0, 1.0)
    assert m["mAP"] == pytest.approx(np.mean([(1 + 2 / 3) / 2, 1 / 2]))
    assert m["mINP"] == pytest.approx(np.mean([2 / 3, 1 / 2]))
    assert m["map_at_r"] == pytest.approx(np.mean([1 / 2, 0.0]))
    assert m["mrr"] == pytest.approx(np.mean([1.0, 1 / 2]))


def test_ties_count_against_the_query_whatever_the_row_order() -> None:
    sim = np.zeros((1, 4))
    q = query_retrieval_scores(sim, ["a"], ["b", "a", "b", "a"])
    assert q.first_rank.tolist() == [3]  # both tied negatives rank first
    assert q.inverse_negative_penalty.tolist() == [pytest.approx(2 / 4)]
    q_first = query_retrieval_scores(sim, ["a"], ["a", "b", "a", "b"])
    assert q_first.first_rank.tolist() == [3]  # the same gallery in another order: the same result


def test_retrieval_metrics_do_not_depend_on_gallery_order() -> None:
    rng = np.random.default_rng(3)
    # Coarse embeddings: many exact ties between distinct identities.
    emb = rng.integers(0, 2, size=(60, 3)).astype(np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    labels = rng.integers(0, 6, size=60)
    forward = retrieval_metrics(emb[:20], labels[:20], emb[20:], labels[20:])
    order = np.arange(20, 60)[::-1]
    backward = retrieval_metrics(emb[:20], labels[:20], emb[order], labels[order])
    assert forward == pytest.approx(backward)


def test_exclusion_removes_items_and_their_positions() -> None:
    sim = np.array([[0.9, 0.8, 0.7]])
    gallery = ["a", "b", "a"]
    keep_all = query_retrieval_scores(sim, ["a"], gallery)
    assert keep_all.num_relevant.tolist() == [2]
    drop_best_match = query_retrieval_scores(sim, ["a"], gallery, exclude=np.array([[True, False, False]]))
    assert drop_best_match.num_relevant.tolist() == [1]
    assert drop_best_match.first_rank.tolist() == [2]
    drop_distractor = query_retrieval_scores(
        sim, ["a"], gallery, exclude=np.array([[True, True, False]])
    )
    assert drop_distractor.first_rank.tolist() == [1]
    assert drop_distractor.average_precision.tolist() == [1.0]


def test_queries_without_a_match_are_skipped_and_counted() -> None:
    sim = np.array([[0.9, 0.1], [0.2, 0.3], [0.5, 0.4]])
    exclude = np.array([[False, False], [False, False], [True, False]])
    m = retrieval_metrics_from_similarity(sim, ["a", "zzz", "a"], ["a", "b"], exclude=exclude)
    assert m["queries"] == 1 and m["skipped"] == 2
    assert m["rank1"] == 1.0 and m["mAP"] == 1.0


def test_no_evaluated_query_gives_nan_averages() -> None:
    m = retrieval_metrics_from_similarity(np.ones((1, 1)), ["a"], ["b"])
    assert m["queries"] == 0 and m["skipped"] == 1 and np.isnan(m["mAP"])


def test_distance_matrix_ranks_ascending() -> None:
    rng = np.random.default_rng(1)
    sim = rng.normal(size=(7, 11))
    q_labels = rng.integers(0, 3, 7)
    g_labels = rng.integers(0, 3, 11)
    by_sim = retrieval_metrics_from_similarity(sim, q_labels, g_labels)
    by_dist = retrieval_metrics_from_similarity(1 - sim, q_labels, g_labels, kind="distance")
    assert by_sim == pytest.approx(by_dist)


def test_embedding_version_matches_matrix_version_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    query = _unit(rng.normal(size=(23, 5)))
    gallery = _unit(rng.normal(size=(31, 5)))
    q_labels = rng.integers(0, 4, 23)
    g_labels = rng.integers(0, 4, 31)
    exclude = rng.random((23, 31)) < 0.2
    whole = retrieval_metrics_from_similarity(query @ gallery.T, q_labels, g_labels, exclude)
    monkeypatch.setattr(retrieval, "_BLOCK_ELEMENTS", 40)  # one or two queries per block
    blocked = retrieval_metrics(query, q_labels, gallery, g_labels, exclude)
    assert blocked == pytest.approx(whole)


def test_nan_scores_and_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        query_retrieval_scores(np.array([[np.nan, 1.0]]), ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        query_retrieval_scores(np.ones((2, 2)), ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="exclude"):
        query_retrieval_scores(np.ones((1, 2)), ["a"], ["a", "b"], exclude=np.ones((2, 2), bool))


def test_exclusion_mask_sources_and_ids() -> None:
    labels = dict(query_labels=["x", "x", "y"], gallery_labels=["x", "x", "y"])
    mask = exclusion_mask(["s1", "", None], ["s1", "", "s2"], query_ids=[10, 11, 12], gallery_ids=[12, 11, 99],
                          **labels)
    assert mask.tolist() == [
        [True, False, False],  # same source s1 and same identity x
        [False, True, False],  # empty source never excludes; same id 11 does
        [True, False, False],  # same id 12
    ]
    with pytest.raises(ValueError):
        exclusion_mask(["a"], ["a"], query_ids=[1])


def test_the_source_rule_is_same_source_and_same_identity() -> None:
    # re-ID's same-camera rule: a same-source item of another identity stays as a distractor.
    mask = exclusion_mask(["s1"], ["s1", "s1", "s2"], query_labels=["alice"], gallery_labels=["alice", "bob", "alice"])
    assert mask.tolist() == [[True, False, False]]
    with pytest.raises(ValueError, match="labels"):  # the rule cannot be applied without identities
        exclusion_mask(["s1"], ["s1"])


def test_labels_may_mix_types_and_codes_ignore_order() -> None:
    a, b = encode_labels(["b", 1, "a", 1], [2, "b"])
    assert a[0] == b[1] and a[1] == a[3] and len(set(a.tolist()) | set(b.tolist())) == 4
    (forward,) = encode_labels(["z", "y", "x"])
    (backward,) = encode_labels(["x", "y", "z"])
    assert forward.tolist() == backward.tolist()[::-1]
    m = retrieval_metrics_from_similarity(np.array([[0.9, 0.1]]), [7], ["7", 7])
    assert m["rank1"] == 0.0  # the string "7" is not the int 7


@pytest.mark.parametrize("leave_one_out", [True, False])
def test_agrees_with_pytorch_metric_learning(leave_one_out: bool) -> None:
    torch = pytest.importorskip("torch")
    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 12, 150)
    emb = _unit(rng.normal(size=(150, 16)) + 1.5 * rng.normal(size=(12, 16))[labels]).astype(np.float32)
    calculator = accuracy.AccuracyCalculator(
        include=("mean_average_precision_at_r", "precision_at_1"), k="max_bin_count", device=torch.device("cpu")
    )
    if leave_one_out:
        ids = np.arange(len(emb))
        ours = retrieval_metrics(emb, labels, emb, labels, exclude=exclusion_mask([""] * 150, [""] * 150, ids, ids))
        theirs = calculator.get_accuracy(torch.from_numpy(emb), torch.from_numpy(labels), ref_includes_query=True)
    else:
        query, gallery = slice(0, 50), slice(50, None)
        ours = retrieval_metrics(emb[query], labels[query], emb[gallery], labels[gallery])
        theirs = calculator.get_accuracy(
            torch.from_numpy(emb[query]), torch.from_numpy(labels[query]),
            torch.from_numpy(emb[gallery]), torch.from_numpy(labels[gallery]),
        )
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    assert ours["rank1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
