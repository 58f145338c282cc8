"""Pages composed from real character drawings (`comicid synth --characters MANIFEST`), on a tiny generated set."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from comicid.cli import synth as synth_cli
from comicid.data.images import load_image
from comicid.data.manifest import read_manifest
from comicid.data.synth.real_art import generate_art_books, read_character_pool
from comicid.errors import ConfigError

PAGE = (420, 580)
HEAD, SHIRT = (230, 20, 20), (20, 40, 230)


def _figure(path: Path, shade: int, poses: int, transparent: bool) -> tuple[int, int, int, int]:
    """A stick figure: a red head disk over a blue body; ``shade`` marks the identity (hat width)."""
    image = Image.new("RGBA" if transparent else "RGB", (60, 140), (255, 255, 255, 0) if transparent else "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((15, 4, 45, 34), fill=HEAD, outline="black")
    draw.rectangle((30 - 4 - shade, 0, 30 + 4 + shade, 6), fill="black")  # the identity's hat
    draw.rectangle((12 + poses, 36, 48 - poses, 110), fill=SHIRT, outline="black")
    draw.rectangle((18, 110, 26, 138), fill="black")
    draw.rectangle((34, 110, 42, 138), fill="black")
    image.save(path)
    return 15, 4, 46, 35


def _face_body_manifest(folder: Path, identities: int = 4, drawings: int = 3) -> Path:
    rows = []
    for i in range(identities):
        for j in range(drawings):
            name = f"c{i}_{j}.png"
            box = _figure(folder / name, i * 3, j * 2, transparent=True)
            common = {"identity": f"char{i}", "instance": f"{i}-{j}", "book": "src", "split": "dev" if i % 2 else "test",
                      "source": f"char{i}/{j}"}
            rows.append({"image": name, "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3], "kind": "face", **common})
            rows.append({"image": name, "x0": "", "y0": "", "x1": "", "y1": "", "kind": "body", **common})
    path = folder / "face_body.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _figures_manifest(folder: Path) -> Path:
    rows = []
    for i in range(3):
        for j in range(2):
            name = f"f{i}_{j}.png"
            _figure(folder / name, i * 3, j * 2, transparent=False)  # opaque: cut out along the white paper
            rows.append({"image": name, "identity": f"fig{i}", "kind": "character", "split": "dev" if i else "test"})
    path = folder / "figures.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("art")
    source = _face_body_manifest(folder)
    out = folder / "pages"
    path = generate_art_books(out, source, books=2, cast=3, pages=3, seed=0, page_size=PAGE, styles=("colour",),
                              progress=False)
    return source, read_manifest(path)


def test_pool_pairs_face_and_body_of_an_instance(art: tuple[Path, pd.DataFrame]) -> None:
    pool = read_character_pool(art[0])
    assert sorted(pool.figures) == ["char0", "char1", "char2", "char3"]
    assert all(len(figures) == 3 and all(f.face is not None and f.has_body for f in figures)
               for figures in pool.figures.values())
    assert pool.splits == {"char0": "test", "char1": "dev", "char2": "test", "char3": "dev"}


def test_rows_keep_identities_splits_and_page_structure(art: tuple[Path, pd.DataFrame]) -> None:
    frame = art[1]
    assert set(frame["book"]) == {"b0", "b1"}
    assert set(frame["identity"]) <= {"char0", "char1", "char2", "char3"}
    expected = {"char0": "test", "char1": "dev", "char2": "test", "char3": "dev"}
    assert all(expected[identity] == split for identity, split in zip(frame["identity"], frame["split"], strict=True))
    for (book, _), rows in frame.groupby(["book", "panel"]):
        per_instance = rows.groupby("instance")["identity"].first()
        assert per_instance.is_unique, f"{book}: one identity twice in a panel"
    for book, rows in frame.groupby("book"):
        counts = rows.groupby("identity")["instance"].nunique()
        assert len(counts) == 3 and counts.min() >= 3, f"{book}: every cast member recurs ({counts.to_dict()})"
        assert {"dev", "test"} <= set(rows["split"]), "each book's cast takes from both splits"


def test_face_boxes_follow_the_drawing(art: tuple[Path, pd.DataFrame]) -> None:
    """Face boxes lie inside their body box and land on the red head after scaling, flipping and placement."""
    frame = art[1]
    on_head = []
    pages: dict[str, np.ndarray] = {}
    for _, rows in frame.groupby(["book", "instance"]):
        face = rows[rows["kind"] == "face"]
        body = rows[rows["kind"] == "body"]
        if len(face) and len(body):
            f, b = face.iloc[0], body.iloc[0]
            assert b.x0 <= f.x0 and b.y0 <= f.y0 and f.x1 <= b.x1 and f.y1 <= b.y1
        for row in face.itertuples():
            pixels = pages.setdefault(row.image, np.asarray(load_image(row.image), dtype=np.int32))
            crop = pixels[int(row.y0):int(row.y1), int(row.x0):int(row.x1)].reshape(-1, 3)
            red = ((crop[:, 0] > 150) & (crop[:, 1] < 110) & (crop[:, 2] < 110)).mean()
            blue = ((crop[:, 2] > 150) & (crop[:, 0] < 110)).mean()
            on_head.append(red > 0.3 and blue < 0.15)
    assert len(on_head) >= 10
    assert np.mean(on_head) >= 0.8, f"only {np.mean(on_head):.2f} of face boxes cover a head"


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    source = _face_body_manifest(tmp_path)
    paths = [generate_art_books(tmp_path / name, source, books=1, cast=2, pages=1, seed=seed, page_size=PAGE,
                                progress=False) for name, seed in (("a", 4), ("b", 4), ("c", 5))]
    page = Path("pages/b0/p000.png")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert (paths[0].parent / page).read_bytes() == (paths[1].parent / page).read_bytes()
    assert (paths[0].parent / page).read_bytes() != (paths[2].parent / page).read_bytes()


def test_figure_only_source_gives_bodies_without_invented_faces(tmp_path: Path) -> None:
    path = generate_art_books(tmp_path / "out", _figures_manifest(tmp_path), books=1, cast=3, pages=2, seed=0,
                              page_size=PAGE, progress=False)
    frame = read_manifest(path)
    assert set(frame["kind"]) == {"body"}
    assert set(frame["identity"]) == {"fig0", "fig1", "fig2"}
    # the opaque drawing was cut out: its white paper does not hide the panel's background or neighbours
    widths = (frame["x1"] - frame["x0"]) / (frame["y1"] - frame["y0"])
    assert widths.median() < 0.6  # tight around the 60x140 figure, not a square of paper


def test_user_errors(tmp_path: Path) -> None:
    source = _face_body_manifest(tmp_path, identities=2)
    with pytest.raises(ConfigError, match="cast must be between 2 and the 2"):
        generate_art_books(tmp_path / "o", source, cast=3, progress=False)
    with pytest.raises(ConfigError, match="styles"):
        generate_art_books(tmp_path / "o", source, cast=2, styles=("sepia",), progress=False)
    mixed = pd.read_csv(source)
    mixed.loc[0, "split"] = "dev" if mixed.loc[0, "split"] == "test" else "test"
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ConfigError, match="more than one split"):
        read_character_pool(tmp_path / "mixed.csv")


def test_cli_takes_a_manifest_or_a_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    source = _face_body_manifest(tmp_path)
    args = parser.parse_args([str(tmp_path / "out"), "--characters", str(source), "--cast", "2", "--books", "1",
                              "--pages", "1", "--styles", "grayscale"])
    assert synth_cli.run(args) == 0
    assert "1 books x 1 pages" in capsys.readouterr().out
    assert set(read_manifest(tmp_path / "out" / "manifest.csv")["style"]) == {"grayscale"}
    args = parser.parse_args([str(tmp_path / "p"), "--characters", "3", "--cast", "2"])
    with pytest.raises(ConfigError, match="composed pages only"):
        synth_cli.run(args)
