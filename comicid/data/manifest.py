"""Manifest v1: the one table format every importer produces and every command reads.

A manifest is a table with one row per *part* (a face, a body, or a whole-character crop). Rows that
share an ``instance`` id within a ``book`` are one character instance whose face and body are fused;
a row without an instance id is an instance of its own. See ``docs/MANIFEST.md``.

In memory a manifest is a :class:`pandas.DataFrame` with the canonical columns below: text columns
are ``str`` (an empty string means "unknown"), box columns are ``float64`` (NaN when the row has no
box), and ``image`` holds an absolute path once read from disk. Extra columns of the source are kept
as text attributes.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comicid.errors import ManifestError
from comicid.atomic import write_table

BOX_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1")
TEXT_COLUMNS: tuple[str, ...] = (
    "identity", "kind", "instance", "book", "page", "panel", "sequence", "text", "role", "source", "split",
)
COLUMNS: tuple[str, ...] = ("image",) + BOX_COLUMNS + TEXT_COLUMNS

KINDS = frozenset({"face", "body", "character"})
ROLES = frozenset({"", "query", "gallery"})
#: ``dev`` and ``test`` are the v1 values; ``train`` marks identities reserved for training recipes.
SPLITS = frozenset({"", "dev", "test", "train"})
DEFAULT_KIND = "character"
DEFAULT_BOOK = "default"

_SEPARATOR = "\x1f"  # cannot appear in a CSV cell typed by a person
#: Joins the book and the locator of a row without an instance id: a different separator than the one
#: of explicit ids, so no instance id a user writes (``#row0``, a hash) can equal an anonymous key.
_ANONYMOUS = "\x1e"
#: Box coordinates beyond this many pixels are refused: no page is that large (the image loader caps
#: pages at :data:`comicid.data.images.MAX_IMAGE_PIXELS`), and 1e300 would overflow the crop code.
MAX_COORDINATE = 1e7


def _as_text(values: pd.Series) -> pd.Series:
    def one(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))  # page 3 read as 3.0 by a Parquet writer stays "3"
        return str(value).strip()

    return values.map(one).astype(object)


def normalise(table: pd.DataFrame, base_dir: Path | None = None) -> pd.DataFrame:
    """Give a raw table the canonical columns and types (no validation).

    Missing columns are added empty; ``kind`` defaults to ``character`` and ``book`` to ``default``;
    relative image paths are resolved against ``base_dir`` when given.
    """
    if "image" not in table.columns:
        raise ManifestError(["the manifest has no 'image' column"])
    frame = table.copy()
    frame.columns = [str(column).strip() for column in frame.columns]
    for column in TEXT_COLUMNS:
        frame[column] = _as_text(frame[column]) if column in frame.columns else ""
    for column in BOX_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    frame["image"] = _as_text(frame["image"])
    if base_dir is not None:
        base = Path(base_dir).resolve()
        frame["image"] = [
            str((base / image).resolve()) if image and not os.path.isabs(image) else image
            for image in frame["image"]
        ]
    frame["kind"] = frame["kind"].str.lower().replace("", DEFAULT_KIND)
    frame["role"] = frame["role"].str.lower()
    frame["split"] = frame["split"].str.lower()
    frame["book"] = frame["book"].replace("", DEFAULT_BOOK)
    extras = [column for column in frame.columns if column not in COLUMNS]
    for column in ["image", *TEXT_COLUMNS, *extras]:
        frame[column] = _as_text(frame[column])  # one dtype (object of str) whatever pandas inferred
    return frame[list(COLUMNS) + extras].reset_index(drop=True)


def _box_problems(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    numeric = {}
    for column in BOX_COLUMNS:
        raw = frame[column]
        converted = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = converted.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        for index in np.flatnonzero(bad.to_numpy()):
            problems.append((int(index), f"{column} = {raw.iloc[index]!r} is not a number"))
        numeric[column] = converted
    boxes = pd.DataFrame(numeric)
    given = boxes.notna()
    partial = given.any(axis=1) & ~given.all(axis=1)
    for index in np.flatnonzero(partial.to_numpy()):
        missing = [c for c in BOX_COLUMNS if not given.iloc[index][c]]
        problems.append((int(index), f"box is incomplete (missing {', '.join(missing)})"))
    full = given.all(axis=1).to_numpy()
    for index in np.flatnonzero(full):
        x0, y0, x1, y1 = boxes.iloc[index]
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            problems.append((int(index), "box has a non-finite coordinate"))
        elif max(abs(x0), abs(y0), abs(x1), abs(y1)) > MAX_COORDINATE:
            problems.append((int(index), f"box coordinate beyond ±{MAX_COORDINATE:.0e} px (no page is that large)"))
        elif x1 < x0:
            problems.append((int(index), "x1 < x0"))
        elif y1 < y0:
            problems.append((int(index), "y1 < y0"))
        elif x1 == x0 or y1 == y0:
            problems.append((int(index), "box has zero area"))
    for column in BOX_COLUMNS:
        frame[column] = boxes[column]
    return frame, problems


def _instance_problems(frame: pd.DataFrame) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    with_instance = frame[frame["instance"] != ""]
    for (book, instance), group in with_instance.groupby(["book", "instance"], sort=True):
        kinds = group["kind"].tolist()
        for kind in ("face", "body"):
            if kinds.count(kind) > 1:
                duplicates = group.index[group["kind"] == kind]
                rows = ", ".join(str(i + 1) for i in duplicates)
                problems.append((int(duplicates[1]),
                                 f"instance '{instance}' of book '{book}' has {kinds.count(kind)} {kind} rows "
                                 f"(rows {rows}); an instance has at most one face and one body"))
        if "character" in kinds and len(kinds) > 1:
            problems.append((int(group.index[0]),
                             f"instance '{instance}' of book '{book}' mixes a 'character' row with other parts"))
        identities = {value for value in group["identity"] if value}
        if len(identities) > 1:
            problems.append((int(group.index[0]),
                             f"instance '{instance}' of book '{book}' has conflicting identities "
                             f"{sorted(identities)}"))
    return problems


def inside(path: str | Path, roots: Sequence[Path]) -> bool:
    """True when ``path``, with every ``..`` and symbolic link resolved, lies under one of ``roots``."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots)


