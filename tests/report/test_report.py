"""The HTML report: self-contained, one section per book, mistakes marked once, metrics shown, text escaped."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comicid.cli import main
from comicid.data.manifest import read_manifest
from comicid.report import ReportOptions, build_report, mark_mistakes, write_report
from comicid.report.thumbnails import MISTAKE_COLOUR, DrawnBox, page_thumbnail, palette
from comicid.store.collection import Collection
from comicid.store.ingest import ingest

SCRIPT = "<script>alert(1)</script>"


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.classes):
                found.append(child)
            found.extend(child.find(tag, cls))
        return found


class TreeBuilder(HTMLParser):
    """A small DOM from the stdlib parser; void elements never take children."""

    VOID = {"img", "br", "meta", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(Node("#text", {}, text=data))


def parse(document: str) -> Node:
    builder = TreeBuilder()
    builder.feed(document)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def _page(path: Path, boxes: list[tuple[int, int, int, int]]) -> None:
    page = Image.new("RGB", (200, 150), "white")
    for index, box in enumerate(boxes):
        page.paste((40 * index, 120, 200 - 40 * index), box)
    page.save(path)


@pytest.fixture()
def collection(tmp_path: Path) -> Collection:
    """Two books: b1 has two pages (alice twice, bob once, one unlabelled), b2 a page and two crops."""
    source = tmp_path / "src"
    source.mkdir()
    _page(source / "p1.png", [(10, 10, 50, 50), (60, 10, 150, 140), (160, 20, 190, 90)])
    _page(source / "p2.png", [(20, 20, 80, 120), (100, 30, 180, 130)])
    _page(source / "p3.png", [(30, 30, 90, 110)])
    Image.new("RGB", (30, 40), "orange").save(source / "crop1.png")
    Image.new("RGB", (40, 30), "purple").save(source / "crop2.png")
    (source / "m.csv").write_text(
        "image,x0,y0,x1,y1,identity,kind,instance,book,page,text\n"
        "p1.png,10,10,50,50,alice,face,i1,b1,1,\n"
        "p1.png,60,10,150,140,alice,body,i1,b1,1,\n"
        "p1.png,160,20,190,90,bob,character,i2,b1,1,\n"
        "p2.png,20,20,80,120,alice,character,i3,b1,2,\n"
        f"p2.png,100,30,180,130,,character,i4,b1,2,{SCRIPT}\n"
        "p3.png,30,30,90,110,carol,character,i5,b2,1,\n"
        "crop1.png,,,,,carol,character,c1,b2,,\n"
        f"crop2.png,,,,,{SCRIPT},character,c2,b2,,\n")
    store = Collection.create(tmp_path / "collection")
    ingest(read_manifest(source / "m.csv"), store, progress=False)
    store.update_meta(metrics={"retrieval": {"rank1": 0.875, "mAP": 0.5, "queries": 8},
                               "clustering": {"bcubed_f": 2 / 3, "ari": float("nan")}})
    return store


def _assign(store: Collection) -> None:
    """Cluster ids per instance; bob (i2) joins alice's cluster k1: the one deliberate mistake."""
    keys = store.instances().drop_duplicates("instance_key").set_index("instance")["instance_key"]
    predicted = {"i1": "k1", "i2": "k1", "i3": "k1", "i4": "k1", "i5": "k2", "c1": "k2", "c2": SCRIPT}
    table = pd.DataFrame({"instance_key": [keys[name] for name in predicted],
                          "book": ["b1"] * 4 + ["b2"] * 3,
                          "identity_id": list(predicted.values()),
                          "confidence": [0.9, 0.4, 0.8, 0.7, 0.95, 0.6, 0.5]})
    store.write_assignments(table, {"method": "agglomerative", "model": "effnet-lite0-imagenet", "threshold": 0.35})


def test_report_has_a_section_per_book_and_an_embedded_image_per_page(collection: Collection) -> None:
    _assign(collection)
    tree = parse(build_report(collection))
    books = tree.find("section", "book")
    assert [book.find("h2")[0].all_text() for book in books] == ["Book: b1", "Book: b2"]
    assert [len(book.find("figure", "page")) for book in books] == [2, 1]
    assert all(len(page.find("img")) == 1 for book in books for page in book.find("figure", "page"))
    images = tree.find("img")
    assert len(images) == 3 + 7  # pages + one crop per instance
    assert all(image.attrs["src"].startswith("data:image/jpeg;base64,") for image in images)
    assert not tree.find("script") and not tree.find("link")


def test_the_mistake_is_marked_exactly_once_in_the_galleries(collection: Collection) -> None:
    _assign(collection)
    tree = parse(build_report(collection))
    galleries = [figure for gallery in tree.find("div", "gallery") for figure in gallery.find("figure", "crop")]
    mistakes = [figure for figure in galleries if "mistake" in figure.classes]
    assert len(mistakes) == 1
    assert "true: bob" in mistakes[0].all_text()
    assert "i2" in mistakes[0].attrs["title"]
    k1 = next(section for section in tree.find("section", "identity")
              if section.find("h4")[0].all_text().startswith("k1"))
    assert "4 instances, majority label alice, 1 mistake" in k1.all_text()
    assert "crop mistake" in k1.find("figure")[0].attrs["class"]  # mistakes lead their gallery


