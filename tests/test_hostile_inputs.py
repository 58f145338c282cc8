"""User-caused faults and hostile inputs end in one clear line, never a traceback, code run or silent change.

Regression tests for issue 10 (items 6, 7, 10, 11 and 16); the property-based sweep is tests/test_fuzz.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from comicid.cli import main
from comicid.data.importers import import_manga109
from comicid.data.manifest import read_manifest
from comicid.errors import ManifestError
from comicid.store.collection import Collection

MODEL = ["--model", "tiny-cnn"]
ROOT = Path(__file__).resolve().parents[1]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "grey"]


def one_error_line(capsys: pytest.CaptureFixture[str], code: int, expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert "Traceback" not in err
    return err


def labelled(folder: Path, name: str = "m.csv", identities: int = 3, per: int = 2, split: str = "") -> Path:
    """A small labelled manifest: ``identities`` colours, ``per`` slightly different crops of each."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,identity,split"]
    for i in range(identities):
        for j in range(per):
            image = Image.new("RGB", (24, 24), COLOURS[i % len(COLOURS)])
            image.putpixel((j, j), (j * 40, 0, 0))
            image.save(folder / f"{name}-{i}-{j}.png")
            lines.append(f"{name}-{i}-{j}.png,c{i},{split if isinstance(split, str) else split[i]}")
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


# -- item 7: tracebacks become one line ---------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [[1], {"a": 1}])
def test_coco_ids_that_are_lists_or_objects(tmp_path: Path, bad_id: object,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "p.png")
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": bad_id, "file_name": "p.png"}],
        "annotations": [{"id": 1, "image_id": bad_id, "category_id": bad_id, "bbox": [0, 0, 5, 5]}],
        "categories": [{"id": 1, "name": "alice"}]}))
    one_error_line(capsys, main(["import", str(tmp_path / "c.json"), "--out", str(tmp_path / "c")]), "id must be")


def test_deeply_nested_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.json").write_text("[" * 200_000 + "]" * 200_000)
    one_error_line(capsys, main(["import", str(tmp_path / "c.json"), "--out", str(tmp_path / "c")]),
                   "nested too deeply")


