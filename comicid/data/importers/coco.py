"""COCO-style JSON: ``images``, ``annotations`` with ``bbox`` [x, y, w, h], ``categories``.

Detection datasets of comics (and tools such as CVAT or Label Studio) export this format. The
identity of a box is either its category's name (one category per character) or an annotation
attribute (categories are then usually the parts ``face``/``body``, and the character is an
attribute such as ``attributes.character_id``). Each COCO image is one page.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comicid.data.manifest import KINDS, from_records
from comicid.data.importers.jsonfile import load_json
from comicid.errors import ConfigError, ManifestError

#: Category names that name a part rather than a character.
PART_NAMES = frozenset({"face", "body"})
_MISSING = object()


class _NoBox(Exception):
    """An annotation without a box (segmentation-only or image-level)."""


def lookup(record: Mapping[str, Any], dotted: str) -> Any:
    """Value at a dotted path (``attributes.character_id``), or a sentinel when any step is absent."""
    value: Any = record
    for key in dotted.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _text(value: Any) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ManifestError([f"COCO file '{path}' not found"])
    data = load_json(path, dict, "an object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ManifestError([f"'{path}' has no '{key}' list; is it a COCO annotation file?"])
    return data


def _image_paths(data: dict[str, Any], json_dir: Path, images_root: Path | None) -> dict[Any, tuple[str, str]]:
    """``image id -> (absolute path, page)``; without ``images_root`` try the JSON's folder, then ``images/``."""
    paths: dict[Any, tuple[str, str]] = {}
    problems: list[str] = []
    for position, image in enumerate(data["images"], start=1):
        if not isinstance(image, Mapping) or "id" not in image or not image.get("file_name"):
            problems.append(f"image {position}: needs 'id' and 'file_name'")
            continue
        if not _is_id(image["id"]) or not isinstance(image["file_name"], str):
            problems.append(f"image {position}: id must be a number or a string and file_name a string, "
                            f"got id {_short(image['id'])} and file_name {_short(image['file_name'])}")
            continue
        if image["id"] in paths:
            problems.append(f"image {position}: id {image['id']!r} is used twice")
            continue
        name = str(image["file_name"])
        folders = [images_root] if images_root is not None else [json_dir, json_dir / "images"]
        candidates = [folder / name for folder in folders]
        found = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
        paths[image["id"]] = (str(found.resolve()), _text(image["id"]))
    if problems:
        raise ManifestError(problems)
    return paths


