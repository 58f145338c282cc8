"""Clustering metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.cluster import pair_confusion_matrix

from comicid.evaluation.clustering import clustering_metrics, clustering_metrics_by_group

SCORES = ("ari", "ami", "nmi", "v_measure", "bcubed_precision", "bcubed_recall", "bcubed_f",
          "pairwise_precision", "pairwise_recall", "pairwise_f", "wcp")


def test_hand_computed_case() -> None:
    # True: a a a b b ; predicted: 1 1 2 2 2.
    # Cluster 1 = {a, a}, cluster 2 = {a, b, b}.
    m = clustering_metrics(["a", "a", "a", "b", "b"], [1, 1, 2, 2, 2])
    # B-cubed precision per instance: a,a in c1 -> 1, 1; a in c2 -> 1/3; b,b in c2 -> 2/3, 2/3.
    assert m["bcubed_precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3) / 5)
    # B-cubed recall: a's in c1 -> 2/3 each, a in c2 -> 1/3; b's -> 1 each.
    assert m["bcubed_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5)
    # Pairs: predicted together 1 + 3 = 4, truly together 3 + 1 = 4, both: (a,a) in c1 + (b,b) in c2 = 2.
    assert m["pairwise_precision"] == pytest.approx(2 / 4)
    assert m["pairwise_recall"] == pytest.approx(2 / 4)
    assert m["pairwise_f"] == pytest.approx(0.5)
    # WCP: c1 majority 2 of 2, c2 majority 2 of 3 -> (2 + 2) / 5.
    assert m["wcp"] == pytest.approx(4 / 5)
    p, r = m["bcubed_precision"], m["bcubed_recall"]
    assert m["bcubed_f"] == pytest.approx(2 * p * r / (p + r))
    assert (m["instances"], m["pred_clusters"], m["true_clusters"]) == (5, 2, 2)


def test_perfect_clustering_scores_one_whatever_the_label_names() -> None:
    m = clustering_metrics(["x", "x", "y", "z", "z", "z"], [7, 7, 3, 0, 0, 0])
    for key in SCORES:
        assert m[key] == pytest.approx(1.0), key


def test_all_singletons() -> None:
    true = [0, 0, 1, 1, 2]
    m = clustering_metrics(true, [0, 1, 2, 3, 4])
    assert m["bcubed_precision"] == 1.0 and m["wcp"] == 1.0
    assert m["bcubed_recall"] == pytest.approx((1 / 2 * 4 + 1) / 5)
    assert m["pairwise_precision"] == 1.0  # no pair claimed, no pair wrong
    assert m["pairwise_recall"] == 0.0 and m["pairwise_f"] == 0.0
    assert m["pred_clusters"] == 5


def test_all_in_one_cluster() -> None:
    m = clustering_metrics([0, 0, 1, 1, 2], [9] * 5)
    assert m["bcubed_recall"] == 1.0 and m["pairwise_recall"] == 1.0
    assert m["bcubed_precision"] == pytest.approx((2 / 5 * 4 + 1 / 5) / 5)
    assert m["pairwise_precision"] == pytest.approx(2 / 10)
    assert m["wcp"] == pytest.approx(2 / 5)
    assert m["ari"] == pytest.approx(0.0)


def test_noise_is_one_singleton_per_instance() -> None:
    with_noise = clustering_metrics([0, 0, 0, 1], [5, 5, -1, -1])
    spelled_out = clustering_metrics([0, 0, 0, 1], [5, 5, 100, 101])
    assert with_noise == pytest.approx(spelled_out)
    assert with_noise["pred_clusters"] == 3
    as_objects = clustering_metrics([0, 0, 0, 1], np.array(["a", "a", -1, -1], dtype=object))
    assert as_objects == pytest.approx(spelled_out)


def test_pairwise_agrees_with_sklearn_pair_confusion() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, 200)
    pred = rng.integers(0, 9, 200)
    m = clustering_metrics(true, pred)
    (_, fp), (fn, tp) = pair_confusion_matrix(true, pred)  # ordered pairs: twice the unordered ones
    assert m["pairwise_precision"] == pytest.approx(tp / (tp + fp))
    assert m["pairwise_recall"] == pytest.approx(tp / (tp + fn))


def test_sklearn_scores_are_passed_through() -> None:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, 80)
    pred = rng.integers(0, 5, 80)
    m = clustering_metrics(true, pred)
    assert m["ari"] == pytest.approx(adjusted_rand_score(true, pred))
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(true, pred))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="predicted"):
        clustering_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        clustering_metrics([], [])


def test_by_group_averages_books_and_sums_counts() -> None:
    true = ["a", "a", "b", "b", "c", "c"]
    pred = [1, 1, 1, 2, 1, 1]  # book x: perfect; book y: b split in two (pred ids reused across books)
    groups = ["x", "x", "y", "y", "x", "x"]
    m = clustering_metrics_by_group(true, pred, groups)
    book_x = clustering_metrics(["a", "a", "c", "c"], [1, 1, 1, 1])
    book_y = clustering_metrics(["b", "b"], [1, 2])
    for key in SCORES:
        assert m[key] == pytest.approx((book_x[key] + book_y[key]) / 2), key
    assert m["books"] == 2
    assert m["pred_clusters"] == 1 + 2 and m["true_clusters"] == 2 + 1 and m["instances"] == 6


def test_by_group_does_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(2)
    true = rng.integers(0, 5, 60)
    pred = rng.integers(0, 4, 60)
    groups = np.array(["b1", "b2", "b3"])[rng.integers(0, 3, 60)]
    order = rng.permutation(60)
    assert clustering_metrics_by_group(true, pred, groups) == clustering_metrics_by_group(
        true[order], pred[order], groups[order]
    )


def test_books_under_two_instances_leave_the_mean_and_pooled_scores_weigh_instances() -> None:
    # A 1-instance book scores a perfect 1.0 whatever happened; it must not weigh like the big book.
    true = ["a", "a", "b", "b", "c", "c", "z"]
    pred = [0, 1, 2, 3, 4, 5, 9]  # the big book is clustered badly: all singletons
    books = ["big"] * 6 + ["tiny"]
    scores = clustering_metrics_by_group(true, pred, books)
    big = clustering_metrics(true[:6], pred[:6])
    assert scores["bcubed_f"] == pytest.approx(big["bcubed_f"])
    assert (scores["books"], scores["books_skipped"], scores["instances"]) == (1, 1, 7)
    pooled = scores["pooled"]
    assert pooled["instances"] == 7
    assert pooled["bcubed_f"] == pytest.approx(clustering_metrics([0, 0, 1, 1, 2, 2, 3], pred)["bcubed_f"])


def test_pooled_scores_keep_labels_of_two_books_apart() -> None:
    scores = clustering_metrics_by_group(["a", "a", "a", "a"], [0, 0, 0, 0], ["b1", "b1", "b2", "b2"])
    assert scores["pooled"]["true_clusters"] == 2 and scores["pooled"]["pred_clusters"] == 2
    assert scores["pooled"]["ari"] == pytest.approx(1.0)