def test_metrics_and_assignment_info_are_tabulated(collection: Collection) -> None:
    _assign(collection)
    tree = parse(build_report(collection))
    rows = {tuple(cell.all_text() for cell in row.find("td"))
            for row in tree.find("table", "metrics")[0].find("tr") if row.find("td")}
    assert {("retrieval", "rank1", "0.8750"), ("retrieval", "mAP", "0.5000"), ("retrieval", "queries", "8"),
            ("clustering", "bcubed_f", "0.6667"), ("clustering", "ari", "n/a")} <= rows
    summary = {row.find("th")[0].all_text(): row.find("td")[0].all_text()
               for row in tree.find("table", "summary")[0].find("tr")}
    assert (summary["method"], summary["model"], summary["threshold"]) == ("agglomerative", "effnet-lite0-imagenet",
                                                                             "0.3500")
    assert (summary["books"], summary["instances"], summary["mistakes"]) == ("2", "7", "1")


def test_user_text_is_escaped(collection: Collection) -> None:
    _assign(collection)
    document = build_report(collection)
    assert "<script" not in document.lower()
    tree = parse(document)
    assert not tree.find("script")
    assert SCRIPT in tree.all_text()  # the identity id heading and the label in a caption
    assert any(SCRIPT in figure.attrs.get("title", "") for figure in tree.find("figure", "crop"))


def test_without_assignments_groups_by_label_and_says_so(collection: Collection) -> None:
    tree = parse(build_report(collection))
    assert "Clustering has not been run" in tree.all_text()
    headings = [section.find("h4")[0].all_text() for section in tree.find("section", "identity")]
    assert [heading.split(" ")[0] for heading in headings] == ["alice", "bob", "unlabelled", "carol", SCRIPT]
    assert not tree.find("figure", "mistake")
    assert len(tree.find("figure", "page")) == 3


def test_caps_are_announced_and_keep_mistakes(collection: Collection) -> None:
    _assign(collection)
    tree = parse(build_report(collection, ReportOptions(max_pages_per_book=1, max_per_identity=1)))
    text = tree.all_text()
    assert "Showing the first 1 of 2 pages" in text
    assert "Showing 1 of 4 instances" in text
    assert len(tree.find("figure", "page")) == 2
    assert len(tree.find("figure", "mistake")) == 1


def test_a_moved_page_is_reported_not_fatal(collection: Collection, tmp_path: Path) -> None:
    _assign(collection)
    (tmp_path / "src" / "p3.png").unlink()
    tree = parse(build_report(collection))
    missing = tree.find("figure", "missing")
    assert len(missing) == 1 and "not found" in missing[0].all_text()
    assert len(tree.find("div", "gallery")) == 3  # crops come from the collection's cache


def test_mistake_rule_by_hand() -> None:
    truth = ["a", "a", "b", "", "b", "c", "d", "e"]
    predicted = ["x", "x", "x", "x", "", "y", "z", "z"]
    # x: majority a, so b is wrong; unlabelled and unassigned never are; z ties d/e: d wins.
    assert mark_mistakes(truth, predicted).tolist() == [False, False, True, False, False, False, False, True]


def test_page_thumbnail_is_bounded_and_draws_boxes_and_mistakes() -> None:
    page = Image.new("RGB", (3000, 2000), "white")
    box = DrawnBox(300, 300, 1500, 1500, colour=(0, 0, 255), label="k1", mistake=True)
    thumb = page_thumbnail(page, [box], max_width=900)
    assert thumb.size == (900, 600)
    pixels = np.asarray(thumb)
    assert (pixels == (0, 0, 255)).all(axis=2).any()
    assert (pixels == MISTAKE_COLOUR).all(axis=2).sum() > 100


def test_palette_is_deterministic_and_distinct() -> None:
    names = [f"k{index}" for index in range(12)]
    colours = palette(names)
    assert colours == palette(names)
    assert len(set(colours.values())) == 12


def test_cli_writes_the_report_and_prints_its_path(collection: Collection, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "r.html"
    assert main(["report", str(collection.root), "--out", str(out), "-q", "--max-per-identity", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["-q", "report", str(collection.root)]) == 0
    assert (collection.root / "report.html").is_file()


def test_cli_errors_are_one_line(tmp_path: Path, collection: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "is not a comicid collection" in capsys.readouterr().err
    assert main(["report", str(collection.root), "--max-pages-per-book", "-1"]) == 1
    assert "must be 0 or more" in capsys.readouterr().err


def test_write_report_is_atomic_and_idempotent(collection: Collection, tmp_path: Path) -> None:
    _assign(collection)
    first = write_report(collection, tmp_path / "a.html").read_bytes()
    assert write_report(collection, tmp_path / "a.html").read_bytes() == first
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".a.html")] == []


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(collection: Collection, tmp_path: Path) -> None:
    _assign(collection)
    report = write_report(collection, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,4000",
                    report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (4000, 1200)
    assert (pixels.std(axis=(0, 1)) > 10).all()  # not a blank page
    assert (pixels == MISTAKE_COLOUR).all(axis=2).sum() > 50  # the gallery's dashed red frame is drawn
