"""COMICS importer on the upstream layout of the CCI and CSI annotations (Soykan et al. 2023)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comicid.data.importers.comics import import_comics
from comicid.errors import ManifestError

CSV_HEADER = ",series_id,page_id,type,index,char_index,score,x_0,y_0,x1,y_1\n"
CSV_ROWS = [
    "1443,58_6,face,0,0,0.99,10,10,20,20",
    "1443,58_6,body,0,0,0.98,5,5,30,60",
    "1443,58_6,face,1,1,0.97,40,10,50,20",
    "1443,58_7,body,0,0,0.99,1,2,3,4",
    "1443,58_7,face,1,1,0.99,7,7,9,9",  # in no sequence: an unlabelled CCI part
    "2001,3_0,face,0,-1,0.99,1,1,5,5",
]
TRAIN = [{
    "seq_id": "1443_58_6+1443_58_7+1443_58_8+1443_58_9",
    "annotations": [
        {"charId": "a", "charInstances": [
            {"face": "1443_58_6_face_0", "body": "1443_58_6_body_0", "speechBubbles": []},
            {"face": None, "body": "1443_58_7_body_0"}]},
        {"charId": "b", "charInstances": [{"face": "1443_58_6_face_1"}]},
    ],
}]
VALIDATION = [{"seq_id": "2001_3_0+2001_3_1+2001_3_2+2001_3_3",
               "annotations": [{"charId": "a", "charInstances": [{"face": "2001_3_0_face_0"}]}]}]


def _comics(root: Path, train: list[Any] | None = None, csv_rows: list[str] | None = None) -> Path:
    """``ssl/merged_face_body.csv``, ``comics_seq/*_sequences.json`` and COMICS ``raw_panel_images``."""
    rows = CSV_ROWS if csv_rows is None else csv_rows
    (root / "ssl").mkdir(parents=True)
    (root / "ssl" / "merged_face_body.csv").write_text(
        CSV_HEADER + "".join(f"{number},{row}\n" for number, row in enumerate(rows)))
    (root / "comics_seq").mkdir()
    (root / "comics_seq" / "train_sequences.json").write_text(json.dumps(TRAIN if train is None else train))
    (root / "comics_seq" / "validation_sequences.json").write_text(json.dumps(VALIDATION))
    for series, panel in (("1443", "58_6"), ("1443", "58_7"), ("2001", "3_0")):
        (root / "raw_panel_images" / series).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), "white").save(root / "raw_panel_images" / series / f"{panel}.jpg")
    return root


def test_sequences_become_identities_and_instances(tmp_path: Path) -> None:
    root = _comics(tmp_path)

    frame = import_comics(root)

    seq = TRAIN[0]["seq_id"]
    assert frame["kind"].tolist() == ["face", "body", "body", "face", "face"]
    assert frame["identity"].tolist() == [f"{seq}:a"] * 3 + [f"{seq}:b", "2001_3_0+2001_3_1+2001_3_2+2001_3_3:a"]
    assert frame["instance"].tolist() == [
        f"{seq}:1443_58_6_face_0", f"{seq}:1443_58_6_face_0", f"{seq}:1443_58_7_body_0", f"{seq}:1443_58_6_face_1",
        "2001_3_0+2001_3_1+2001_3_2+2001_3_3:2001_3_0_face_0"]
    assert frame["split"].tolist() == ["train"] * 4 + ["dev"]
    assert frame["book"].tolist() == ["1443"] * 4 + ["2001"]
    assert frame["page"].tolist() == ["58", "58", "58", "58", "3"]
    assert frame["panel"].tolist() == ["58_6", "58_6", "58_7", "58_6", "3_0"]
    assert frame["sequence"][0] == seq
    assert frame[["x0", "y0", "x1", "y1"]].iloc[1].tolist() == [5, 5, 30, 60]
    assert Path(frame["image"][2]) == root / "raw_panel_images" / "1443" / "58_7.jpg"


def test_split_selection_and_unlabelled_parts(tmp_path: Path) -> None:
    root = _comics(tmp_path)

    frame = import_comics(root, splits=["train"], unlabelled=True)

    unlabelled = frame[frame["identity"] == ""]
    assert set(frame["split"]) == {"train", ""}
    assert unlabelled["panel"].tolist() == ["58_7", "3_0"]
    assert unlabelled["instance"].tolist() == ["58_7:c1", ""]  # char_index -1 pairs with nothing
    with pytest.raises(ManifestError, match="no 'test_sequences.json'"):
        import_comics(root, splits=["test"])


def test_without_sequences_every_part_is_unlabelled(tmp_path: Path) -> None:
    root = _comics(tmp_path)
    for path in (root / "comics_seq").iterdir():
        path.unlink()

    frame = import_comics(root)

    assert len(frame) == len(CSV_ROWS) and set(frame["identity"]) == {""}
    paired = frame[frame["panel"] == "58_6"]
    assert paired["instance"].tolist() == ["58_6:c0", "58_6:c0", "58_6:c1"]


def test_sequence_part_missing_from_csv(tmp_path: Path) -> None:
    root = _comics(tmp_path, csv_rows=CSV_ROWS[1:])
    with pytest.raises(ManifestError, match=r"train_sequences.json: sequence 1 \(1443_58_6\+.*\): "
                                            r"'1443_58_6_face_0' not in merged_face_body.csv"):
        import_comics(root)

    frame = import_comics(root, skip_missing_boxes=True)

    assert len(frame) == 4 and len(frame.attrs["skipped"]) == 1


@pytest.mark.parametrize(("instance", "message"), [
    ({"face": "1443_58_6_head_0"}, "instance id '1443_58_6_head_0' is not '<series>_<page>_<panel>_<face|body>_<idx>'"),
    ({"face": "1443_58_6_face_0", "body": "1443_58_7_body_0"}, "are in different panels"),
    ("1443_58_6_face_0", "an instance of character 'a' is '1443_58_6_face_0', expected"),
])
def test_malformed_instances(tmp_path: Path, instance: Any, message: str) -> None:
    root = _comics(tmp_path, train=[{"seq_id": "s", "annotations": [{"charId": "a", "charInstances": [instance]}]}])
    with pytest.raises(ManifestError, match=message):
        import_comics(root)


def test_structural_errors(tmp_path: Path) -> None:
    root = _comics(tmp_path / "a", train=[{"annotations": []}])
    with pytest.raises(ManifestError, match="sequence 1: needs 'seq_id' and an 'annotations' list"):
        import_comics(root)

    root = _comics(tmp_path / "b")
    (root / "comics_seq" / "extra_sequences.json").write_text("[]")
    with pytest.raises(ManifestError, match="'extra_sequences.json': unknown split 'extra'"):
        import_comics(root)

    root = _comics(tmp_path / "c")
    (root / "ssl" / "merged_face_body.csv").write_text("series_id,page_id,type,index\n1,2_3,face,0\n")
    with pytest.raises(ManifestError, match="lacks the columns x_0, y_0, x1, y_1"):
        import_comics(root)

    with pytest.raises(ManifestError, match="COMICS panel folder '.*nowhere' not found; pass panels="):
        import_comics(_comics(tmp_path / "d"), panels=tmp_path / "nowhere")
    with pytest.raises(ManifestError, match="no merged_face_body.csv in"):
        import_comics(tmp_path)


OCR_FILE = ("comic_no,page_no,panel_no,textbox_no,dialog_or_narration,text,x1,y1,x2,y2\n"
            "1443,58,6,1,1,\"Look out,\",3,3,30,12\n"
            "1443,58,6,0,2,Meanwhile...,1,1,40,8\n"
            "1443,58,6,2,1,  below!  ,3,14,30,20\n"
            "2001,3,0,0,1,,0,0,1,1\n")


def test_ocr_transcripts_become_the_text_of_every_instance_of_the_panel(tmp_path: Path) -> None:
    root = _comics(tmp_path)
    (root / "COMICS_ocr_file.csv").write_text(OCR_FILE)

    frame = import_comics(root)

    texts = dict(zip(frame["panel"] + "/" + frame["kind"] + frame["instance"], frame["text"], strict=True))
    panel_58_6 = frame[frame["panel"] == "58_6"]
    assert len(panel_58_6) == 3
    assert set(panel_58_6["text"]) == {"Meanwhile... Look out, below!"}  # textbox_no order, spaces squeezed
    assert set(frame[frame["panel"] != "58_6"]["text"]) == {""}  # empty OCR text or no OCR row
    assert len(texts) == len(frame)


def test_ocr_file_given_explicitly_and_checked(tmp_path: Path) -> None:
    root = _comics(tmp_path)
    (tmp_path / "elsewhere.csv").write_text("comic_no,page_no,text\n1,2,hi\n")
    with pytest.raises(ManifestError, match="lacks the columns panel_no, textbox_no"):
        import_comics(root, ocr=tmp_path / "elsewhere.csv")
    with pytest.raises(ManifestError, match="OCR file .* not found"):
        import_comics(root, ocr=tmp_path / "missing.csv")
    assert set(import_comics(root)["text"]) == {""}  # no OCR file: no text, no error


def test_ocr_text_is_kept_by_import_into_a_collection(tmp_path: Path) -> None:
    from comicid.cli import main
    from comicid.store.collection import Collection
    from comicid.store.embeddings import instance_table

    root = _comics(tmp_path / "src")
    (root / "COMICS_ocr_file.csv").write_text(OCR_FILE)
    assert main(["-q", "import", str(root), "--out", str(tmp_path / "c")]) == 0
    table, _ = instance_table(Collection.open(tmp_path / "c").instances())
    assert set(table.loc[table["panel"] == "58_6", "text"]) == {"Meanwhile... Look out, below!"}
    assert set(table.loc[table["panel"] != "58_6", "text"]) == {""}
