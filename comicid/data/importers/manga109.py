"""Manga109: ``books.txt``, ``annotations/<title>.xml``, ``images/<title>/<index:03d>.jpg``.

Each page's XML lists ``frame`` (panel), ``face``, ``body`` and ``text`` boxes; faces and bodies
carry a ``character`` id declared in the book's ``<characters>``. Reading goes through the
``manga109api`` package, the dataset's reference parser. Manga109 does not say which face belongs to
which body, and gives boxes, not panels, for faces and bodies, so this importer derives both (see
:func:`import_manga109`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import manga109api
import pandas as pd

from comicid.data.manifest import from_records, inside
from comicid.errors import ConfigError, ManifestError

PARTS = ("face", "body")
IDENTITY_CHOICES = ("id", "name")


def is_manga109_root(folder: Path) -> bool:
    """True for a folder in the Manga109 layout (``books.txt``, ``annotations/``, ``images/``)."""
    return (folder / "books.txt").is_file() and (folder / "annotations").is_dir() and (folder / "images").is_dir()


#: A box as (xmin, ymin, xmax, ymax) in page pixels.
Coords = tuple[float, float, float, float]


def _box(element: Mapping[str, Any]) -> Coords:
    try:
        x0, y0, x1, y1 = (float(element[f"@{name}"]) for name in ("xmin", "ymin", "xmax", "ymax"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{element.get('type', 'element')} {element.get('@id', '?')!r} has no numeric "
                         "xmin/ymin/xmax/ymax") from None
    return x0, y0, x1, y1


def _containing_frame(box: Coords, frames: Sequence[tuple[str, Coords]]) -> str:
    """Id of the smallest frame that holds the box's centre ("" when none): a face or body belongs to
    the panel it is drawn in, and nested or overlapping frames favour the tightest one."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best_id, best_area = "", float("inf")
    for frame_id, (x0, y0, x1, y1) in frames:
        area = (x1 - x0) * (y1 - y0)
        if x0 <= centre_x <= x1 and y0 <= centre_y <= y1 and area < best_area:
            best_id, best_area = frame_id, area
    return best_id


def _frame_texts(page: Mapping[str, Any], frames: Sequence[tuple[str, Coords]]) -> dict[str, str]:
    """Texts of each frame, joined by spaces in XML order (a text belongs to the frame holding its centre)."""
    texts: dict[str, list[str]] = defaultdict(list)
    for text in page.get("text", []):
        content = str(text.get("#text", "")).strip()
        frame_id = _containing_frame(_box(text), frames)
        if content and frame_id:
            texts[frame_id].append(content)
    return {frame_id: " ".join(parts) for frame_id, parts in texts.items()}