def test_manga109_xml_in_latin1(tmp_path: Path) -> None:
    root = tmp_path / "m109"
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "Book").mkdir(parents=True)
    (root / "books.txt").write_text("Book\n")
    xml = ('<?xml version="1.0" encoding="latin-1"?><book title="Book"><characters>'
           '<character id="c1" name="Caf\xe9"/></characters><pages></pages></book>')
    (root / "annotations" / "Book.xml").write_bytes(xml.encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        import_manga109(root)


def test_truncated_parts_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = labelled(tmp_path / "src")
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c")]) == 0
    table = tmp_path / "c" / "instances.parquet"
    table.write_bytes(table.read_bytes()[:100])
    one_error_line(capsys, main(["embed", str(tmp_path / "c"), *MODEL]), "is damaged")


def test_disk_full_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = labelled(tmp_path / "src")

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("comicid.atomic.os.replace", full)
    one_error_line(capsys, main(["-q", "import", str(manifest), "--out", str(tmp_path / "c")]),
                   "No space left on device")


def test_out_paths_that_are_files_or_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = labelled(tmp_path / "src")
    (tmp_path / "file").write_text("x")
    one_error_line(capsys, main(["-q", "import", str(manifest), "--out", str(tmp_path / "file")]), "is a file")
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c")]) == 0
    one_error_line(capsys, main(["-q", "cluster", str(tmp_path / "c"), *MODEL, "--out", str(tmp_path)]),
                   "is a folder")
    one_error_line(capsys, main(["-q", "evaluate", str(manifest), *MODEL, "--json", str(tmp_path)]), "is a folder")
    one_error_line(capsys, main(["-q", "report", str(tmp_path / "c"), "--out", str(tmp_path / "file" / "r.html")]),
                   "is a file")


def test_a_broken_pipe_prints_no_traceback(tmp_path: Path) -> None:
    manifest = labelled(tmp_path / "src", identities=2)
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c")]) == 0
    process = subprocess.Popen([sys.executable, "-m", "comicid", "search", str(tmp_path / "c"),
                                str(tmp_path / "src" / "m.csv-0-0.png"), *MODEL], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    process.stdout.close()  # the reader is gone before anything is printed, like `| head -0`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1  # the search ran and found its reader gone
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


def test_evaluate_refuses_unlabelled_and_single_identity_data(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "u"
    folder.mkdir()
    Image.new("RGB", (20, 20), "red").save(folder / "a.png")
    Image.new("RGB", (20, 20), "blue").save(folder / "b.png")
    (folder / "m.csv").write_text("image\na.png\nb.png\n")
    one_error_line(capsys, main(["-q", "evaluate", str(folder / "m.csv"), *MODEL]), "no row with an identity")
    single = labelled(tmp_path / "one", identities=1, per=3)
    one_error_line(capsys, main(["-q", "evaluate", str(single), *MODEL]), "single identity")


def test_deleted_crops_of_a_large_collection_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(130):  # >= 128 crops: embedding would use DataLoader workers
        Image.new("RGB", (8, 8), (i, 255 - i, (7 * i) % 256)).save(folder / f"{i}.png")
    (folder / "m.csv").write_text("image,identity\n" + "".join(f"{i}.png,c{i % 5}\n" for i in range(130)))
    assert main(["-q", "import", str(folder / "m.csv"), "--out", str(tmp_path / "c")]) == 0
    for crop in list((tmp_path / "c" / "crops").rglob("*.png"))[:3]:
        crop.unlink()
    one_error_line(capsys, main(["-q", "embed", str(tmp_path / "c"), *MODEL]), "3 crops")


# -- item 10: reads stay in the source folder; the terminal gets no control characters ----------------
def test_manifest_paths_outside_the_folder_need_allow_outside(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20), "red").save(tmp_path / "secret.png")
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "also.png")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.csv").write_text(f"image,identity\n../secret.png,a\n{tmp_path / 'also.png'},b\n")
    err = one_error_line(capsys, main(["-q", "import", str(tmp_path / "src" / "m.csv"), "--out",
                                       str(tmp_path / "c")]), "outside the source folder")
    assert "row 1" in err and "row 2" in err and "--allow-outside" in err
    assert not (tmp_path / "c" / "instances.parquet").exists()
    assert main(["-q", "import", str(tmp_path / "src" / "m.csv"), "--out", str(tmp_path / "c"),
                 "--allow-outside"]) == 0


def test_symlinks_and_coco_file_names_leading_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20), "red").save(tmp_path / "secret.png")
    (tmp_path / "src" / "alice").mkdir(parents=True)
    (tmp_path / "src" / "alice" / "a.png").symlink_to(tmp_path / "secret.png")
    one_error_line(capsys, main(["-q", "import", str(tmp_path / "src"), "--out", str(tmp_path / "c")]),
                   "outside the source folder")
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "../secret.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
        "categories": [{"id": 1, "name": "alice"}]}))
    one_error_line(capsys, main(["-q", "import", str(tmp_path / "coco" / "c.json"), "--out", str(tmp_path / "d")]),
                   "outside the source folder")


def test_manga109_titles_leading_out_are_refused_before_reading(tmp_path: Path) -> None:
    root = tmp_path / "m109"
    for folder in ("annotations", "images"):
        (root / folder).mkdir(parents=True)
    (root / "books.txt").write_text("../../evil\n")
    with pytest.raises(ManifestError, match="leads outside"):
        import_manga109(root)