def _is_id(value: Any) -> bool:
    """COCO ids are numbers or strings; lists, objects, booleans and null are not (nor hashable, some)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _categories(data: dict[str, Any]) -> dict[Any, str]:
    categories: dict[Any, str] = {}
    listed = data.get("categories") or []
    if not isinstance(listed, list):
        raise ManifestError([f"'categories' is a JSON {type(listed).__name__}, expected a list"])
    for position, category in enumerate(listed, start=1):
        if not isinstance(category, Mapping) or "id" not in category or not _is_id(category["id"]):
            raise ManifestError([f"category {position}: needs 'id' (a number or a string) and 'name'"])
        categories[category["id"]] = _text(category.get("name"))
    return categories


def _box(bbox: Any) -> tuple[float, float, float, float] | None:
    """``[x, y, w, h]`` as ``(x0, y0, x1, y1)``; None when the annotation has no box; ValueError if malformed."""
    if bbox is None or bbox == []:
        return None
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
    try:
        x, y, width, height = (float(value) for value in bbox)
    except (TypeError, ValueError):
        raise ValueError(f"bbox {bbox!r} has a value that is not a number") from None
    return x, y, x + width, y + height


def _kind(annotation: Mapping[str, Any], category: str, kind_field: str | None, default: str) -> str:
    if kind_field is not None:
        value = _text(lookup(annotation, kind_field)).lower()
        if value not in KINDS:
            raise ValueError(f"{kind_field} = {value!r} (expected one of {', '.join(sorted(KINDS))})")
        return value
    return category.lower() if category.lower() in PART_NAMES else default


def _identity(annotation: Mapping[str, Any], category: str, identity_field: str | None) -> str:
    if identity_field is None:
        if category.lower() in PART_NAMES:
            raise ValueError(f"its category '{category}' names a part, not a character; pass identity_field "
                             "(e.g. 'attributes.character_id') to say where the character is")
        return category
    return _text(lookup(annotation, identity_field))


def import_coco(path: str | Path, *, identity_field: str | None = None, kind_field: str | None = None,
                instance_field: str | None = None, kind: str = "character", book: str | None = None,
                images_root: str | Path | None = None, skip_without_bbox: bool = False,
                check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """Read a COCO annotation file into a manifest, one row per annotation.

    Args:
        path: the JSON file.
        identity_field: where the character is: None for the category name, otherwise a top-level
            annotation key (``track_id``) or a dotted path (``attributes.character_id``). An
            annotation without the field has an unknown (empty) identity.
        kind_field: where the part is (``face``/``body``/``character``); by default a category named
            ``face`` or ``body`` gives the kind and any other category gives ``kind``.
        instance_field: optional annotation key or dotted path shared by the face and body of one
            character instance.
        kind: the kind of annotations whose category is not a part name.
        book: the collection scope; defaults to the JSON file's stem.
        images_root: folder that ``file_name`` is relative to; by default the JSON's folder, or
            ``images/`` next to it when the file is there.
        skip_without_bbox: import annotations without a ``bbox`` by leaving them out (listed in
            ``frame.attrs["skipped"]``) instead of raising.
        check_files: passed to manifest validation.
        allow_outside: accept ``file_name`` values that lead out of the JSON's folder (and of
            ``images_root``), e.g. ``../x.png`` or absolute paths; refused by default.

    Raises:
        ManifestError: unreadable JSON, missing keys, an unknown image or category id, a malformed
            box, annotations without boxes (unless skipped), or an identity field that no
            annotation has. One message per bad annotation, numbered from 1 in file order.
    """
    path = Path(path).resolve()
    if kind not in KINDS:
        raise ConfigError(f"kind '{kind}' is not one of {', '.join(sorted(KINDS))}")
    data = _load_json(path)
    images = _image_paths(data, path.parent, Path(images_root).resolve() if images_root is not None else None)
    categories = _categories(data)
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    without_box: list[str] = []
    for position, annotation in enumerate(data["annotations"], start=1):
        if not isinstance(annotation, Mapping):
            problems.append(f"annotation {position}: is not a JSON object")
            continue
        label = f"annotation {position} (id {annotation.get('id', '?')!r})"
        try:
            records.append(_record(annotation, images, categories, identity_field, kind_field, instance_field, kind))
        except LookupError as error:
            problems.append(f"{label}: {error.args[0]}")
        except ValueError as error:
            problems.append(f"{label}: {error}")
        except _NoBox:
            without_box.append(label)
    if without_box and not skip_without_bbox:
        problems.append(f"{len(without_box)} annotations have no bbox (first: {without_box[0]}); "
                        "pass skip_without_bbox=True (CLI: --option skip_without_bbox=true) to leave them out")
    if problems:
        raise ManifestError(problems, source=str(path))
    if identity_field is not None and records and not any(record["identity"] for record in records):
        raise ManifestError([f"no annotation has the identity field '{identity_field}'"], source=str(path))
    scope = book if book else path.stem
    for record in records:
        record["book"] = scope
    roots = [path.parent] + ([Path(images_root).resolve()] if images_root is not None else [])
    frame = from_records(records, base_dir=path.parent, check_files=check_files, source=str(path),
                         roots=None if allow_outside else roots)
    frame.attrs["skipped"] = [f"{label}: has no bbox" for label in without_box]
    return frame


def _record(annotation: Mapping[str, Any], images: dict[Any, tuple[str, str]], categories: dict[Any, str],
            identity_field: str | None, kind_field: str | None, instance_field: str | None,
            default_kind: str) -> dict[str, Any]:
    if not _is_id(annotation.get("image_id")) or annotation.get("image_id") not in images:
        raise LookupError(f"image_id {_short(annotation.get('image_id'))} is not in 'images'")
    category = ""
    if identity_field is None or "category_id" in annotation:
        if not _is_id(annotation.get("category_id")) or annotation.get("category_id") not in categories:
            raise LookupError(f"category_id {_short(annotation.get('category_id'))} is not in 'categories'")
        category = categories[annotation["category_id"]]
    box = _box(annotation.get("bbox"))
    if box is None:
        raise _NoBox
    image, page = images[annotation["image_id"]]
    x0, y0, x1, y1 = box
    return {
        "image": image, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
        "identity": _identity(annotation, category, identity_field),
        "kind": _kind(annotation, category, kind_field, default_kind),
        "instance": _text(lookup(annotation, instance_field)) if instance_field else "",
        "page": page,
    }
