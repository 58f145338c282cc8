"""Image folders: one sub-folder per identity (``root/<identity>/*.png``), or a flat unlabelled folder.

This is the layout most people already have (a download per character, a sprite sheet cut into
files), so it must work with no options. Each image is a whole-character crop (``kind`` character by
default) without a box. Files are listed in sorted name order so that two imports of one folder give
identical manifests.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from comicid.data.manifest import KINDS, from_records
from comicid.errors import ConfigError, ManifestError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _visible_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` in name order, without hidden ones (``.DS_Store``, ``.git``, ...)."""
    return sorted((entry for entry in folder.iterdir() if not entry.name.startswith(".")), key=lambda p: p.name)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _why_skipped(root: Path, entry: Path) -> str:
    if entry.is_dir():
        return f"'{entry.relative_to(root)}' is a folder; only root/<identity>/<image> is read"
    return f"'{entry.relative_to(root)}' is not an image file"


def _labelled_records(root: Path, folders: list[Path], skipped: list[str]) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    for folder in folders:
        entries = _visible_entries(folder)
        images = [entry for entry in entries if _is_image(entry)]
        skipped.extend(_why_skipped(root, entry) for entry in entries if not _is_image(entry))
        if not images:
            skipped.append(f"identity folder '{folder.name}' has no images")
        records.extend({"image": str(image), "identity": folder.name} for image in images)
    return records


def import_folder(root: str | Path, *, kind: str = "character", book: str | None = None,
                  check_files: bool = True, allow_outside: bool = False) -> pd.DataFrame:
    """Read ``root/<identity>/<image>`` (labelled) or ``root/<image>`` (unlabelled, identity empty).

    Args:
        root: the folder; hidden files and folders are ignored.
        kind: the part every image shows (``character``, ``face`` or ``body``).
        book: the collection scope; defaults to the folder's name.
        check_files: passed to manifest validation.
        allow_outside: read images that symbolic links lead out of ``root`` (refused by default).

    Returns:
        A validated manifest; ``frame.attrs["skipped"]`` lists every entry that was not imported
        (non-image files, empty identity folders), so nothing disappears unreported.

    Raises:
        ManifestError: the folder is missing or empty, or mixes images and identity folders.
        ConfigError: ``kind`` is not a known kind.
    """
    root = Path(root).resolve()
    if kind not in KINDS:
        raise ConfigError(f"kind '{kind}' is not one of {', '.join(sorted(KINDS))}")
    if not root.is_dir():
        raise ManifestError([f"image folder '{root}' not found"])
    entries = _visible_entries(root)
    folders = [entry for entry in entries if entry.is_dir()]
    loose_images = [entry for entry in entries if _is_image(entry)]
    if folders and loose_images:
        raise ManifestError([
            f"'{root}' mixes {len(loose_images)} images (e.g. '{loose_images[0].name}') with "
            f"{len(folders)} identity folders (e.g. '{folders[0].name}'); put every image in its identity's "
            "folder, or use a flat folder of images for unlabelled data"])
    skipped: list[str] = []
    if folders:
        records = _labelled_records(root, folders, skipped)
    else:
        records = [{"image": str(image), "identity": ""} for image in loose_images]
        skipped.extend(_why_skipped(root, entry) for entry in entries if not _is_image(entry))
    if not records:
        raise ManifestError([f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in '{root}' "
                             "or its identity folders"])
    scope = book if book else root.name
    for record in records:
        record.update(kind=kind, book=scope)
    frame = from_records(records, base_dir=root, check_files=check_files, source=str(root),
                         roots=None if allow_outside else [root])
    frame.attrs["skipped"] = skipped
    return frame