def test_search_prints_no_terminal_escapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    Image.new("RGB", (20, 20), "red").save(folder / "a.png")
    Image.new("RGB", (20, 20), "blue").save(folder / "b.png")
    (folder / "m.csv").write_text('image,identity,instance\na.png,"\x1b]0;pwned\x07\x1b[31mevil",q\nb.png,bob,r\n')
    assert main(["-q", "import", str(folder / "m.csv"), "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["-q", "search", str(tmp_path / "c"), "--instance", "r", *MODEL]) == 0
    out = capsys.readouterr().out
    assert "evil" in out and "\x1b" not in out and "\x07" not in out


# -- item 6 and 16: evaluate scores only its manifest and assigns every instance ----------------------
def test_evaluate_into_an_existing_collection_scores_only_its_manifest(tmp_path: Path) -> None:
    other = labelled(tmp_path / "other", name="o.csv", identities=4, per=3)
    assert main(["-q", "import", str(other), "--out", str(tmp_path / "c")]) == 0
    # two identities per split, so each split can be scored
    extra = labelled(tmp_path / "mine", name="n.csv", identities=4, per=2, split=["dev", "dev", "test", "test"])
    assert main(["-q", "evaluate", str(extra), *MODEL, "--collection", str(tmp_path / "c"), "--threshold", "0.3",
                 "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["instances"] == 4  # the test rows of this manifest only, not the 12 other instances
    assert result["collection"] == str(tmp_path / "c")
    assignments = Collection.open(tmp_path / "c").assignments()
    parts = Collection.open(tmp_path / "c").instances()
    mine = parts[parts["origin"] == str(extra.resolve())]
    assert len(mine) == 8
    assigned = assignments.set_index("instance_key").loc[mine["instance_key"], "identity_id"]
    assert (assigned != "").all()  # dev instances too: no "?" in the report
    assert {value.split(":")[0] for value in assigned} == {"dev", "test"}  # each split clustered on its own


# -- item 11: smaller faults ---------------------------------------------------------------------------
def test_short_rows_and_repeated_headers_are_refused(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,kind,identity\na.png,face,alice\na.png,body\n")
    with pytest.raises(ManifestError, match="row 2: 2 cells but the header has 3"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("image,identity,identity\na.png,alice,bob\n")
    with pytest.raises(ManifestError, match="'identity' more than once"):
        read_manifest(tmp_path / "m.csv")


def test_a_duplicate_face_error_names_the_duplicate_row(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,x0,y0,x1,y1,kind,instance\n"
                                    "a.png,0,0,5,5,face,i1\na.png,0,0,9,9,body,i1\na.png,1,1,6,6,face,i1\n")
    with pytest.raises(ManifestError, match=r"^[^;]*row 3: instance 'i1' of book 'default' has 2 face rows"):
        read_manifest(tmp_path / "m.csv")


def test_threshold_messages_are_single_and_honest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = labelled(tmp_path / "src")
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c")]) == 0
    one_error_line(capsys, main(["-q", "cluster", str(tmp_path / "c"), *MODEL, "--method", "adaptive",
                                 "--threshold", "0.5"]), "takes no --threshold")
    err = one_error_line(capsys, main(["-q", "cluster", str(tmp_path / "c"), *MODEL, "--threshold", "0"]),
                         "--threshold 0 does not suit --method agglomerative")
    assert "non-negative" not in err


def test_quantize_default_never_overwrites_the_shipped_graph_unasked(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from comicid.models.embedding_model import DEFAULT_MODEL_PATH
    from comicid.models.int8 import int8_graph_path

    graph = int8_graph_path(DEFAULT_MODEL_PATH)
    before = graph.stat().st_mtime_ns
    one_error_line(capsys, main(["-q", "quantize", "default", "--calibration", str(labelled(tmp_path / "src"))]),
                   "would replace the shipped graph")
    assert graph.stat().st_mtime_ns == before


def test_importer_options_reach_the_importer_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "p.png")
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "p.png"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
                        {"id": 2, "image_id": 1, "category_id": 1}],
        "categories": [{"id": 1, "name": "alice"}]}))
    one_error_line(capsys, main(["-q", "import", str(tmp_path / "c.json"), "--out", str(tmp_path / "c")]),
                   "--option skip_without_bbox=true")
    assert main(["import", str(tmp_path / "c.json"), "--out", str(tmp_path / "c"),
                 "--option", "skip_without_bbox=true"]) == 0
    assert "left out 1 source entries" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "c" / "instances.parquet")) == 1
