"""COCO importer on annotation files in the standard COCO layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comicid.data.importers.coco import import_coco
from comicid.errors import ManifestError


def _coco(tmp_path: Path, annotations: list[dict[str, Any]], categories: list[dict[str, Any]] | None = None,
          image_folder: str = "images") -> Path:
    """Two pages under ``images/`` and a JSON next to them, as COCO exports lay them out."""
    for name in ("p1.jpg", "p2.jpg"):
        (tmp_path / image_folder).mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), "white").save(tmp_path / image_folder / name)
    data = {
        "images": [{"id": 1, "file_name": "p1.jpg", "width": 40, "height": 30},
                   {"id": 2, "file_name": "p2.jpg", "width": 40, "height": 30}],
        "annotations": annotations,
        "categories": categories if categories is not None else [{"id": 1, "name": "alice"}, {"id": 2, "name": "bob"}],
    }
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    return path


def test_category_names_are_identities(tmp_path: Path) -> None:
    path = _coco(tmp_path, [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20]},
        {"id": 11, "image_id": 2, "category_id": 2, "bbox": [30, 5, 20, 10]},  # beyond the page: crops pad
    ])

    frame = import_coco(path)

    assert frame["identity"].tolist() == ["alice", "bob"]
    assert frame[["x0", "y0", "x1", "y1"]].to_numpy().tolist() == [[1, 2, 11, 22], [30, 5, 50, 15]]
    assert [Path(p).name for p in frame["image"]] == ["p1.jpg", "p2.jpg"]
    assert Path(frame["image"][0]).parent == tmp_path / "images"
    assert frame["page"].tolist() == ["1", "2"]
    assert set(frame["book"]) == {"instances_val"} and set(frame["kind"]) == {"character"}


def test_part_categories_with_identity_attribute_and_instances(tmp_path: Path) -> None:
    path = _coco(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
         "attributes": {"character_id": "c7", "pair": 1}},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 20],
         "attributes": {"character_id": "c7", "pair": 1}},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [3, 3, 4, 4], "attributes": {}},
    ], categories=[{"id": 1, "name": "Face"}, {"id": 2, "name": "body"}])

    frame = import_coco(path, identity_field="attributes.character_id", instance_field="attributes.pair")

    assert frame["kind"].tolist() == ["face", "body", "body"]
    assert frame["identity"].tolist() == ["c7", "c7", ""]
    assert frame["instance"].tolist() == ["1", "1", ""]


def test_top_level_identity_key_and_explicit_images_root(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2], "track_id": 42}],
                 image_folder="pages")

    frame = import_coco(path, identity_field="track_id", images_root=tmp_path / "pages", book="vol2")

    assert frame["identity"].tolist() == ["42"] and frame["book"].tolist() == ["vol2"]
    assert Path(frame["image"][0]) == tmp_path / "pages" / "p2.jpg"


def test_categories_are_optional_when_identity_is_an_attribute(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "bbox": [1, 1, 2, 2], "attributes": {"kind": "Body", "who": 3}}],
                 categories=[])

    frame = import_coco(path, identity_field="attributes.who", kind_field="attributes.kind")

    assert frame[["identity", "kind"]].to_numpy().tolist() == [["3", "body"]]


def test_annotations_without_bbox_raise_unless_skipped(tmp_path: Path) -> None:
    path = _coco(tmp_path, [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 1, 2, 0]]},
    ])
    with pytest.raises(ManifestError, match=r"1 annotations have no bbox \(first: annotation 2 \(id 2\)\); "
                                            r"pass skip_without_bbox=True"):
        import_coco(path)

    frame = import_coco(path, skip_without_bbox=True)

    assert len(frame) == 1 and frame.attrs["skipped"] == ["annotation 2 (id 2): has no bbox"]


def test_structural_errors_name_the_annotation(tmp_path: Path) -> None:
    path = _coco(tmp_path, [
        {"id": 1, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2]},
    ])
    with pytest.raises(ManifestError) as caught:
        import_coco(path)
    assert caught.value.problems == [
        "annotation 1 (id 1): image_id 9 is not in 'images'",
        "annotation 2 (id 2): category_id 5 is not in 'categories'",
        "annotation 3 (id 3): bbox [1, 1, 2] is not [x, y, width, height]",
    ]


def test_part_categories_need_an_identity_field(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}],
                 categories=[{"id": 1, "name": "face"}])
    with pytest.raises(ManifestError, match="category 'face' names a part, not a character; pass identity_field"):
        import_coco(path)
    with pytest.raises(ManifestError, match="no annotation has the identity field 'attributes.who'"):
        import_coco(path, identity_field="attributes.who")


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(ManifestError, match=r"'.*bad.json' is not valid JSON \(line 1, column 13"):
        import_coco(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(ManifestError, match="has no 'annotations' list; is it a COCO annotation file"):
        import_coco(bad)
    with pytest.raises(ManifestError, match="COCO file '.*missing.json' not found"):
        import_coco(tmp_path / "missing.json")


def test_missing_image_is_reported_by_row(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}])
    (tmp_path / "images" / "p1.jpg").unlink()
    with pytest.raises(ManifestError, match=r"row 1: image '.*p1.jpg' not found"):
        import_coco(path)
    assert len(import_coco(path, check_files=False)) == 1
