"""Property-based fuzzing of everything a user hands comicid: manifests, boxes, COCO JSON, Manga109 XML, numbers.

For every generated input the outcome must be one of two: success, or a :class:`ComicidError` (the
CLI's one line and exit 1, never a traceback). Successes must account for every row (rows in = rows
out + counted skips), and the inputs that could ask for huge allocations (boxes far beyond their page)
run in a child process whose address space is capped with ``RLIMIT_AS``, so a memory blow-up fails the
test instead of the machine. Examples are derandomised (the same inputs on every run) and few, so the
whole file stays well under a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from comicid.cli import main
from comicid.cli.common import positive_int
from comicid.data.importers import import_coco, import_manga109
from comicid.data.manifest import read_manifest
from comicid.errors import ComicidError
from comicid.evaluation.retrieval import retrieval_metrics
from comicid.workflows.cluster import parse_threshold
from comicid.store.collection import Collection
from comicid.store.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# -- strategies -------------------------------------------------------------------------------------------
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-10**12, max_value=10**12),
    st.sampled_from([0, 1, 5, 63, 64, 1e300, -1e300, 1e7, 1e5]),
)
cell_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=12),
    st.sampled_from(["face", "body", "character", "FACE", "query", "gallery", "dev", "test", "#row0", "\x1b[31m",
                     "../x.png", "", "nan", "1e309", "-0"]),
)
box_cell = st.one_of(numbers.map(lambda v: repr(v) if isinstance(v, float) else str(v)), st.just(""), cell_text)


def _csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, int]:
    """A manifest CSV with known images, junk images, boxes and labels; returns (text, data rows)."""
    n = draw(st.integers(min_value=1, max_value=6))
    header = ["image", "x0", "y0", "x1", "y1", "identity", "kind", "instance", "book", "split", "source"]
    lines = [",".join(header)]
    for _ in range(n):
        image = draw(st.sampled_from(["a.png", "b.png", "missing.png", "../outside.png", "", "a.png"]))
        box = draw(st.one_of(st.just(["", "", "", ""]), st.lists(box_cell, min_size=4, max_size=4)))
        labels = [draw(cell_text) for _ in header[5:]]
        lines.append(",".join(_csv_cell(value) for value in [image, *box, *labels]))
    return "\n".join(lines) + "\n", n


def _pages(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 32), "white").save(folder / "a.png")
    Image.new("RGBA", (20, 40), (255, 0, 0, 128)).save(folder / "b.png")
    Image.new("RGB", (8, 8), "black").save(folder.parent / "outside.png")


def _manifest_folder(tmp_path_factory: pytest.TempPathFactory, prefix: str, text: str) -> Path:
    """A fresh ``src`` folder with the drawn pages and ``text`` as its ``m.csv``."""
    folder = tmp_path_factory.mktemp(prefix) / "src"
    _pages(folder)
    (folder / "m.csv").write_text(text, encoding="utf-8")
    return folder


def _run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


def _assert_clean_failure(code: int, err: str) -> None:
    assert code in (0, 1), (code, err)
    if code == 1:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "\x1b" not in err  # control characters are escaped


# -- manifests through the library and the CLI --------------------------------------------------------------
@FUZZ
@given(case=manifests())
def test_manifest_rows_are_all_accounted_for(case: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> None:
    text, n = case
    folder = _manifest_folder(tmp_path_factory, "m", text)
    try:
        frame = read_manifest(folder / "m.csv", check_files=False)
    except ComicidError:
        return  # one clear error
    assert len(frame) == n  # validation never drops a row silently
    collection = Collection.create(folder.parent / "c")
    try:
        report = ingest(frame, collection, skip_bad=True, progress=False, source="fuzz")
    except ComicidError:
        return
    kept = len(collection.instances()) if collection.has_instances() else 0
    assert report.rows == n == report.added + report.updated + report.reused + len(report.skipped)
    assert kept == n - len(report.skipped)


@FUZZ
@given(case=manifests())
def test_import_cli_exits_0_or_one_line(case: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> None:
    text, _ = case
    folder = _manifest_folder(tmp_path_factory, "cli", text)
    _assert_clean_failure(*_run_cli(["-q", "import", str(folder / "m.csv"), "--out", str(folder.parent / "c")]))
    _assert_clean_failure(*_run_cli(["-q", "import", str(folder / "m.csv"), "--out", str(folder.parent / "d"),
                                     "--skip-bad"]))


# -- boxes against pages, in a child process with a capped address space ---------------------------------------
_BOX_WORKER = textwrap.dedent("""
    import os, resource, sys, tempfile
    from pathlib import Path
    from hypothesis import given, settings, strategies as st
    from PIL import Image
    from comicid.data.manifest import from_records
    from comicid.errors import ComicidError
    from comicid.store.collection import Collection
    from comicid.store.ingest import ingest
    # The cap is on top of what the imports mapped (importing comicid maps torch's large libraries).
    mapped = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + ADDRESS_SPACE, mapped + ADDRESS_SPACE))

    coordinate = st.one_of(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
                           st.sampled_from([0.0, 1.0, 1e7, -1e7, 1e5, 99999.0, 1e300]))
    root = Path(tempfile.mkdtemp())
    Image.new("RGB", (64, 48), "white").save(root / "p.png")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate,
                              st.sampled_from(["face", "body", "character"])), min_size=1, max_size=4))
    def run(boxes):
        records = [{"image": str(root / "p.png"), "x0": min(a, c), "y0": min(b, d), "x1": max(a, c) + 1,
                    "y1": max(b, d) + 1, "kind": kind} for a, b, c, d, kind in boxes]
        try:
            frame = from_records(records, roots=[root])
        except ComicidError:
            return
        collection = Collection.create(Path(tempfile.mkdtemp()) / "c")
        try:
            report = ingest(frame, collection, skip_bad=True, progress=False)
        except ComicidError:
            return
        assert report.rows == report.added + report.updated + report.reused + len(report.skipped)
        for box_row in collection.instances().itertuples():  # every kept crop is bounded
            assert collection.load_crop(box_row.crop_hash).width * collection.load_crop(box_row.crop_hash).height \\
                <= 4 * 64 * 48 + 10
    run()
    print("ok")