def validate(frame: pd.DataFrame, check_files: bool = True, source: str | None = None,
             roots: Sequence[Path] | None = None) -> pd.DataFrame:
    """Check every row of a normalised manifest; return it with numeric boxes.

    ``roots``: the source's folders; an image outside all of them (``../``, an absolute path, a
    symbolic link leading out) is a row error, so a manifest cannot make comicid read, crop and
    report files elsewhere on the machine. ``None`` allows any path (``--allow-outside``).

    Raises:
        ManifestError: with one message per bad row (``row 12: x1 < x0``), rows counted from 1.
    """
    frame, problems = _box_problems(frame.copy())
    for index, image in enumerate(frame["image"]):
        if not image:
            problems.append((index, "image is empty"))
        elif roots is not None and not inside(image, roots):
            problems.append((index, f"image '{image}' is outside the source folder "
                                    f"'{roots[0]}'; pass --allow-outside (allow_outside=True) to read it"))
        elif check_files and not os.path.isfile(image):
            problems.append((index, f"image '{image}' not found"))
    for column, allowed in (("kind", KINDS), ("role", ROLES), ("split", SPLITS)):
        bad = ~frame[column].isin(allowed)
        for index in np.flatnonzero(bad.to_numpy()):
            choices = ", ".join(sorted(v for v in allowed if v))
            problems.append((int(index), f"{column} = {frame[column].iloc[index]!r} (expected one of {choices})"))
    problems.extend(_instance_problems(frame))
    if problems:
        problems.sort(key=lambda item: item[0])
        raise ManifestError([f"row {index + 1}: {message}" for index, message in problems], source=source)
    return frame


