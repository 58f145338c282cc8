"""Crop quality from the stability of a crop's embedding under stochastic passes (after SER-FIQ).

SER-FIQ (Terhörst et al., CVPR 2020) scores a face by how little its embedding moves when the network
is run several times with dropout: a clear, typical crop lands in the same place every time, a blurred,
tiny or occluded one scatters. Here the stochastic passes are augmented views of the crop through the
frozen backbone (or dropout on its features when no views were computed), and the score is the *mean
resultant length* of the L2-normalised view embeddings: 1 when all views point the same way, smaller as
they spread. It is a monotone function of SER-FIQ's mean pairwise cosine similarity
(``mean_cos = (V * R**2 - 1) / (V - 1)``) and costs O(V N D).

The cut-off between usable and low-quality crops comes from the collection itself: Tukey's lower fence
``Q1 - 1.5 * IQR`` of its scores. A collection of clean sprites has no crop below its fence; a scanned
album with a tail of tiny background figures puts that tail below it. No absolute constant is needed,
which matters because the spread depends on the backbone, the augmentations and the art style.
"""

from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def quality_scores(views: np.ndarray) -> np.ndarray:
    """(N,) quality in [0, 1] from (V, N, D) view embeddings (any scale; normalised here).

    With a single view every crop scores 1: one pass carries no information about spread.
    """
    views = np.asarray(views, dtype=np.float64)
    if views.ndim != 3:
        raise ValueError(f"views must have shape (V, N, D), got {views.shape}")
    if views.shape[0] < 2:
        return np.ones(views.shape[1])
    return np.linalg.norm(_unit(views).mean(axis=0), axis=-1)


def low_quality_threshold(scores: np.ndarray) -> float:
    """Tukey's lower fence of the collection's scores; crops strictly below it are low quality."""
    scores = np.asarray(scores, dtype=np.float64)
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q1 - 1.5 * (q3 - q1))


def low_quality_mask(scores: np.ndarray) -> np.ndarray:
    """(N,) boolean, True for crops below the collection's lower fence."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 4:  # quartiles of three numbers say nothing about a tail
        return np.zeros(len(scores), dtype=bool)
    return scores < low_quality_threshold(scores)


def dropout_views(embeddings: np.ndarray, n_views: int, rate: float = 0.1, seed: int = 0) -> np.ndarray:
    """(n_views, N, D) feature-dropout passes, the fallback when no augmented views were computed.

    Each pass zeroes a random ``rate`` of the dimensions of every embedding and rescales the rest, like
    dropout in the last layer of the network that SER-FIQ uses. Crops whose identity signal sits in few
    dimensions move more, so the score still separates them, though less sharply than image
    augmentation does.
    """
    rng = np.random.default_rng(seed)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    keep = rng.random((n_views,) + embeddings.shape) >= rate
    return _unit(embeddings[None] * keep / (1.0 - rate)).astype(np.float32)
