"""Format detection and option checking of ``load_source``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comicid.data.importers import IMPORTERS, detect_format, load_source
from comicid.errors import ConfigError, ManifestError


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "white").save(path)


def test_registry_names() -> None:
    assert sorted(IMPORTERS) == ["coco", "comics", "folder", "manga109", "manifest", "webcaricature"]


def test_detects_each_layout(tmp_path: Path) -> None:
    for name in ("m.csv", "m.parquet", "a.json"):
        (tmp_path / name).write_text("")
    (tmp_path / "manga" / "annotations").mkdir(parents=True)
    (tmp_path / "manga" / "images").mkdir()
    (tmp_path / "manga" / "books.txt").write_text("")
    (tmp_path / "comics" / "ssl").mkdir(parents=True)
    (tmp_path / "comics" / "ssl" / "merged_face_body.csv").write_text("")
    (tmp_path / "plain").mkdir()

    assert [detect_format(tmp_path / name) for name in ("m.csv", "m.parquet", "a.json", "manga", "comics", "plain")] \
        == ["manifest", "manifest", "coco", "manga109", "comics", "folder"]
    with pytest.raises(ConfigError, match=r"cannot tell the format of '.*notes.txt' from its suffix '.txt'"):
        (tmp_path / "notes.txt").write_text("")
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(ManifestError, match="source '.*absent' not found"):
        detect_format(tmp_path / "absent")


def test_load_source_passes_options(tmp_path: Path) -> None:
    _image(tmp_path / "chars" / "alice" / "1.png")
    frame = load_source(tmp_path / "chars", kind="face")
    assert frame["kind"].tolist() == ["face"] and frame["identity"].tolist() == ["alice"]

    (tmp_path / "chars" / "manifest.csv").write_text("image,identity\nalice/1.png,alice\n")
    assert load_source(tmp_path / "chars" / "manifest.csv")["identity"].tolist() == ["alice"]

    coco = {"images": [{"id": 1, "file_name": "1.png", "width": 8, "height": 8}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
            "categories": [{"id": 1, "name": "alice"}]}
    (tmp_path / "chars" / "alice" / "coco.json").write_text(json.dumps(coco))
    assert load_source(tmp_path / "chars" / "alice" / "coco.json", format="coco")["x1"].tolist() == [4.0]


def test_unknown_format_or_option_is_a_config_error(tmp_path: Path) -> None:
    _image(tmp_path / "alice" / "1.png")
    with pytest.raises(ConfigError, match="unknown source format 'cbz'; choose auto or one of coco, comics"):
        load_source(tmp_path, format="cbz")
    with pytest.raises(ConfigError, match="the folder importer does not take option.s. identity_field; "
                                          "it takes kind, book, check_files"):
        load_source(tmp_path, identity_field="x")
