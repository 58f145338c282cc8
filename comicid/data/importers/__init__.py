"""Importers: every supported source format, read into a validated manifest-v1 DataFrame.

One module per format; each importer is a function ``(src, **options) -> DataFrame`` that ends in
:func:`comicid.data.manifest.from_records`, so validation and row-numbered errors are the same for
every source. Anything an importer leaves out on request is listed in ``frame.attrs["skipped"]``.
See ``docs/IMPORTERS.md`` for layouts, field mappings and options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from comicid.data.importers.coco import import_coco
from comicid.data.importers.comics import find_csv, import_comics
from comicid.data.importers.folder import import_folder
from comicid.data.importers.manga109 import import_manga109, is_manga109_root
from comicid.data.importers.webcaricature import import_webcaricature, is_webcaricature_root
from comicid.data.manifest import read_manifest
from comicid.errors import ConfigError, ManifestError
from comicid.registry import Registry

__all__ = ["IMPORTERS", "Importer", "detect_format", "load_source", "import_coco", "import_comics",
           "import_folder", "import_manga109", "import_manifest", "import_webcaricature"]

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


#: ``importer(src, **options) -> manifest``: ``src`` is a file or folder, options are keyword-only and
#: specific to the format (listed in docs/IMPORTERS.md).
Importer: TypeAlias = Callable[..., pd.DataFrame]


def import_manifest(path: str | Path, *, check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """A manifest-v1 CSV or Parquet file, read as is (images relative to its folder, and inside it
    unless ``allow_outside``)."""
    return read_manifest(path, check_files=check_files, allow_outside=allow_outside)


#: name -> importer (the one registry mechanism, :mod:`comicid.registry`); a new format registers here.
IMPORTERS: Registry[Importer] = Registry("source format")
for _name, _importer in (("manifest", import_manifest), ("folder", import_folder), ("coco", import_coco),
                         ("comics", import_comics), ("manga109", import_manga109), ("webcaricature", import_webcaricature)):
    IMPORTERS.register(_name)(_importer)


def detect_format(src: Path) -> str:
    """The importer name for ``src``: by suffix for files, by tell-tale files for folders.

    A Manga109 root (``books.txt`` + ``annotations/`` + ``images/``) and a COMICS annotation folder
    (``merged_face_body.csv``, also in ``ssl/``) are recognised before falling back to an image folder.
    """
    if src.is_file():
        suffix = src.suffix.lower()
        if suffix in MANIFEST_SUFFIXES:
            return "manifest"
        if suffix == ".json":
            return "coco"
        raise ConfigError(f"cannot tell the format of '{src}' from its suffix '{suffix}': expected "
                          f"{', '.join(MANIFEST_SUFFIXES)} (manifest), .json (COCO) or a folder")
    if src.is_dir():
        if is_manga109_root(src):
            return "manga109"
        if is_webcaricature_root(src):
            return "webcaricature"
        if find_csv(src) is not None:
            return "comics"
        return "folder"
    raise ManifestError([f"source '{src}' not found"])


def load_source(src: str | Path, format: str = "auto", **options: Any) -> pd.DataFrame:
    """Import ``src`` with the named importer (``auto``: :func:`detect_format`) and its options.

    Raises:
        ConfigError: an unknown format, or an option the importer does not take (the message lists
            the ones it does).
        ManifestError: the source is missing or malformed (from the importer).
    """
    src = Path(src)
    name = detect_format(src) if format == "auto" else format
    if name not in IMPORTERS:
        raise ConfigError(f"unknown source format '{format}'; choose auto or one of {', '.join(sorted(IMPORTERS))}")
    importer = IMPORTERS[name]
    try:
        inspect.signature(importer).bind(src, **options)
    except TypeError:
        accepted = [parameter.name for parameter in inspect.signature(importer).parameters.values()
                    if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(accepted))
        raise ConfigError(f"the {name} importer does not take option(s) {', '.join(unknown)}; it takes "
                          f"{', '.join(accepted)}") from None
    frame = importer(src, **options)
    frame.attrs.setdefault("skipped", [])
    return frame
