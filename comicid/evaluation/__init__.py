"""Evaluation: retrieval and clustering metrics and the paper's re-identification protocols.

Pure numpy/scikit-learn, deterministic (no dependence on set order or hash seeds). Definitions and
conventions are in docs/METRICS.md.
"""

from comicid.evaluation.clustering import NOISE, clustering_metrics, clustering_metrics_by_group
from comicid.evaluation.protocols import global_protocol, local_protocol
from comicid.evaluation.retrieval import (
    QueryScores,
    encode_labels,
    exclusion_mask,
    query_retrieval_scores,
    retrieval_metrics,
    retrieval_metrics_from_similarity,
    summarise_retrieval,
)

__all__ = [
    "NOISE",
    "QueryScores",
    "clustering_metrics",
    "clustering_metrics_by_group",
    "encode_labels",
    "exclusion_mask",
    "global_protocol",
    "local_protocol",
    "query_retrieval_scores",
    "retrieval_metrics",
    "retrieval_metrics_from_similarity",
    "summarise_retrieval",
]
