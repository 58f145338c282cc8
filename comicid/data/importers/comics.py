"""COMICS with the Comic Character Instances (CCI) and Comic Sequence Identity (CSI) annotations.

These come from Soykan et al. 2023, "Identity-Aware Semi-Supervised Learning for Comic Character
Re-Identification", over the panel images of the COMICS dataset (Iyyer et al. 2017):

* ``merged_face_body.csv`` (CCI): one row per detected face or body in a panel, with columns
  ``series_id``, ``page_id`` (``<page>_<panel>``), ``type`` (``face``/``body``), ``index`` (the part's
  number in its panel), ``char_index`` (pairs a face and a body of one character) and the box
  ``x_0, y_0, x1, y_1`` in panel pixels (``x_1`` is accepted too).
* ``<split>_sequences.json`` (CSI): a list of sequences of 4 consecutive panels, each
  ``{"seq_id": "1014_14_0+1014_14_1+...", "annotations": [{"charId": ..., "charInstances":
  [{"face": "<series>_<page>_<panel>_face_<idx>", "body": "..._body_<idx>"}, ...]}, ...]}``.
* panel images ``<panels>/<series>/<page>_<panel>.jpg`` (COMICS ``raw_panel_images``).
* optionally the COMICS OCR transcripts ``COMICS_ocr_file.csv`` (Iyyer et al.): one row per text box,
  ``comic_no, page_no, panel_no, textbox_no, dialog_or_narration, text, x1, y1, x2, y2``; the texts of
  a panel, in ``textbox_no`` order, become the ``text`` of every instance of that panel (as Manga-MMTL
  reads Manga109: the text of a frame is attached to the characters of that frame).

Identities in CSI are only defined *within a sequence* (annotators grouped the characters of four
panels; the same hero in two sequences has two unrelated ids), so the manifest identity is
``<seq_id>:<charId>`` and evaluation on this source should be per sequence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from comicid.data.manifest import from_records
from comicid.data.importers.jsonfile import load_json
from comicid.errors import ManifestError

CSV_NAME = "merged_face_body.csv"
OCR_NAME = "COMICS_ocr_file.csv"
#: Where the COMICS repository keeps the OCR file, relative to the annotation folder.
OCR_FOLDERS = (".", "data")
OCR_COLUMNS = ("comic_no", "page_no", "panel_no", "textbox_no", "text")
SEQUENCES_SUFFIX = "_sequences.json"
#: Where the upstream repository keeps each file, relative to its ``data`` folder.
CSV_FOLDERS = (".", "ssl")
SEQUENCE_FOLDERS = (".", "comics_seq")
PANEL_FOLDERS = ("raw_panel_images", "panels")
#: Split names of the CSI files mapped to manifest splits (``dev`` is where thresholds are tuned).
SPLIT_NAMES: dict[str, str] = {
    "train": "train", "val": "dev", "valid": "dev", "validation": "dev", "dev": "dev", "test": "test",
}
_PART_NAMES = {"face": "face", "faces": "face", "body": "body", "bodies": "body"}
_INSTANCE_ID = re.compile(r"^(?P<series>[^_]+)_(?P<page>[^_]+)_(?P<panel>[^_]+)_(?P<part>[a-z]+)_(?P<index>[^_]+)$")


@dataclass(frozen=True)
class _Part:
    """One face or body box of the CCI table."""

    series: str
    page: str
    panel: str
    kind: str
    index: str
    box: tuple[float, float, float, float]
    char_index: str


def find_csv(root: Path) -> Path | None:
    """``merged_face_body.csv`` in ``root`` or ``root/ssl`` (the upstream layout), else None."""
    return next((root / folder / CSV_NAME for folder in CSV_FOLDERS if (root / folder / CSV_NAME).is_file()), None)


def find_ocr(root: Path) -> Path | None:
    """``COMICS_ocr_file.csv`` in ``root`` or ``root/data``, else None."""
    return next((root / folder / OCR_NAME for folder in OCR_FOLDERS if (root / folder / OCR_NAME).is_file()), None)


def read_ocr_texts(path: Path) -> dict[tuple[str, str, str], str]:
    """Panel ``(series, page, panel)`` -> its transcribed text boxes joined by spaces, in ``textbox_no`` order."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ManifestError([f"cannot parse '{path}' as CSV ({error})"]) from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in OCR_COLUMNS if column not in table.columns]
    if missing:
        raise ManifestError([f"'{path}' lacks the columns {', '.join(missing)} (the COMICS OCR file has "
                             f"{', '.join(OCR_COLUMNS)}, ...)"])
    boxes: dict[tuple[str, str, str], list[tuple[float, str]]] = {}
    for number, row in enumerate(table.itertuples(index=False), start=1):
        text = " ".join(str(row.text).split())
        if not text:
            continue
        try:
            order = float(row.textbox_no or 0)
        except ValueError:
            raise ManifestError([f"row {number}: textbox_no {row.textbox_no!r} is not a number"],
                                source=str(path)) from None
        key = (_number_text(row.comic_no), _number_text(row.page_no), _number_text(row.panel_no))
        boxes.setdefault(key, []).append((order, text))
    return {key: " ".join(text for _, text in sorted(items, key=lambda item: item[0]))
            for key, items in boxes.items()}