def _check_csv_shape(path: Path) -> None:
    """Refuse what pandas would silently repair: a repeated header (renamed ``identity.1``) and rows
    with fewer cells than the header (their last columns, often the labels, read as empty)."""
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, skipinitialspace=True)
        header = next(rows, [])
        names = [name.strip() for name in header]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ManifestError([f"the header names column(s) {', '.join(map(repr, repeated))} more than once"],
                                source=str(path))
        number = 0
        for row in rows:
            if not row:
                continue  # a blank line, skipped by pandas too: not a row
            number += 1
            if len(row) < len(header):
                problems.append(f"row {number}: {len(row)} cells but the header has {len(header)} "
                                f"(missing {', '.join(names[len(row):][:4])})")
    if problems:
        raise ManifestError(problems, source=str(path))


def read_manifest(path: str | Path, check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """Read and validate a manifest-v1 CSV or Parquet file; images resolve against its folder.

    Images must lie inside the manifest's folder unless ``allow_outside`` is true.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError([f"manifest '{path}' not found"])
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            _check_csv_shape(path)
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ManifestError([f"cannot parse '{path}' as CSV or Parquet ({first})"]) from None
    if raw.empty and "image" in raw.columns:
        raise ManifestError(["the manifest has no rows"], source=str(path))
    roots = None if allow_outside else [path.parent]
    return validate(normalise(raw, base_dir=path.parent), check_files=check_files, source=str(path), roots=roots)


def from_records(records: Iterable[Mapping[str, object]], base_dir: Path | None = None,
                 check_files: bool = True, source: str | None = None,
                 roots: Sequence[Path] | None = None) -> pd.DataFrame:
    """Build a validated manifest from dictionaries (what importers produce); see :func:`validate` for ``roots``."""
    rows = list(records)
    if not rows:
        raise ManifestError(["no rows were found"], source=source)
    return validate(normalise(pd.DataFrame(rows), base_dir=base_dir), check_files=check_files, source=source,
                    roots=roots)


def write_manifest(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically as CSV or Parquet (by suffix), image paths relative to the file's folder."""
    path = Path(path)
    out = frame.copy()
    folder = path.parent.resolve()
    out["image"] = [os.path.relpath(image, folder) if os.path.isabs(image) else image for image in out["image"]]
    return write_table(out, path)


def part_locators(frame: pd.DataFrame) -> pd.Series:
    """What locates each row's pixels: a hash of its image path, box (to 1/1000 px) and kind.

    It never depends on the row's position or labels, so the same part gets the same locator in any
    manifest, and parts of two sources differ whenever their images differ.
    """
    boxes = [frame[c].map(lambda v: "" if pd.isna(v) else f"{float(v):.3f}") for c in BOX_COLUMNS]
    texts = (_SEPARATOR.join(values) for values in zip(frame["image"], *boxes, frame["kind"], strict=True))
    return pd.Series([hashlib.sha1(text.encode()).hexdigest()[:20] for text in texts], index=frame.index,
                     dtype=object)


def instance_keys(frame: pd.DataFrame) -> pd.Series:
    """One key per row naming its instance: ``book/instance``, or ``book/#<locator>`` when it has none.

    A row without an instance id is keyed by :func:`part_locators` (its image, box and kind), never by
    its position, so two manifests or two folders imported into one collection cannot fuse their
    anonymous rows, and a re-import finds the same key again.
    """
    locators = part_locators(frame)
    keys = [
        f"{book}{_SEPARATOR}{instance}" if instance else f"{book}{_ANONYMOUS}{locator}"
        for book, instance, locator in zip(frame["book"], frame["instance"], locators, strict=True)
    ]
    return pd.Series(keys, index=frame.index, dtype=object)


def display_key(instance_key: str) -> str:
    """The user-facing form of an instance key: ``book/instance`` (or ``book/#<locator>``)."""
    return instance_key.replace(_ANONYMOUS, "/#").replace(_SEPARATOR, "/")


def has_box(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows that carry a box."""
    return frame[list(BOX_COLUMNS)].notna().all(axis=1).to_numpy()
