"""OCR on synthetic pages against the generator's ground truth (issue 11): CER and text-to-instance assignment.

    nice -n 10 .venv/bin/python benchmarks/ocr.py [--books 2] [--pages 4] [--seed 31]

Draws `comicid synth --speech manga` books, reads every page with the OCR of `comicid import --ocr`
(RapidOCR, PP-OCRv4 models shipped in its wheel) and compares with ``lettering.csv``, the list of every
text the generator drew (kind, text, box, speaker instance):

* **CER**: each drawn text is compared with the OCR blocks whose centre lies inside its box (joined in
  reading order; none found = everything deleted), Levenshtein edits over true characters;
* **assignment**: the share of speech balloons read (a block inside the box) whose block went to the
  balloon's speaker by `comicid.data.ocr.nearest_instance`, the rule `--ocr` uses.

Writes the ``ocr`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


from common import markdown_table, write_section

from comicid.data.images import load_image
from comicid.data.manifest import instance_keys, read_manifest
from comicid.data.ocr import group_lines, instance_heads, nearest_instance, rapidocr_reader
from comicid.data.synth import LETTERING_FILE, generate_books
from comicid.evaluation.text import character_error_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=int, default=2)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--out", type=Path, default=Path("/tmp/comicid-ocr-bench"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    manifest = generate_books(args.out, books=args.books, characters=6, pages=args.pages, seed=args.seed,
                              progress=False, speech="manga")
    frame = read_manifest(manifest)
    keys = instance_keys(frame)
    truth = pd.read_csv(args.out / LETTERING_FILE, keep_default_na=False)
    reader = rapidocr_reader()
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    for image in sorted(set(frame["image"])):
        page = frame[frame["image"] == image]
        heads = instance_heads(page, keys)
        blocks = group_lines(reader(np.asarray(load_image(image))))
        relative = str(Path(image).resolve().relative_to(args.out.resolve()))
        for item in truth[truth["image"] == relative].itertuples():
            x0, y0, x1, y1 = (float(v) for v in (item.x0, item.y0, item.x1, item.y1))
            inside = [b for b in blocks if x0 - 4 <= (b.box[0] + b.box[2]) / 2 <= x1 + 4
                      and y0 - 4 <= (b.box[1] + b.box[3]) / 2 <= y1 + 4]
            speaker = f"{item.book}\x1f{item.instance}" if item.instance else ""
            assigned = [nearest_instance(b, heads) for b in inside]
            rows.append({"kind": item.kind, "truth": item.text, "read": " ".join(b.text for b in inside),
                         "found": bool(inside), "right": bool(inside) and bool(speaker)
                         and all(a == speaker for a in assigned)})
    seconds = time.perf_counter() - started
    table = pd.DataFrame(rows)
    lines = []
    for kind in ("speech", "narration", "sfx", "all"):
        part = table if kind == "all" else table[table["kind"] == kind]
        if part.empty:
            continue
        cer = character_error_rate(part["read"].tolist(), part["truth"].tolist())
        lines.append([kind, len(part), float(part["found"].mean()), cer])
    speech = table[(table["kind"] == "speech") & table["found"]]
    share = float(speech["right"].mean()) if len(speech) else float("nan")
    pages = frame["image"].nunique()
    body = "\n".join([
        "## OCR on synthetic pages (`benchmarks/ocr.py`)",
        "",
        f"Command: `nice -n 10 .venv/bin/python benchmarks/ocr.py --books {args.books} --pages {args.pages} "
        f"--seed {args.seed}`. RapidOCR 1.4.4 (PP-OCRv4 det/rec ONNX models shipped in the wheel), {pages} "
        f"pages of 800x1100 px, {seconds / pages:.1f} s per page on the shared 2-core machine (contended).",
        "",
        markdown_table(["text kind", "drawn", "found", "CER"], lines),
        "",
        f"Speech balloons found whose text went to the right instance (nearest head, below counts double): "
        f"**{share:.3f}** ({int(speech['right'].sum())} of {len(speech)}).",
    ]) + "\n"
    print(body)
    if not args.no_write:
        write_section("ocr", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
