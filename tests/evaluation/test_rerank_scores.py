"""Evaluation with --rerank: block-by-block scoring equals scoring the dense re-ranked matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd

from comicid.workflows.evaluate import retrieval_scores
from comicid.evaluation.retrieval import exclusion_mask, retrieval_metrics_from_similarity
from comicid.identity.rerank import KReciprocalReranker
from comicid.store.embeddings import INSTANCE_COLUMNS, InstanceEmbeddings


def test_blockwise_reranked_scores_equal_the_dense_computation() -> None:
    rng = np.random.default_rng(0)
    n = 150  # more than one block of 64 queries
    identity = rng.integers(0, 30, n)
    centre = rng.normal(size=(30, 8))
    vectors = centre[identity] + 0.8 * rng.normal(size=(n, 8))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    table = pd.DataFrame({column: [""] * n for column in INSTANCE_COLUMNS})
    table["identity"] = [f"id{i}" for i in identity]
    table["source"] = [f"s{i % 7}" for i in range(n)]
    embedded = InstanceEmbeddings(table, vectors, "test")

    got = retrieval_scores(embedded, rerank=True)
    rows = np.arange(n)
    distance = KReciprocalReranker().fit(vectors).distances(rows, rows)
    labels = table["identity"].to_numpy()
    exclude = exclusion_mask(table["source"].to_numpy(), table["source"].to_numpy(), rows, rows,
                             query_labels=labels, gallery_labels=labels)
    expected = retrieval_metrics_from_similarity(distance, table["identity"].to_numpy(), table["identity"].to_numpy(),
                                                 exclude, kind="distance")
    for key in ("rank1", "mAP", "mINP", "map_at_r", "queries"):
        assert got[key] == expected[key]
    assert got["reranked"] is True and got["protocol"] == "leave-one-out"
    assert got["mAP"] != retrieval_scores(embedded)["mAP"]  # re-ranking changed the ranking
