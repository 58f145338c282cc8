"""Manifest v1: reading, normalising, and one clear error per bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comicid.data.manifest import COLUMNS, instance_keys, read_manifest, write_manifest
from comicid.errors import ManifestError


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    Image.new("RGB", (40, 30), "red").save(tmp_path / "a.png")
    Image.new("RGB", (40, 30), "blue").save(tmp_path / "b.png")
    return tmp_path


def write_csv(folder: Path, text: str) -> Path:
    path = folder / "m.csv"
    path.write_text(text)
    return path


def test_reads_minimal_manifest_with_defaults(folder: Path) -> None:
    frame = read_manifest(write_csv(folder, "image,identity\na.png,alice\nb.png,\n"))
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert frame["kind"].tolist() == ["character", "character"]
    assert frame["book"].tolist() == ["default", "default"]
    assert frame["identity"].tolist() == ["alice", ""]
    assert Path(frame["image"][0]) == (folder / "a.png").resolve()
    assert np.isnan(frame["x0"][0])


def test_extra_columns_are_kept_as_text_attributes(folder: Path) -> None:
    frame = read_manifest(write_csv(folder, "image,identity,view,score\na.png,alice,front,3\n"))
    assert frame["view"].tolist() == ["front"]
    assert frame["score"].tolist() == ["3"]


@pytest.mark.parametrize(("row", "message"), [
    ("a.png,5,0,1,10,face", "row 1: x1 < x0"),
    ("a.png,0,5,10,1,face", "row 1: y1 < y0"),
    ("a.png,0,0,0,10,face", "row 1: box has zero area"),
    ("a.png,0,0,,10,face", "row 1: box is incomplete (missing x1)"),
    ("a.png,zero,0,1,10,face", "row 1: x0 = 'zero' is not a number"),
    ("a.png,0,0,1,10,head", "row 1: kind = 'head' (expected one of body, character, face)"),
    ("missing.png,0,0,1,10,face", "row 1: image '"),
])
def test_each_bad_row_gets_a_clear_message(folder: Path, row: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        read_manifest(write_csv(folder, f"image,x0,y0,x1,y1,kind\n{row}\n"))
    assert caught.value.problems[0].startswith(message)


def test_all_bad_rows_are_reported_with_their_numbers(folder: Path) -> None:
    text = "image,x0,y0,x1,y1,role,split\na.png,0,0,5,5,,\na.png,9,0,5,5,,\na.png,0,0,5,5,probe,\nb.png,0,0,5,5,,val\n"
    with pytest.raises(ManifestError) as caught:
        read_manifest(write_csv(folder, text))
    assert [p.split(":")[0] for p in caught.value.problems] == ["row 2", "row 3", "row 4"]
    assert "role = 'probe'" in caught.value.problems[1]
    assert "split = 'val'" in caught.value.problems[2]


def test_instance_rules(folder: Path) -> None:
    text = ("image,kind,instance,identity\n"
            "a.png,face,i1,alice\nb.png,face,i1,alice\n"
            "a.png,body,i2,alice\nb.png,face,i2,bob\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(write_csv(folder, text))
    text_all = " ".join(caught.value.problems)
    assert "instance 'i1' of book 'default' has 2 face rows" in text_all
    assert "conflicting identities ['alice', 'bob']" in text_all


def test_missing_image_column_and_missing_file(folder: Path) -> None:
    with pytest.raises(ManifestError, match="no 'image' column"):
        read_manifest(write_csv(folder, "identity\nalice\n"))
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(folder / "nope.csv")


def test_instance_keys_fuse_face_and_body_of_one_instance(folder: Path) -> None:
    text = "image,kind,instance,book\na.png,face,i1,b1\nb.png,body,i1,b1\na.png,face,i1,b2\nb.png,character,,b1\n"
    keys = instance_keys(read_manifest(write_csv(folder, text))).tolist()
    assert keys[0] == keys[1]
    assert keys[0] != keys[2]  # same instance id, other book
    assert keys[3] not in keys[:3]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_keeps_rows_and_relative_paths(folder: Path, suffix: str) -> None:
    frame = read_manifest(write_csv(folder, "image,x0,y0,x1,y1,identity,page\na.png,1.5,2,10,12,alice,3\n"))
    out = write_manifest(frame, folder / f"copy{suffix}")
    raw = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, dtype=str)
    assert raw["image"].tolist() == ["a.png"]
    again = read_manifest(out)
    pd.testing.assert_frame_equal(again, frame)
