"""WebCaricature importer on the dataset's own layout: OriginalImages/, FacialPoints/, EvaluationProtocols/."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comicid.data.importers import detect_format, load_source
from comicid.data.importers.webcaricature import import_webcaricature
from comicid.errors import ConfigError, ManifestError

PEOPLE = {"Adele Laurie Blue Adkins": ("C00001", "C00002", "P00001", "P00002"),
          "Jeff Bridges": ("C00001", "P00001", "P00002"),
          "Elizabeth Taylor": ("C00001", "C00002", "P00001")}


def _webcaricature(root: Path) -> Path:
    for person, names in PEOPLE.items():
        for name in names:
            image = root / "OriginalImages" / person / f"{name}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (80, 100), (40, 90, 160)).save(image)
            points = root / "FacialPoints" / person / f"{name}.txt"
            points.parent.mkdir(parents=True, exist_ok=True)
            # 17 landmarks spanning x 20..60, y 10..90 (hairline, ears, chin, then inner points)
            xy = [(40, 10), (20, 50), (40, 90), (60, 50)] + [(30 + i, 40 + i) for i in range(13)]
            points.write_text("\n".join(f"{x} {y}" for x, y in xy) + "\n", encoding="utf-8")
    (root / "OriginalImages" / "Jeff Bridges" / "notes.txt").write_text("not an image", encoding="utf-8")
    protocols = root / "EvaluationProtocols" / "FaceIdentification"
    for tag in ("C2P", "P2C"):
        (protocols / tag).mkdir(parents=True)
    (protocols / "FR_Train1.txt").write_text("Elizabeth Taylor\t2\t1\n", encoding="utf-8")
    (protocols / "C2P" / "FR_Probe_C2P1.txt").write_text(
        "Adele Laurie Blue Adkins\\C00001.jpg\nAdele Laurie Blue Adkins\\C00002.jpg\nJeff Bridges\\C00001.jpg\n",
        encoding="utf-8")
    (protocols / "C2P" / "FR_Gallery_C2P1.txt").write_text(
        "Adele Laurie Blue Adkins\\P00001.jpg\nJeff Bridges\\P00001.jpg\n", encoding="utf-8")
    (protocols / "P2C" / "FR_Probe_P2C1.txt").write_text(
        "Adele Laurie Blue Adkins/P00001\nJeff Bridges\tP00002\n", encoding="utf-8")
    (protocols / "P2C" / "FR_Gallery_P2C1.txt").write_text(
        "Adele Laurie Blue Adkins/C00001\nJeff Bridges/C00001\n", encoding="utf-8")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return _webcaricature(tmp_path / "WebCaricature")


def test_every_image_with_identity_domain_and_landmark_box(root: Path) -> None:
    assert detect_format(root) == "webcaricature"
    frame = load_source(root)
    assert len(frame) == sum(len(names) for names in PEOPLE.values())
    assert set(frame["kind"]) == {"face"} and set(frame["book"]) == {"webcaricature"}
    adele = frame[frame["identity"] == "Adele Laurie Blue Adkins"]
    assert sorted(adele["domain"]) == ["caricature", "caricature", "photo", "photo"]
    first = frame.iloc[0]
    # landmark box 20..60 x 10..90, grown by 10% of 40 and 80 on each side, clipped at 0
    assert (first["x0"], first["y0"], first["x1"], first["y1"]) == pytest.approx((16.0, 2.0, 64.0, 98.0))
    assert (frame["split"] == "").all() and (frame["role"] == "").all()
    assert any("notes.txt" in line for line in frame.attrs["skipped"])


@pytest.mark.parametrize(("direction", "queries", "gallery"), [
    ("c2p", {"Adele Laurie Blue Adkins/C00001", "Adele Laurie Blue Adkins/C00002", "Jeff Bridges/C00001"},
     {"Adele Laurie Blue Adkins/P00001", "Jeff Bridges/P00001"}),
    ("p2c", {"Adele Laurie Blue Adkins/P00001", "Jeff Bridges/P00002"},
     {"Adele Laurie Blue Adkins/C00001", "Jeff Bridges/C00001"}),
])
def test_a_fold_gives_splits_and_roles(root: Path, direction: str, queries: set[str], gallery: set[str]) -> None:
    frame = import_webcaricature(root, fold=1, direction=direction)
    assert set(frame.loc[frame["role"] == "query", "instance"]) == queries
    assert set(frame.loc[frame["role"] == "gallery", "instance"]) == gallery
    assert set(frame.loc[frame["split"] == "dev", "identity"]) == {"Elizabeth Taylor"}
    assert set(frame.loc[frame["split"] == "test", "identity"]) == {"Adele Laurie Blue Adkins", "Jeff Bridges"}
    domains = dict(zip(frame["instance"], frame["domain"], strict=True))
    wanted = ("caricature", "photo") if direction == "c2p" else ("photo", "caricature")
    assert {domains[key] for key in queries} == {wanted[0]} and {domains[key] for key in gallery} == {wanted[1]}


def test_protocol_problems_are_clear_errors(root: Path) -> None:
    with pytest.raises(ManifestError, match="FR_Train_dev.txt' not found"):
        import_webcaricature(root, fold="dev")
    with pytest.raises(ConfigError, match="fold"):
        import_webcaricature(root, fold=11)
    with pytest.raises(ConfigError, match="direction"):
        import_webcaricature(root, fold=1, direction="x2y")
    probe = root / "EvaluationProtocols" / "FaceIdentification" / "C2P" / "FR_Probe_C2P1.txt"
    probe.write_text("Nobody\\C00009.jpg\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="'Nobody/C00009' is not in OriginalImages"):
        import_webcaricature(root, fold=1)
    with pytest.raises(ManifestError, match="OriginalImages"):
        import_webcaricature(root / "OriginalImages")
