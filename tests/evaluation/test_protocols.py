"""The local (within-book) and global (across-books) protocols."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from comicid.evaluation.protocols import global_protocol, local_protocol


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _angles(degrees: list[float]) -> np.ndarray:
    """Points on the unit circle: the cosine ranking follows the angular distance."""
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def _brute_force_local(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loop-by-loop reference: leave-one-out per query, averaged per class then over classes."""
    per_class: dict[object, list[tuple[float, float, float, float]]] = {}
    for q in range(len(emb)):
        others = [g for g in range(len(emb)) if g != q]
        ranked = sorted(others, key=lambda g: (-float(emb[q] @ emb[g]), g))
        relevant = [labels[g] == labels[q] for g in ranked]
        r = sum(relevant)
        hits = 0
        precisions = []
        for position, rel in enumerate(relevant[:r], start=1):
            hits += rel
            if rel:
                precisions.append(hits / position)
        first = relevant.index(True) + 1
        per_class.setdefault(labels[q], []).append(
            (sum(precisions) / r, float(first == 1), 1 / first, sum(relevant[:r]) / r)
        )
    class_means = np.array([np.mean(v, axis=0) for _, v in sorted(per_class.items())])
    return dict(zip(("map_at_r", "precision_at_1", "mrr", "r_precision"), class_means.mean(axis=0)))


def test_local_hand_computed() -> None:
    # One book. A at 0, 10, 100 degrees; B at 90, 96 degrees.
    emb = _angles([0, 10, 100, 90, 96])
    labels = np.array(["A", "A", "A", "B", "B"])
    m = local_protocol(emb, labels, ["book"] * 5, min_instances=2)
    # A@0: A10, B90, B96, A100 -> MAP@R (R=2) = 1/2, P@1 = 1, RR = 1, R-prec = 1/2.
    # A@10: A0, B90, B96, A100 -> same as A@0.
    # A@100: B96, B90, A10, A0 -> MAP@R 0, P@1 0, RR 1/3, R-prec 0.
    # B@90: B96, A100, A10, A0 -> MAP@R (R=1) 1, P@1 1, RR 1, R-prec 1.
    # B@96: A100 (4 degrees), B90 (6 degrees), ... -> MAP@R 0, P@1 0, RR 1/2, R-prec 0.
    a = np.array([[1 / 2, 1, 1, 1 / 2], [1 / 2, 1, 1, 1 / 2], [0, 0, 1 / 3, 0]]).mean(axis=0)
    b = np.array([[1, 1, 1, 1], [0, 0, 1 / 2, 0]]).mean(axis=0)
    expected = (a + b) / 2
    got = [m[k] for k in ("map_at_r", "precision_at_1", "mrr", "r_precision")]
    assert got == pytest.approx(expected.tolist())
    assert (m["queries"], m["characters"], m["groups"]) == (5, 2, 1)


def test_local_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 40)
    emb = _unit(rng.normal(size=(40, 6)) + rng.normal(size=(5, 6))[labels])
    m = local_protocol(emb, labels, np.zeros(40, int), min_instances=2)
    assert {k: m[k] for k in ("map_at_r", "precision_at_1", "mrr", "r_precision")} == pytest.approx(
        _brute_force_local(emb, labels)
    )


def test_local_agrees_with_pytorch_metric_learning_class_average() -> None:
    torch = pytest.importorskip("torch")
    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(8), rng.integers(2, 9, 8))
    emb = _unit(rng.normal(size=(len(labels), 12)) + rng.normal(size=(8, 12))[labels]).astype(np.float32)
    calculator = accuracy.AccuracyCalculator(
        include=("mean_average_precision_at_r", "precision_at_1"), k="max_bin_count",
        avg_of_avgs=True, device=torch.device("cpu"),
    )
    theirs = calculator.get_accuracy(torch.from_numpy(emb), torch.from_numpy(labels), ref_includes_query=True)
    ours = local_protocol(emb, labels, np.zeros(len(labels), int), min_instances=2)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)


def test_local_drops_rare_characters_and_keeps_books_apart() -> None:
    emb = _angles([0, 10, 100, 90, 95])
    labels = np.array(["A", "A", "A", "B", "B"])
    base = local_protocol(emb, labels, ["b1"] * 5, min_instances=2)
    # A rare character (1 instance) right next to A@0 is removed, not used as a distractor.
    with_rare = local_protocol(
        np.vstack([emb, _angles([1])]), np.append(labels, "C"), ["b1"] * 6, min_instances=2
    )
    # A second book holding the same points: never ranked against book 1; the same labels there
    # are other characters, so every score is the same and the counts double.
    two_books = local_protocol(np.vstack([emb, emb]), np.concatenate([labels, labels]),
                               ["b1"] * 5 + ["b2"] * 5, min_instances=2)
    for key in ("map_at_r", "precision_at_1", "mrr", "r_precision"):
        assert with_rare[key] == pytest.approx(base[key])
        assert two_books[key] == pytest.approx(base[key])
    assert (with_rare["skipped_characters"], with_rare["skipped_instances"]) == (1, 1)
    assert (two_books["characters"], two_books["groups"], two_books["queries"]) == (4, 2, 10)
    assert local_protocol(emb, labels, ["b1"] * 5)["queries"] == 0  # default min_instances=5
    assert np.isnan(local_protocol(emb, labels, ["b1"] * 5)["map_at_r"])