def _number_text(value: str) -> str:
    """``"3.0"`` and ``" 3"`` both become ``"3"`` so CSV values match the ids in the JSON."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


def _read_parts(path: Path) -> dict[tuple[str, str, str, str, str], _Part]:
    """The CCI table keyed by ``(series, page, panel, kind, index)``."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ManifestError([f"cannot parse '{path}' as CSV ({error})"]) from None
    table.columns = [str(column).strip() for column in table.columns]
    if "x_1" in table.columns and "x1" not in table.columns:
        table = table.rename(columns={"x_1": "x1"})
    required = ["series_id", "page_id", "type", "index", "x_0", "y_0", "x1", "y_1"]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ManifestError([f"'{path}' lacks the columns {', '.join(missing)} (CCI merged_face_body.csv has "
                             f"{', '.join(required)})"])
    parts: dict[tuple[str, str, str, str, str], _Part] = {}
    problems: list[str] = []
    char_indexes = table["char_index"] if "char_index" in table.columns else [""] * len(table)
    rows = zip(table["series_id"], table["page_id"], table["type"], table["index"],
               table["x_0"], table["y_0"], table["x1"], table["y_1"], char_indexes, strict=True)
    for number, (series, page_panel, kind, index, *box_text, char_index) in enumerate(rows, start=1):
        page, _, panel = page_panel.strip().partition("_")
        part_kind = _PART_NAMES.get(kind.strip().lower())
        if not panel or part_kind is None:
            problems.append(f"row {number}: page_id {page_panel!r} / type {kind!r} is not '<page>_<panel>' / face|body")
            continue
        try:
            x0, y0, x1, y1 = (float(value) for value in box_text)
        except ValueError:
            problems.append(f"row {number}: box {box_text} is not four numbers")
            continue
        key = (_number_text(series), _number_text(page), _number_text(panel), part_kind, _number_text(index))
        if key in parts:
            problems.append(f"row {number}: {part_kind} {key[4]} of panel {page_panel} in series {series} "
                            "is listed twice")
            continue
        parts[key] = _Part(*key, box=(x0, y0, x1, y1), char_index=_number_text(char_index))
    if problems:
        raise ManifestError(problems, source=str(path))
    return parts


def _parse_instance_id(value: Any) -> tuple[str, str, str, str, str]:
    """``"1443_58_6_face_0"`` -> ``("1443", "58", "6", "face", "0")``."""
    match = _INSTANCE_ID.match(str(value).strip())
    if match is None or match["part"] not in _PART_NAMES:
        raise ValueError(f"instance id {value!r} is not '<series>_<page>_<panel>_<face|body>_<idx>'")
    return (_number_text(match["series"]), _number_text(match["page"]), _number_text(match["panel"]),
            _PART_NAMES[match["part"]], _number_text(match["index"]))


