"""Scores of text read from pages: character error rate, and whether text reached the right instance."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein


def character_error_rate(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Sum of Levenshtein edits over the sum of true lengths (an unread text costs its whole length).

    Texts are compared with runs of whitespace squeezed to one space; the rate can exceed 1 when
    predictions hold text that is not there.
    """
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted texts for {len(truth)} true ones")
    edits = total = 0
    for guess, reference in zip(predicted, truth, strict=True):
        guess, reference = " ".join(guess.split()), " ".join(reference.split())
        edits += Levenshtein.distance(guess, reference)
        total += len(reference)
    return edits / total if total else 0.0
