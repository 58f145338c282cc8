"""Manga109 importer on the dataset's own layout: books.txt, annotations/<title>.xml, images/<title>/."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from comicid.data.importers.manga109 import import_manga109
from comicid.errors import ConfigError, ManifestError

BOOK_XML = """<?xml version="1.0" encoding="utf-8"?>
<book title="TinyTale">
  <characters>
    <character id="00000a01" name="Hero" />
    <character id="00000a02" name="Cat" />
  </characters>
  <pages>
    <page index="0" width="200" height="100">
      <frame id="f001" xmin="0" ymin="0" xmax="100" ymax="100" />
      <frame id="f002" xmin="100" ymin="0" xmax="200" ymax="100" />
      <frame id="f003" xmin="150" ymin="50" xmax="200" ymax="100" />
      <text id="t001" xmin="10" ymin="70" xmax="40" ymax="90">Hello!</text>
      <text id="t002" xmin="60" ymin="70" xmax="90" ymax="90">Who are you?</text>
      <face id="a001" xmin="10" ymin="10" xmax="30" ymax="30" character="00000a01" />
      <body id="a002" xmin="5" ymin="5" xmax="45" ymax="95" character="00000a01" />
      <face id="a003" xmin="110" ymin="10" xmax="120" ymax="20" character="00000a02" />
      <face id="a004" xmin="130" ymin="10" xmax="140" ymax="20" character="00000a02" />
      <body id="a005" xmin="105" ymin="5" xmax="145" ymax="45" character="00000a02" />
      <face id="a006" xmin="160" ymin="60" xmax="170" ymax="70" character="00000a01" />
      <body id="a007" xmin="240" ymin="10" xmax="260" ymax="30" character="00000a02" />
    </page>
    <page index="1" width="200" height="100" />
  </pages>
</book>
"""


def _manga109(root: Path, xml: str = BOOK_XML) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "TinyTale").mkdir(parents=True)
    (root / "books.txt").write_text("TinyTale\n")
    (root / "annotations" / "TinyTale.xml").write_text(xml, encoding="utf-8")
    for index in (0, 1):
        Image.new("RGB", (300, 100), "white").save(root / "images" / "TinyTale" / f"{index:03d}.jpg")
    return root


def test_faces_and_bodies_with_panels_texts_and_pairs(tmp_path: Path) -> None:
    root = _manga109(tmp_path)

    frame = import_manga109(root)

    assert frame["annotation_id"].tolist() == ["a001", "a003", "a004", "a006", "a002", "a005", "a007"]
    assert frame["kind"].tolist() == ["face"] * 4 + ["body"] * 3
    assert frame["identity"].tolist() == ["00000a01", "00000a02", "00000a02", "00000a01",
                                          "00000a01", "00000a02", "00000a02"]
    # a006's centre lies in f002 and in the smaller f003; a007 lies outside every frame
    assert frame["panel"].tolist() == ["f001", "f002", "f002", "f003", "f001", "f002", ""]
    assert frame["text"].tolist() == ["Hello! Who are you?", "", "", "", "Hello! Who are you?", "", ""]
    # only the Hero in f001 has exactly one face and one body; the Cat in f002 has two faces
    assert frame["instance"].tolist() == ["a001+a002", "", "", "", "a001+a002", "", ""]
    assert frame[["x0", "y0", "x1", "y1"]].iloc[0].tolist() == [10, 10, 30, 30]
    assert set(frame["book"]) == {"TinyTale"} and set(frame["page"]) == {"0"}
    assert Path(frame["image"][0]) == root / "images" / "TinyTale" / "000.jpg"


def test_identity_by_name(tmp_path: Path) -> None:
    frame = import_manga109(_manga109(tmp_path), identity="name")
    assert frame["identity"].tolist()[:2] == ["Hero", "Cat"]
    with pytest.raises(ConfigError, match="identity 'nick' is not one of id, name"):
        import_manga109(tmp_path, identity="nick")


def test_unknown_character_and_bad_box(tmp_path: Path) -> None:
    xml = BOOK_XML.replace('ymax="20" character="00000a02" />\n      <face id="a004"',
                           'ymax="20" character="0000beef" />\n      <face id="a004"')
    xml = xml.replace('<body id="a007" xmin="240"', '<body id="a007" xmin="left"')
    with pytest.raises(ManifestError) as caught:
        import_manga109(_manga109(tmp_path, xml))
    assert caught.value.problems == [
        "page 0: face 'a003' names character '0000beef', which is not in <characters>",
        "page 0: body 'a007' has no numeric xmin/ymin/xmax/ymax",
    ]


def test_layout_errors(tmp_path: Path) -> None:
    root = _manga109(tmp_path, BOOK_XML.replace("</pages>", ""))
    with pytest.raises(ManifestError, match=r"TinyTale.xml' is not valid XML \(mismatched tag"):
        import_manga109(root)
    with pytest.raises(ManifestError, match="book 'Other' is not in books.txt"):
        import_manga109(root, books=["Other"])
    (root / "annotations" / "TinyTale.xml").unlink()
    with pytest.raises(ManifestError, match="'TinyTale' is listed in books.txt but '.*TinyTale.xml' is missing"):
        import_manga109(root)
    with pytest.raises(ManifestError, match="is not a Manga109 folder: books.txt not found"):
        import_manga109(tmp_path / "elsewhere")


def test_frame_text_is_kept_by_import_into_a_collection(tmp_path: Path) -> None:
    from comicid.cli import main
    from comicid.store.collection import Collection
    from comicid.store.embeddings import instance_table

    root = _manga109(tmp_path / "src")
    assert main(["-q", "import", str(root), "--out", str(tmp_path / "c")]) == 0
    table, _ = instance_table(Collection.open(tmp_path / "c").instances())
    assert set(table.loc[table["panel"] == "f001", "text"]) == {"Hello! Who are you?"}
    assert set(table.loc[table["panel"] != "f001", "text"]) == {""}