def _sequence_files(root: Path, splits: Sequence[str] | None) -> list[tuple[Path, str]]:
    """``(file, manifest split)`` for each CSI file, sorted by name for a deterministic row order."""
    found = sorted({path for folder in SEQUENCE_FOLDERS for path in (root / folder).glob(f"*{SEQUENCES_SUFFIX}")},
                   key=lambda path: path.name)
    files: list[tuple[Path, str]] = []
    for path in found:
        name = path.name[: -len(SEQUENCES_SUFFIX)].lower()
        if name not in SPLIT_NAMES:
            raise ManifestError([f"'{path.name}': unknown split '{name}' (expected one of "
                                 f"{', '.join(sorted(SPLIT_NAMES))})"])
        if splits is None or name in splits:
            files.append((path, SPLIT_NAMES[name]))
    if splits is not None:
        absent = sorted(set(splits) - {path.name[: -len(SEQUENCES_SUFFIX)].lower() for path, _ in files})
        if absent:
            raise ManifestError([f"no '{split}{SEQUENCES_SUFFIX}' in '{root}' or '{root / 'comics_seq'}'"
                                 for split in absent])
    return files


def _load_sequences(path: Path) -> list[Any]:
    return load_json(path, list, "a list of sequences")


class _SequenceReader:
    """Turns CSI sequences and CCI boxes into manifest records, collecting every problem."""

    def __init__(self, parts: Mapping[tuple[str, str, str, str, str], _Part], panels: Path,
                 skip_missing_boxes: bool, texts: Mapping[tuple[str, str, str], str] | None = None) -> None:
        self.parts = parts
        self.panels = panels
        self.texts = texts or {}
        self.skip_missing_boxes = skip_missing_boxes
        self.records: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.skipped: list[str] = []
        self.used: set[tuple[str, str, str, str, str]] = set()

    def record(self, part: _Part, **fields: str) -> dict[str, Any]:
        x0, y0, x1, y1 = part.box
        return {
            "image": str(self.panels / part.series / f"{part.page}_{part.panel}.jpg"),
            "x0": x0, "y0": y0, "x1": x1, "y1": y1, "kind": part.kind, "book": part.series,
            "page": part.page, "panel": f"{part.page}_{part.panel}",
            "text": self.texts.get((part.series, part.page, part.panel), ""), **fields,
        }

    def add_sequences(self, path: Path, split: str) -> None:
        for position, sequence in enumerate(_load_sequences(path), start=1):
            where = f"{path.name}: sequence {position}"
            if not isinstance(sequence, Mapping) or not sequence.get("seq_id") \
                    or not isinstance(sequence.get("annotations"), list):
                self.problems.append(f"{where}: needs 'seq_id' and an 'annotations' list")
                continue
            seq_id = str(sequence["seq_id"])
            for character in sequence["annotations"]:
                if not isinstance(character, Mapping) or "charId" not in character \
                        or not isinstance(character.get("charInstances"), list):
                    self.problems.append(f"{where} ({seq_id}): each annotation needs 'charId' and a "
                                         "'charInstances' list")
                    continue
                for instance in character["charInstances"]:
                    self.add_instance(f"{where} ({seq_id})", seq_id, str(character["charId"]), instance, split)

    def add_instance(self, where: str, seq_id: str, char_id: str, instance: Any, split: str) -> None:
        if not isinstance(instance, Mapping):
            self.problems.append(f"{where}: an instance of character {char_id!r} is {instance!r}, expected "
                                 '{"face": <id>, "body": <id>}')
            return
        ids = [instance[kind] for kind in ("face", "body") if instance.get(kind)]
        if not ids:
            self.skipped.append(f"{where}: an instance of character {char_id!r} has neither a face nor a body")
            return
        try:
            keys = [_parse_instance_id(value) for value in ids]
        except ValueError as error:
            self.problems.append(f"{where}: {error}")
            return
        if len({key[:3] for key in keys}) > 1:
            self.problems.append(f"{where}: face {ids[0]!r} and body {ids[1]!r} are in different panels")
            return
        missing = [value for value, key in zip(ids, keys, strict=True) if key not in self.parts]
        if missing:
            message = (f"{where}: {', '.join(map(repr, missing))} not in {CSV_NAME} (leave such parts out "
                       "with skip_missing_boxes=True, CLI: --option skip_missing_boxes=true)")
            (self.skipped if self.skip_missing_boxes else self.problems).append(message)
            keys = [key for key in keys if key in self.parts]
        fields = {"identity": f"{seq_id}:{char_id}", "instance": f"{seq_id}:{ids[0]}", "sequence": seq_id,
                  "split": split}
        for key in keys:
            self.used.add(key)
            self.records.append(self.record(self.parts[key], **fields))

    def add_unlabelled(self) -> None:
        """CCI parts that no sequence mentions: identity unknown, face and body paired by ``char_index``."""
        for key in sorted(set(self.parts) - self.used):
            part = self.parts[key]
            paired = part.char_index and not part.char_index.startswith("-")
            instance = f"{part.page}_{part.panel}:c{part.char_index}" if paired else ""
            self.records.append(self.record(part, identity="", instance=instance))


