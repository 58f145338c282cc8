"""Identity assignment of embedded instances: thresholds, unknowns, the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comicid.errors import ConfigError
from comicid.workflows.cluster import assign_identities, parse_threshold
from comicid.store.embeddings import InstanceEmbeddings


def embedded(vectors: np.ndarray, identities: list[str], splits: list[str] | None = None,
             panels: list[str] | None = None) -> InstanceEmbeddings:
    n = len(vectors)
    table = pd.DataFrame({"instance_key": [f"k{i}" for i in range(n)], "book": "b", "instance": "", "page": "1",
                          "panel": panels or [""] * n, "sequence": "", "identity": identities,
                          "split": splits or [""] * n, "role": "", "source": "", "text": "", "parts": "character"})
    return InstanceEmbeddings(table, vectors.astype(np.float32), "test-model")


def test_instances_without_evidence_are_unknown_not_an_error() -> None:
    vectors = np.eye(3)[[0, 0, 1, 1, 2]]
    vectors[4] = 0
    result = assign_identities(embedded(vectors, list("aabbc")), threshold=0.5, progress=False)
    ids = result.table["identity_id"].tolist()
    assert ids[0] == ids[1] != ids[2] == ids[3] and ids[4] == ""
    assert result.info["without_evidence"] == 1 and result.info["identities"] == 2


def test_same_panel_instances_stay_apart_even_when_identical() -> None:
    vectors = np.eye(2)[[0, 0, 1]]
    result = assign_identities(embedded(vectors, list("aab"), panels=["p1", "p1", ""]), threshold=0.5,
                               progress=False)
    ids = result.table["identity_id"].tolist()
    assert ids[0] != ids[1]


def test_auto_threshold_uses_dev_rows_only() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:6]  # orthogonal identities: the right threshold is unambiguous
    vectors = np.repeat(centres, 5, axis=0) + 0.05 * rng.normal(size=(30, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    identities = [f"id{i // 5}" for i in range(30)]
    splits = ["dev"] * 20 + ["test"] * 10
    result = assign_identities(embedded(vectors, identities, splits), progress=False)
    assert result.info["threshold_source"] == "dev"
    assert result.table["identity_id"].nunique() == 6


@pytest.mark.parametrize("text", ["high", "-1", "nan"])
def test_bad_thresholds_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--threshold"):
        parse_threshold(text)
    assert parse_threshold("auto") is None and parse_threshold("0.25") == 0.25
