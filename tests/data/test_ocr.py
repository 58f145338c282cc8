"""OCR: line grouping and nearest-instance assignment (no OCR needed), and a rendered page read end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from comicid.data.manifest import instance_keys, read_manifest
from comicid.data.ocr import TextBlock, attach_ocr_text, group_lines, nearest_instance
from comicid.data.synth import LETTERING_FILE, generate_books
from comicid.evaluation.text import character_error_rate

HAS_RAPIDOCR = importlib.util.find_spec("rapidocr_onnxruntime") is not None


def test_lines_of_one_balloon_join_and_far_lines_do_not() -> None:
    lines = [((10, 10, 90, 20), "KOLO-SENPAI, YOU'RE", 0.97), ((40, 22, 70, 32), "LATE!", 0.99),
             ((10, 80, 90, 90), "THE NEXT MORNING.", 0.99), ((200, 10, 260, 20), "CREAK", 0.9),
             ((300, 300, 310, 310), "~", 0.2)]  # low score: dropped
    blocks = group_lines(lines)
    assert [block.text for block in blocks] == ["KOLO-SENPAI, YOU'RE LATE!", "CREAK", "THE NEXT MORNING."]
    assert blocks[0].box == (10, 10, 90, 32)


def test_a_block_goes_to_the_head_it_sits_above() -> None:
    heads = {"a": (50.0, 100.0), "b": (150.0, 100.0)}
    assert nearest_instance(TextBlock("HI", (100, 40, 140, 60), 1.0), heads) == "b"
    # equally far in x, but "a" is below the block and "b" above it: below wins
    assert nearest_instance(TextBlock("HI", (80, 60, 120, 80), 1.0), {"a": (100.0, 110.0), "b": (100.0, 50.0)}) == "a"
    assert nearest_instance(TextBlock("HI", (0, 0, 1, 1), 1.0), {}) is None


def test_text_goes_to_the_panel_and_speech_to_the_nearest_instance(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (200, 120), "white").save(tmp_path / "p.png")
    frame = read_manifest_rows(tmp_path, [
        ("face", "k0", "k0-i0", (40, 60, 60, 80)), ("face", "k0", "k0-i1", (140, 60, 160, 80)),
        ("face", "k1", "k1-i0", (40, 100, 60, 118)),
    ])
    lines = [((130, 20, 170, 30), "HELLO", 0.99), ((20, 5, 60, 12), "MEANWHILE", 0.99)]
    out = attach_ocr_text(frame, reader=lambda pixels: lines, progress=False)
    assert out["text"].tolist() == ["MEANWHILE HELLO", "MEANWHILE HELLO", ""]
    assert out["speech"].tolist() == ["MEANWHILE", "HELLO", ""]
    assert out.attrs["ocr"] == {"pages": 1, "blocks": 2, "assigned": 2}


def read_manifest_rows(folder: Path, rows: list[tuple[str, str, str, tuple[int, int, int, int]]]) -> pd.DataFrame:
    table = pd.DataFrame([{"image": "p.png", "kind": kind, "panel": panel, "instance": instance, "page": "0",
                           "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]}
                          for kind, panel, instance, box in rows])
    table.to_csv(folder / "m.csv", index=False)
    return read_manifest(folder / "m.csv")


def test_character_error_rate() -> None:
    assert character_error_rate(["HELLO", ""], ["HELLO", "BYE"]) == pytest.approx(3 / 8)
    assert character_error_rate(["HELL0  WORLD"], ["HELLO WORLD"]) == pytest.approx(1 / 11)


@pytest.mark.skipif(not HAS_RAPIDOCR, reason="rapidocr-onnxruntime (the offline OCR package) is not installed")
def test_a_rendered_page_is_read_and_its_balloons_assigned(tmp_path: Path) -> None:
    """`comicid import --ocr` on a synthetic page whose manifest lost its text."""
    from comicid.cli import main
    from comicid.data.manifest import write_manifest
    from comicid.store.collection import Collection

    manifest = generate_books(tmp_path, books=1, characters=4, pages=1, seed=3, progress=False, speech="manga")
    frame = read_manifest(manifest)
    write_manifest(frame.assign(text="", speech=""), tmp_path / "no_text.csv")
    assert main(["-q", "import", str(tmp_path / "no_text.csv"), "--out", str(tmp_path / "c"), "--ocr"]) == 0
    out = Collection.open(tmp_path / "c").instances()
    truth = pd.read_csv(tmp_path / LETTERING_FILE, keep_default_na=False)
    spoken = truth[truth["kind"] == "speech"]
    keys = dict(zip(frame["instance"], instance_keys(frame), strict=True))
    by_key = dict(zip(instance_keys(out), out["speech"], strict=True))
    read = [by_key.get(keys.get(instance, ""), "") for instance in spoken["instance"]]
    said = spoken["text"].tolist()
    right = [i for i, (r, t) in enumerate(zip(read, said)) if t.split()[0][:4] in r]  # the balloon reached its speaker
    assert len(said) >= 3 and len(right) >= 0.6 * len(said)
    # where a speaker holds just its balloon, the text itself is read almost exactly
    alone = [i for i in right if len(read[i]) <= len(said[i]) + 3]
    assert alone and character_error_rate([read[i] for i in alone], [said[i] for i in alone]) < 0.15
    assert (out["text"] != "").mean() > 0.3
