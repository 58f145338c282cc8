"""Importing into a collection: crops cached by content, idempotent, incremental, atomic, no silent drops."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from comicid.data.manifest import read_manifest
from comicid.errors import CollectionError, ImageReadError, ManifestError
from comicid.store import ingest as ingest_module
from comicid.store.collection import Collection
from comicid.store.ingest import ingest


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    page = Image.new("RGB", (100, 80), "white")
    page.paste((255, 0, 0), (10, 10, 30, 30))
    page.paste((0, 0, 255), (50, 10, 90, 70))
    page.save(folder / "page.png")
    Image.new("RGB", (20, 20), "green").save(folder / "crop.png")
    (folder / "m.csv").write_text(
        "image,x0,y0,x1,y1,identity,kind,instance,book,page,panel\n"
        "page.png,10,10,30,30,alice,face,i1,b,1,p1\n"
        "page.png,50,10,90,70,alice,body,i1,b,1,p1\n"
        "crop.png,,,,,bob,character,,b,2,p2\n")
    return folder


def test_import_writes_parts_crops_and_metadata(source: Path, tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    report = ingest(read_manifest(source / "m.csv"), collection, progress=False)
    assert (report.rows, report.added, report.skipped) == (3, 3, [])
    parts = collection.instances()
    assert parts["identity"].tolist() == ["alice", "alice", "bob"]
    assert parts["instance_key"][0] == parts["instance_key"][1] != parts["instance_key"][2]
    face = collection.load_crop(parts["crop_hash"][0])
    assert face.size == (24, 24)  # 20 px face box scaled by 1.2
    assert collection.load_crop(parts["crop_hash"][1]).size == (40, 60)
    assert collection.meta()["comicid_version"]


def test_reimport_is_idempotent_and_incremental(source: Path, tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(source / "m.csv"), collection, progress=False)
    before = collection.instances()
    again = ingest(read_manifest(source / "m.csv"), collection, progress=False)
    assert (again.added, again.reused) == (0, 3)
    pd.testing.assert_frame_equal(collection.instances(), before)

    (source / "more.csv").write_text("image,identity,book\ncrop.png,carol,other\n")
    more = ingest(read_manifest(source / "more.csv"), collection, progress=False)
    assert more.added == 1
    assert sorted(collection.instances()["identity"]) == ["alice", "alice", "bob", "carol"]


def test_relabelled_rows_are_updated_not_duplicated(source: Path, tmp_path: Path) -> None:
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(source / "m.csv"), collection, progress=False)
    frame = read_manifest(source / "m.csv")
    frame.loc[2, "identity"] = "robert"
    ingest(frame, collection, progress=False)
    assert collection.instances()["identity"].tolist() == ["alice", "alice", "robert"]


def test_interrupted_import_leaves_previous_collection_intact(source: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(source / "m.csv"), collection, progress=False)
    before = collection.instances()
    Image.new("RGB", (30, 30), "black").save(source / "new.png")
    (source / "new.csv").write_text("image,identity\nnew.png,dan\ncrop.png,eve\n")
    calls = {"n": 0}
    real_store = Collection.store_crop

    def store_then_die(self: Collection, image: Image.Image) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_store(self, image)

    monkeypatch.setattr(Collection, "store_crop", store_then_die)
    with pytest.raises(KeyboardInterrupt):
        ingest(read_manifest(source / "new.csv"), collection, progress=False)
    pd.testing.assert_frame_equal(collection.instances(), before)
    assert not list(collection.root.glob(".*.tmp"))


def test_unreadable_image_names_the_row_or_is_skipped_and_counted(source: Path, tmp_path: Path) -> None:
    (source / "broken.png").write_text("garbage")
    (source / "bad.csv").write_text("image,identity\ncrop.png,bob\nbroken.png,x\nmissing.png,y\n")
    frame = read_manifest(source / "bad.csv", check_files=False)
    with pytest.raises(ImageReadError, match=r"row 2: image '.*broken.png' is not a readable image"):
        ingest(frame, Collection.create(tmp_path / "c1"), progress=False)
    collection = Collection.create(tmp_path / "c2")
    report = ingest(frame, collection, skip_bad=True, progress=False)
    assert [row for row, _ in report.skipped] == [2, 3]
    assert "not found" in report.skipped[1][1]
    assert collection.instances()["identity"].tolist() == ["bob"]


def test_duplicate_rows_and_bad_collection_folders(source: Path, tmp_path: Path) -> None:
    (source / "dup.csv").write_text("image,identity\ncrop.png,a\ncrop.png,a\n")
    with pytest.raises(ManifestError, match="row 1: same image"):
        ingest(read_manifest(source / "dup.csv"), Collection.create(tmp_path / "c"), progress=False)
    with pytest.raises(CollectionError, match="not a comicid collection"):
        Collection.open(tmp_path / "nothing")
    with pytest.raises(CollectionError, match="not empty"):
        Collection.create(source)


def test_tiny_boxes_are_kept_and_reported(source: Path, tmp_path: Path) -> None:
    (source / "tiny.csv").write_text("image,x0,y0,x1,y1,kind\npage.png,1,1,3,40,body\n")
    report = ingest(read_manifest(source / "tiny.csv"), Collection.create(tmp_path / "c"), progress=False)
    assert report.tiny_boxes == [1] and report.added == 1
    assert ingest_module.IngestReport(rows=1, tiny_boxes=[1]).summary().endswith("1 tiny boxes (< 4 px) kept")


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    from comicid.atomic import atomic_write_text

    atomic_write_text(tmp_path / "new.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(tmp_path / "new.txt", 0o640)
    atomic_write_text(tmp_path / "new.txt", "y")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
