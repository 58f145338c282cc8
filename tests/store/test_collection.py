"""comicid.store.collection: the folder's life cycle, metadata, crops and assignments."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from comicid.errors import CollectionError
from comicid.models.embed import crop_key
from comicid.store.collection import FORMAT_VERSION, Collection, crop_hash


def test_create_makes_an_empty_collection_and_reopens_an_existing_one(tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    meta = collection.meta()
    assert meta["version"] == FORMAT_VERSION and meta["sources"] == [] and meta["assignments"] is None
    collection.update_meta(sources=["s"])
    assert Collection.create(tmp_path / "c").meta()["sources"] == ["s"]  # not wiped
    assert Collection.open(tmp_path / "c").root == collection.root


def test_create_refuses_a_non_empty_folder_and_open_a_non_collection(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "x.txt").write_text("mine")
    with pytest.raises(CollectionError, match="not empty"):
        Collection.create(tmp_path / "stuff")
    with pytest.raises(CollectionError, match="not a comicid collection"):
        Collection.open(tmp_path / "stuff")


def test_a_newer_or_foreign_collection_file_is_refused(tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    meta = collection.meta()
    collection.meta_path.write_text(json.dumps({**meta, "version": FORMAT_VERSION + 1}))
    with pytest.raises(CollectionError, match="newer comicid"):
        Collection.open(collection.root)
    collection.meta_path.write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(CollectionError, match="not a comicid collection file"):
        Collection.open(collection.root)
    collection.meta_path.write_text("{not json")
    with pytest.raises(CollectionError, match="cannot read"):
        collection.meta()


def test_crops_are_stored_once_by_content(tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    red = Image.new("RGB", (4, 3), (255, 0, 0))
    key = collection.store_crop(red)
    assert key == crop_hash(red) == crop_hash(red.convert("RGBA"))  # mode does not change the key
    assert collection.store_crop(red.copy()) == key
    assert len(list((collection.root / "crops").rglob("*.png"))) == 1
    assert collection.load_crop(key).size == (4, 3)
    assert crop_hash(Image.new("RGB", (3, 4), (255, 0, 0))) != key  # same pixels, other shape
    # one content key: the feature cache's key of the stored file is the collection's key
    assert crop_key(collection.crop_path(key)) == crop_key(red) == key


def test_instances_and_assignments_round_trip_and_say_what_is_missing(tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    with pytest.raises(CollectionError, match="no instances yet"):
        collection.instances()
    with pytest.raises(CollectionError, match="no identity assignments yet"):
        collection.assignments()
    parts = pd.DataFrame({"instance_key": ["b/1", "b/2"], "kind": ["face", "body"]}, index=[5, 7])
    collection.write_instances(parts)
    pd.testing.assert_frame_equal(collection.instances(), parts.reset_index(drop=True))
    table = pd.DataFrame({"instance_key": ["b/1"], "identity_id": ["b/c0000"], "confidence": [0.9]})
    collection.write_assignments(table, {"method": "agglomerative"})
    pd.testing.assert_frame_equal(collection.assignments(), table)
    assert collection.meta()["assignments"]["method"] == "agglomerative"
    collection.record_embedding_model("m@1", dim=8, crops=2)
    assert collection.meta()["embedding_model"] == "m@1" and collection.meta()["embeddings"]["m@1"]["dim"] == 8
