"""The synthetic comics generator: a valid, deterministic manifest whose identities need more than colour."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comicid.cli import synth as synth_cli
from comicid.data.crops import Box, crop_part
from comicid.data.images import load_image
from comicid.data.manifest import read_manifest
from comicid.data.synth import generate_books
from comicid.data.synth.styles import STYLES
from comicid.errors import ConfigError

SMALL_PAGE = (600, 825)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("synth")
    path = generate_books(out, books=2, characters=6, pages=4, seed=0, page_size=SMALL_PAGE, progress=False)
    assert path == out / "manifest.csv"
    return read_manifest(path)


def _instances(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(["book", "instance"], sort=True).agg(
        identity=("identity", "first"), panel=("panel", "first"), kinds=("kind", lambda k: ",".join(sorted(k))))


def test_pages_and_identifiers_follow_the_layout(manifest: pd.DataFrame) -> None:
    assert set(manifest["book"]) == {"b0", "b1"}
    for row in manifest.itertuples():
        assert Path(row.image).as_posix().endswith(f"pages/{row.book}/{row.page}.png")
        assert row.identity.startswith(f"{row.book}-c")
        assert row.panel.startswith(f"{row.page}-k") and row.instance.startswith(f"{row.panel}-i")
    assert manifest["identity"].nunique() == 12
    assert set(manifest["kind"]) == {"face", "body"}
    assert (manifest[["role", "source"]] == "").all().all()


def test_split_is_by_identity_and_half_per_book(manifest: pd.DataFrame) -> None:
    splits = manifest.groupby("identity")["split"].agg(set)
    assert all(len(values) == 1 for values in splits)
    per_book = manifest.drop_duplicates("identity").groupby("book")["split"].value_counts().unstack()
    assert (per_book["dev"] == 3).all() and (per_book["test"] == 3).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    def make(folder: str, seed: int) -> Path:
        return generate_books(tmp_path / folder, books=1, characters=3, pages=1, seed=seed, page_size=(400, 550),
                              progress=False)

    first, again, other = make("a", 5), make("b", 5), make("c", 6)
    assert first.read_bytes() == again.read_bytes()
    assert (first.parent / "pages/b0/p000.png").read_bytes() == (again.parent / "pages/b0/p000.png").read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_face_box_lies_inside_its_body_box(manifest: pd.DataFrame) -> None:
    faces = manifest[manifest["kind"] == "face"]
    bodies = manifest[manifest["kind"] == "body"]
    both = faces.merge(bodies, on=["book", "instance"], suffixes=("_f", "_b"))
    assert len(both) > 50
    inside = ((both["x0_f"] >= both["x0_b"]) & (both["y0_f"] >= both["y0_b"])
              & (both["x1_f"] <= both["x1_b"]) & (both["y1_f"] <= both["y1_b"]))
    assert inside.all()
    face_area = (both["x1_f"] - both["x0_f"]) * (both["y1_f"] - both["y0_f"])
    body_area = (both["x1_b"] - both["x0_b"]) * (both["y1_b"] - both["y0_b"])
    assert ((face_area / body_area) < 0.5).all()  # a body box is the whole figure, not a second face box


def test_panels_hold_one_to_three_distinct_identities(manifest: pd.DataFrame) -> None:
    per_panel = _instances(manifest).reset_index().groupby(["book", "panel"])["identity"]
    assert per_panel.size().between(1, 3).all()
    assert (per_panel.nunique() == per_panel.size()).all()
    assert (per_panel.size() > 1).any()


def test_sequences_are_four_consecutive_panels(manifest: pd.DataFrame) -> None:
    panels = manifest.drop_duplicates(["book", "panel"])
    assert (panels.groupby(["book", "sequence"])["panel"].nunique() == 4).all()
    for _, book in panels.groupby("book"):
        ordered = book.sort_values(["page", "panel"], key=lambda s: s.str.replace(r"k(\d)$", r"k0\1", regex=True))
        assert ordered["sequence"].is_monotonic_increasing


def test_some_instances_have_only_a_face_or_only_a_body(manifest: pd.DataFrame) -> None:
    kinds = _instances(manifest)["kinds"].value_counts(normalize=True)
    assert 0.03 <= kinds.get("face", 0) <= 0.25
    assert 0.03 <= kinds.get("body", 0) <= 0.25
    assert kinds.get("body,face", 0) >= 0.6


def test_every_identity_recurs(manifest: pd.DataFrame) -> None:
    assert (_instances(manifest).groupby("identity").size() >= 3).all()


def test_all_styles_appear_and_balloons_carry_text(manifest: pd.DataFrame) -> None:
    assert set(manifest["style"]) == set(STYLES)
    spoken = manifest[manifest["text"] != ""]
    assert 0.2 < len(spoken) / len(manifest) < 0.9
    assert (manifest.groupby(["book", "instance"])["text"].nunique() == 1).all()  # face and body agree


def _colour_histograms(bodies: pd.DataFrame) -> np.ndarray:
    """4x4x4 RGB histograms of body crops: the colour-only baseline a shape-blind model amounts to."""
    pages: dict[str, object] = {}
    features = []
    for row in bodies.itertuples():
        page = pages.setdefault(row.image, load_image(row.image))
        crop = crop_part(page, "body", Box(row.x0, row.y0, row.x1, row.y1)).resize((32, 64))
        levels = np.asarray(crop).reshape(-1, 3) // 64
        counts = np.bincount(levels[:, 0] * 16 + levels[:, 1] * 4 + levels[:, 2], minlength=64)
        features.append(counts / counts.sum())
    return np.array(features)


def test_colour_alone_does_not_identify_characters(manifest: pd.DataFrame) -> None:
    """Within-book nearest neighbour on colour histograms: measured on 2 books x 3 pages for seeds 0-7
    it scores rank-1 0.17-0.60 (mean ~0.35) against ~0.15 by chance, so colour helps but styles and
    hue shifts keep it far from solving the task. This fixture (seed 0, 4 pages) scores ~0.30."""
    bodies = manifest[manifest["kind"] == "body"].reset_index(drop=True)
    features = _colour_histograms(bodies)
    identity, book = bodies["identity"].to_numpy(), bodies["book"].to_numpy()
    distance = np.abs(features[:, None] - features[None]).sum(-1)
    np.fill_diagonal(distance, np.inf)
    distance[book[:, None] != book[None]] = np.inf
    same = (identity[:, None] == identity[None]) & ~np.eye(len(identity), dtype=bool)
    has_match = same.any(axis=1)
    rank1 = (identity[distance.argmin(axis=1)] == identity)[has_match].mean()
    chance = (same.sum(axis=1) / ((book[:, None] == book[None]).sum(axis=1) - 1))[has_match].mean()
    assert rank1 < 0.75
    assert rank1 > 1.5 * chance


@pytest.mark.parametrize(("arguments", "message"), [
    ({"books": 0}, "books must be at least 1"),
    ({"characters": 1}, "characters must be between 2"),
    ({"pages": 0}, "pages must be at least 1"),
    ({"pages": 2.5}, "pages must be a whole number"),
    ({"page_size": (100, 800)}, "page width must be at least 300"),
    ({"page_size": 800}, "page_size must be (width, height)"),
])
def test_bad_arguments_raise_config_error(tmp_path: Path, arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate_books(tmp_path, progress=False, **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "manifest.csv").exists()


def test_cli_writes_the_manifest_and_reports_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "out"), "--books", "1", "--characters", "2", "--pages", "1",
                              "--seed", "3"])
    args.quiet = False
    assert synth_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "out" / "manifest.csv") in printed and "2 identities" in printed
    assert read_manifest(tmp_path / "out" / "manifest.csv")["identity"].nunique() == 2