def _panel_folder(root: Path, panels: str | Path | None, check_files: bool) -> Path:
    if panels is not None:
        folder = Path(panels).resolve()
    else:
        folder = next((root / name for name in PANEL_FOLDERS if (root / name).is_dir()), root / PANEL_FOLDERS[0])
    if check_files and not folder.is_dir():
        raise ManifestError([f"COMICS panel folder '{folder}' not found; pass panels=<the COMICS "
                             "raw_panel_images folder> (CLI: --option panels=DIR; images "
                             "<series>/<page>_<panel>.jpg)"])
    return folder


def import_comics(root: str | Path, *, panels: str | Path | None = None, splits: Iterable[str] | None = None,
                  unlabelled: bool | None = None, skip_missing_boxes: bool = False,
                  ocr: str | Path | None = None, check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """Read CCI boxes and CSI sequences into a manifest, one row per face or body.

    Args:
        root: the folder holding ``merged_face_body.csv`` and ``<split>_sequences.json`` (directly,
            or in ``ssl/`` and ``comics_seq/`` as in the upstream repository).
        panels: the COMICS panel images folder; default ``root/raw_panel_images`` or ``root/panels``.
        splits: CSI files to read by split name (``train``, ``validation``, ``test``); default all.
        unlabelled: also import CCI parts that no sequence mentions (identity empty). Default: only
            when there is no sequence file, so that plain CCI gives an unlabelled collection.
        skip_missing_boxes: leave out sequence parts absent from the CSV (listed in
            ``frame.attrs["skipped"]``) instead of raising.
        ocr: the COMICS OCR transcripts (``COMICS_ocr_file.csv``); default: that file in ``root`` or
            ``root/data`` when present. Each instance's ``text`` = the text boxes of its panel.
        check_files: passed to manifest validation (and requires the panel folder).
        allow_outside: accept ``series_id`` values that lead out of the panel folder (refused by default).

    Rows: ``book`` = series, ``page``, ``panel`` = ``<page>_<panel>``, ``sequence`` = ``seq_id``,
    ``identity`` = ``<seq_id>:<charId>``, ``instance`` shared by the face and body of one
    ``charInstance``, ``split`` from the file name (``validation`` -> ``dev``).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ManifestError([f"COMICS annotation folder '{root}' not found"])
    csv_path = find_csv(root)
    if csv_path is None:
        raise ManifestError([f"no {CSV_NAME} in '{root}' or '{root / 'ssl'}'"])
    parts = _read_parts(csv_path)
    files = _sequence_files(root, None if splits is None else [split.lower() for split in splits])
    panel_folder = _panel_folder(root, panels, check_files)
    ocr_path = Path(ocr).resolve() if ocr is not None else find_ocr(root)
    if ocr_path is not None and not ocr_path.is_file():
        raise ManifestError([f"COMICS OCR file '{ocr_path}' not found"])
    texts = read_ocr_texts(ocr_path) if ocr_path is not None else None
    reader = _SequenceReader(parts, panel_folder, skip_missing_boxes, texts)
    for path, split in files:
        reader.add_sequences(path, split)
    if reader.problems:
        raise ManifestError(reader.problems, source=str(root))
    if unlabelled or (unlabelled is None and not files):
        reader.add_unlabelled()
    frame = from_records(reader.records, check_files=check_files, source=str(root),
                         roots=None if allow_outside else [panel_folder, root])
    frame.attrs["skipped"] = reader.skipped
    return frame