""")


def test_boxes_never_blow_up_memory() -> None:
    limit = 1_500_000_000  # 1.5 GB of address space beyond the imports: a 1e7-px-tall crop needs 10 GB
    script = _BOX_WORKER.replace("ADDRESS_SPACE", str(limit)).replace("EXAMPLES", "60")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-3000:] + done.stderr[-3000:]


# -- COCO JSON ------------------------------------------------------------------------------------------------
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
                      st.text(max_size=6), st.sampled_from(["p.png", "../p.png", "/etc/passwd", "face", "body"]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                          max_leaves=8)


@st.composite
def coco_files(draw: st.DrawFn) -> dict:
    images = draw(st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(1, 3), json_value),
                                                  "file_name": st.one_of(st.just("p.png"), json_value)}),
                           max_size=3))
    annotations = draw(st.lists(st.fixed_dictionaries(
        {"id": st.integers(0, 99), "image_id": st.one_of(st.integers(1, 3), json_value),
         "category_id": st.one_of(st.integers(1, 2), json_value),
         "bbox": st.one_of(st.lists(st.one_of(st.integers(-10, 100), json_leaf), min_size=4, max_size=4), json_value)}),
        max_size=5))
    categories = draw(st.one_of(st.just([{"id": 1, "name": "alice"}, {"id": 2, "name": "face"}]), json_value))
    document = {"images": images, "annotations": annotations, "categories": categories}
    if draw(st.booleans()):
        document[draw(st.sampled_from(["images", "annotations"]))] = draw(json_value)
    return document


@FUZZ
@given(document=coco_files(), skip=st.booleans())
def test_coco_files_import_or_fail_in_one_line(document: dict, skip: bool,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("coco")
    Image.new("RGB", (40, 30), "white").save(folder / "p.png")
    (folder / "c.json").write_text(json.dumps(document))
    try:
        frame = import_coco(folder / "c.json", skip_without_bbox=skip, check_files=False)
    except ComicidError:
        code, err = _run_cli(["-q", "import", str(folder / "c.json"), "--out", str(folder / "c")])
        _assert_clean_failure(code, err)
        assert code == 1
        return
    assert len(frame) + len(frame.attrs["skipped"]) == len(document["annotations"])  # no silent drop


# -- Manga109 XML ---------------------------------------------------------------------------------------------
xml_attribute = st.one_of(st.integers(-50, 300).map(str), st.sampled_from(["", "x", "1e400", "nan", "-0", "12.5"]),
                          st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=5))


@st.composite
def manga109_books(draw: st.DrawFn) -> tuple[str, int]:
    elements, count = [], 0
    for number in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["face", "body", "frame", "text"]))
        coords = " ".join(f'{name}={quoteattr(draw(xml_attribute))}' for name in ("xmin", "ymin", "xmax", "ymax"))
        character = draw(st.sampled_from(["c1", "c2", "nobody", ""]))
        elements.append(f'<{kind} id="e{number}" {coords} character="{character}">t</{kind}>')
        count += kind in ("face", "body")
    index = draw(st.sampled_from(["0", "1", "x", "-1"]))
    xml = (f'<?xml version="1.0" encoding="utf-8"?><book title="B"><characters><character id="c1" name="A"/>'
           f'<character id="c2" name="{draw(st.sampled_from(["B", "&amp;", "x"]))}"/></characters><pages>'
           f'<page index="{index}" width="200" height="100">{"".join(elements)}</page></pages></book>')
    return xml, count


@FUZZ
@given(book=manga109_books())
def test_manga109_books_import_or_fail_in_one_line(book: tuple[str, int],
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    xml, parts = book
    root = tmp_path_factory.mktemp("m109")
    (root / "annotations").mkdir()
    (root / "images" / "B").mkdir(parents=True)
    (root / "books.txt").write_text("B\n")
    (root / "annotations" / "B.xml").write_text(xml, encoding="utf-8")
    try:
        frame = import_manga109(root, check_files=False)
    except ComicidError:
        return
    assert len(frame) == parts  # every face and body element is a row, or the import failed


# -- numeric inputs -------------------------------------------------------------------------------------------
@FUZZ
@given(text=st.one_of(st.text(max_size=8), numbers.map(str), st.sampled_from(["auto", "AUTO", " 0.3", "inf", "-0"])))
def test_numeric_options_parse_or_fail_clearly(text: str) -> None:
    try:
        value = parse_threshold(text)
    except ComicidError:
        pass
    else:
        assert value is None or (math.isfinite(value) and value >= 0)
    try:
        number = positive_int(text)
    except Exception as error:  # noqa: BLE001 - argparse turns ArgumentTypeError into one usage line
        assert type(error).__name__ == "ArgumentTypeError"
    else:
        assert number >= 1


@FUZZ
@given(seed=st.integers(0, 10**6), levels=st.integers(1, 3), n_gallery=st.integers(2, 30))
def test_retrieval_scores_never_depend_on_gallery_order(seed: int, levels: int, n_gallery: int) -> None:
    rng = np.random.default_rng(seed)
    gallery = rng.integers(0, levels + 1, size=(n_gallery, 3)).astype(np.float64)  # coarse: many exact ties
    query = rng.integers(0, levels + 1, size=(5, 3)).astype(np.float64)
    for vectors in (gallery, query):
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    g_labels, q_labels = rng.integers(0, 4, size=n_gallery), rng.integers(0, 4, size=5)
    order = rng.permutation(n_gallery)
    forward = retrieval_metrics(query, q_labels, gallery, g_labels)
    shuffled = retrieval_metrics(query, q_labels, gallery[order], g_labels[order])
    assert pd.Series(forward).fillna(-1).to_dict() == pytest.approx(pd.Series(shuffled).fillna(-1).to_dict())