def test_global_perfect_and_distracted() -> None:
    # Two books; each character's instances share one direction, all directions orthogonal.
    emb = np.eye(4)[[0, 0, 1, 1, 2, 2, 3]]
    labels = ["a", "a", "b", "b", "a", "a", "z"]
    groups = ["b1", "b1", "b1", "b1", "b2", "b2", "b2"]
    m = global_protocol(emb, labels, groups)
    assert (m["map_at_r"], m["precision_at_1"], m["mrr"], m["r_precision"]) == (1.0, 1.0, 1.0, 1.0)
    assert (m["queries"], m["characters"], m["skipped_characters"], m["groups"], m["references"]) == (3, 3, 1, 2, 6)
    # "a" of book 2 now sits on "a" of book 1: a different character (same label, other book),
    # so its queries meet a distractor at similarity 1 tied with their true match.
    confused = global_protocol(np.eye(4)[[0, 0, 1, 1, 0, 0, 3]], labels, groups)
    assert confused["precision_at_1"] < 1.0


def test_global_is_seeded_and_one_query_per_character() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 80)
    groups = rng.integers(0, 3, 80)
    emb = _unit(rng.normal(size=(80, 8)) + rng.normal(size=(10, 8))[labels])
    first = global_protocol(emb, labels, groups, seed=5)
    assert first == global_protocol(emb, labels, groups, seed=5)
    characters = len(set(zip(groups.tolist(), labels.tolist())))
    assert first["queries"] + first["skipped_characters"] == characters
    results = {global_protocol(emb, labels, groups, seed=s)["mrr"] for s in range(6)}
    assert len(results) > 1  # the seed picks the query


_HASH_SCRIPT = """
import json, numpy as np
from comicid.evaluation.protocols import global_protocol, local_protocol
rng = np.random.default_rng(3)
names = np.array(["ann", "bob", "cy", "dee", "eve", "fay"])
labels = names[rng.integers(0, 6, 60)].tolist()
groups = np.array(["vol1", "vol2"])[rng.integers(0, 2, 60)].tolist()
emb = rng.normal(size=(60, 5)); emb /= np.linalg.norm(emb, axis=1, keepdims=True)
print(json.dumps([global_protocol(emb, labels, groups), local_protocol(emb, labels, groups, min_instances=3)]))
"""


def test_results_do_not_depend_on_the_hash_seed(capsys: pytest.CaptureFixture[str]) -> None:
    # This process runs with a random hash seed; the child with hash randomisation switched off.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    child = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True, env=env, check=True)
    exec(compile(_HASH_SCRIPT, "<hash-script>", "exec"), {})
    assert json.loads(capsys.readouterr().out) == json.loads(child.stdout)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_instances"):
        local_protocol(np.eye(2), [0, 0], [0, 0], min_instances=1)
    with pytest.raises(ValueError, match="lengths"):
        global_protocol(np.eye(3), [0, 0], [0, 0])


def test_protocols_leave_out_same_source_frames_of_the_same_character() -> None:
    # Each character has two near-duplicate frames in one source and one drawing elsewhere; the
    # duplicates are nearest to each other, so without the source rule P@1 is a perfect 1.0.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    rows, labels, sources = [], [], []
    for character, centre in enumerate(centres):
        frame = centre + rng.normal(scale=0.05, size=8)
        for source, vector in (("anim", frame), ("anim", frame + 1e-3), ("art", rng.normal(size=8))):  # another style: unrelated
            rows.append(vector)
            labels.append(character)
            sources.append(f"{source}{character}")
    emb = np.asarray(rows) / np.linalg.norm(rows, axis=1, keepdims=True)
    groups = np.zeros(len(emb), dtype=int)
    plain = local_protocol(emb, labels, groups, min_instances=3)
    ruled = local_protocol(emb, labels, groups, min_instances=3, sources=sources)
    assert plain["precision_at_1"] >= 2 / 3 - 1e-9  # every animation frame finds its twin
    assert ruled["precision_at_1"] < plain["precision_at_1"]
    ruled_global = global_protocol(emb, labels, groups, sources=sources)
    assert ruled_global["queries"] == global_protocol(emb, labels, groups)["queries"] == 3