def _pair_instances(records: list[dict[str, Any]]) -> None:
    """Give a face and a body one instance id when they are the only face and the only body of one
    character in one frame: the one case where the pairing is certain."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["panel"] and record["identity"]:
            groups[(record["panel"], record["identity"])].append(record)
    for members in groups.values():
        kinds = sorted(member["kind"] for member in members)
        if kinds == ["body", "face"]:
            face, body = sorted(members, key=lambda member: member["kind"], reverse=True)
            instance = f"{face['annotation_id']}+{body['annotation_id']}"
            face["instance"] = body["instance"] = instance


def _part_record(element: Mapping[str, Any], kind: str, frames: Sequence[tuple[str, Coords]],
                 characters: Mapping[str, str], identity: str) -> dict[str, Any]:
    character = str(element.get("@character", "")).strip()
    if character and character not in characters:
        raise ValueError(f"{kind} {element.get('@id')!r} names character {character!r}, which is not in <characters>")
    box = _box(element)
    return {
        "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
        "identity": characters[character] if identity == "name" and character else character,
        "kind": kind, "panel": _containing_frame(box, frames), "instance": "",
        "annotation_id": str(element.get("@id", "")),
    }


def _page_records(parser: manga109api.Parser, book: str, page: Mapping[str, Any], characters: Mapping[str, str],
                  identity: str, problems: list[str]) -> list[dict[str, Any]]:
    """Rows of one page; a bad element adds a problem (``page 3: ...``) and the page goes on."""
    index = page.get("@index")
    if not isinstance(index, int):
        problems.append(f"page {index!r}: the page index is not an integer")
        return []
    try:
        frames = [(str(frame.get("@id", "")), _box(frame)) for frame in page.get("frame", [])]
        texts = _frame_texts(page, frames)
    except ValueError as error:
        problems.append(f"page {index}: {error}")
        return []
    records: list[dict[str, Any]] = []
    for kind in PARTS:
        for element in page.get(kind, []):
            try:
                record = _part_record(element, kind, frames, characters, identity)
            except ValueError as error:
                problems.append(f"page {index}: {error}")
                continue
            record.update(image=parser.img_path(book, index), book=book, page=str(index),
                          text=texts.get(record["panel"], ""))
            records.append(record)
    _pair_instances(records)
    return records


def _book_records(parser: manga109api.Parser, book: str, annotations: str, identity: str) -> list[dict[str, Any]]:
    path = parser.root_dir / annotations / f"{book}.xml"
    if not path.is_file():
        raise ManifestError([f"book '{book}' is listed in books.txt but '{path}' is missing"])
    try:
        annotation = parser.get_annotation(book, annotation_type=annotations)
    except ET.ParseError as error:
        raise ManifestError([f"'{path}' is not valid XML ({error})"]) from None
    except UnicodeDecodeError as error:
        raise ManifestError([f"'{path}' is not UTF-8 text ({error.reason} at byte {error.start}); Manga109 "
                             "annotations are UTF-8 (manga109api reads them so): re-save it as UTF-8"]) from None
    except RecursionError:
        raise ManifestError([f"'{path}' is nested too deeply to be Manga109 XML"]) from None
    except (TypeError, KeyError) as error:
        raise ManifestError([f"'{path}' is not Manga109 XML (expected <book title=...><characters/>"
                             f"<pages><page .../></pages></book>; {type(error).__name__}: {error})"]) from None
    characters = {str(character["@id"]): str(character.get("@name", "")) for character in annotation["character"]}
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for page in annotation["page"]:
        records.extend(_page_records(parser, book, page, characters, identity, problems))
    if problems:
        raise ManifestError(problems, source=str(path))
    return records


def import_manga109(root: str | Path, *, books: Iterable[str] | None = None, identity: str = "id",
                    annotations: str = "annotations", check_files: bool = True,
                    allow_outside: bool = False) -> pd.DataFrame:
    """Read Manga109 face and body boxes into a manifest, one row per box.

    Args:
        root: the dataset folder (``Manga109_released_2023_12_07`` or similar).
        books: titles to read (default: every title in ``books.txt``, in its order).
        identity: ``id`` (the character id, unique within a book) or ``name`` (as annotated;
            minor characters often share names such as ``Other``).
        annotations: the annotation folder name (some releases add e.g. ``annotations.v2018.05.31``).
        check_files: passed to manifest validation.
        allow_outside: accept titles (``books.txt``, ``books``) and ``annotations`` that lead out of
            ``root`` (e.g. ``../x``); refused by default, before any file is read.

    Rows: ``book`` = title, ``page`` = page index (0-based, as in the file names), ``panel`` = id of
    the smallest frame holding the box's centre ("" when none), ``text`` = the texts of that frame
    joined by spaces, ``instance`` = ``<face id>+<body id>`` when the frame holds exactly one face
    and one body of the character, else empty. The ``annotation_id`` column keeps the XML id.
    """
    root = Path(root).resolve()
    if identity not in IDENTITY_CHOICES:
        raise ConfigError(f"identity '{identity}' is not one of {', '.join(IDENTITY_CHOICES)}")
    if not (root / "books.txt").is_file():
        raise ManifestError([f"'{root}' is not a Manga109 folder: books.txt not found"])
    parser = manga109api.Parser(root_dir=root)
    titles = [title for title in parser.books if title] if books is None else list(books)
    unknown = [title for title in titles if title not in parser.books]
    if unknown:
        raise ManifestError([f"book '{title}' is not in books.txt" for title in unknown], source=str(root))
    if not allow_outside:
        leaving = [title for title in titles
                   if not inside(root / annotations / f"{title}.xml", [root]) or not inside(root / "images" / title, [root])]
        if leaving:
            raise ManifestError([f"book {title!r} leads outside '{root}'; pass --allow-outside "
                                 "(allow_outside=True) to read it" for title in leaving], source=str(root))
    records = [record for title in titles for record in _book_records(parser, title, annotations, identity)]
    if not records:
        raise ManifestError([f"no face or body annotations in the books of '{root}'"])
    return from_records(records, check_files=check_files, source=str(root), roots=None if allow_outside else [root])
