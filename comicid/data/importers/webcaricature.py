"""WebCaricature (Huo et al., BMVC 2018): celebrity photos and caricatures of the same 252 people.

The benchmark of Deng, Xie & Liu (2024) for caricature↔photo face recognition: the same person drawn
by many artists against their photos, i.e. the cross-style gap comicid must cross. Layout::

    root/
      OriginalImages/<Name>/C00001.jpg ...   caricatures (C) and photos (P) of each person
      FacialPoints/<Name>/C00001.txt ...     17 landmarks per image, "x y" per line (optional)
      EvaluationProtocols/FaceIdentification/
        FR_Train_dev.txt, FR_Train1.txt ... FR_Train10.txt      "<Name>\t<#caricatures>\t<#photos>"
        C2P/FR_Probe_C2P_dev.txt, FR_Gallery_C2P_dev.txt, FR_Probe_C2P1.txt ... (probe caricatures, gallery photos)
        P2C/FR_Probe_P2C_dev.txt, FR_Gallery_P2C_dev.txt, ...               (probe photos, gallery caricatures)

One row per image, ``kind`` face, ``identity`` the person, ``domain`` ``caricature`` or ``photo``;
with landmarks, the box is the landmarks' bounding box grown by ``margin`` on each side (the 17
points reach hairline, ears and chin, so the box is the face). With a ``fold`` (``dev`` = View 1,
for tuning; 1..10 = View 2, for reporting), the fold's training people get ``split=dev`` and the
evaluated people ``split=test``, with the probes as ``role=query`` and the gallery as
``role=gallery``; people in neither are left out and listed in ``attrs["skipped"]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from comicid.data.importers.folder import IMAGE_SUFFIXES, _is_image, _visible_entries
from comicid.data.manifest import from_records
from comicid.errors import ConfigError, ManifestError

DIRECTIONS = ("c2p", "p2c")
DOMAINS = {"C": "caricature", "P": "photo"}
_IMAGE_NAME = re.compile(r"^([CP])\d+$", re.IGNORECASE)


def is_webcaricature_root(root: Path) -> bool:
    """A folder holding ``OriginalImages/`` and ``FacialPoints/`` or ``EvaluationProtocols/``."""
    return (root / "OriginalImages").is_dir() and ((root / "FacialPoints").is_dir()
                                                   or (root / "EvaluationProtocols").is_dir())


def import_webcaricature(root: str | Path, *, fold: str | int | None = None, direction: str = "c2p",
                         margin: float = 0.1, book: str = "webcaricature", check_files: bool = True) -> pd.DataFrame:
    """Read a WebCaricature root (see the module docstring).

    Args:
        root: the folder holding ``OriginalImages/``.
        fold: ``None`` (every image, no split/role), ``"dev"`` (View 1) or ``1``..``10`` (View 2).
        direction: ``c2p`` (caricature probes, photo gallery) or ``p2c``.
        margin: fraction of the landmark box's width/height added on each side.
        book: the collection scope of every row.
        check_files: passed to manifest validation.

    Raises:
        ManifestError: no ``OriginalImages/``, a protocol file missing, or a protocol line naming an
            image that does not exist.
        ConfigError: an unknown ``fold`` or ``direction``, or a negative margin.
    """
    root = Path(root).resolve()
    images_dir = root / "OriginalImages"
    if not images_dir.is_dir():
        raise ManifestError([f"'{root}' has no OriginalImages/ folder: not a WebCaricature root"])
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if not np.isfinite(margin) or margin < 0:
        raise ConfigError(f"margin must be a non-negative number, got {margin!r}")
    skipped: list[str] = []
    records = _image_records(root, images_dir, float(margin), book, skipped)
    if fold is not None:
        records = _apply_protocol(root, records, _fold_suffix(fold), direction, skipped)
    if not records:
        raise ManifestError([f"no caricature or photo images (C*/P* with {', '.join(sorted(IMAGE_SUFFIXES))}) "
                             f"found under '{images_dir}'"])
    frame = from_records(records, base_dir=root, check_files=check_files, source=str(root))
    frame.attrs["skipped"] = skipped
    return frame


def _fold_suffix(fold: str | int) -> str:
    text = str(fold).strip().lower()
    if text == "dev":
        return "_dev"
    if text.isdigit() and 1 <= int(text) <= 10:
        return str(int(text))
    raise ConfigError(f"fold must be 'dev' (View 1) or 1..10 (View 2), got {fold!r}")


def _image_records(root: Path, images_dir: Path, margin: float, book: str,
                   skipped: list[str]) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for person in (entry for entry in _visible_entries(images_dir) if entry.is_dir()):
        for image in _visible_entries(person):
            match = _IMAGE_NAME.match(image.stem)
            if not _is_image(image) or match is None:
                skipped.append(f"'{image.relative_to(root)}' is not a C*/P* image")
                continue
            record: dict[str, object] = {"image": str(image), "identity": person.name, "kind": "face",
                                         "book": book, "instance": f"{person.name}/{image.stem}",
                                         "domain": DOMAINS[match.group(1).upper()]}
            box = _landmark_box(root / "FacialPoints" / person.name / f"{image.stem}.txt", margin, root, skipped)
            if box is not None:
                record.update(zip(("x0", "y0", "x1", "y1"), box, strict=True))
            records.append(record)
    return records


def _landmark_box(path: Path, margin: float, root: Path, skipped: list[str]) -> tuple[float, ...] | None:
    """The grown bounding box of a landmark file, or None (whole image) when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        values = np.array(path.read_text(encoding="utf-8", errors="replace").split(), dtype=np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.size < 4 or values.size % 2 or not np.isfinite(values).all():
        skipped.append(f"'{path.relative_to(root)}': landmarks unreadable, the whole image is used")
        return None
    points = values.reshape(-1, 2)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = max(0.0, x0 - grow_x), max(0.0, y0 - grow_y)
    x1, y1 = x1 + grow_x, y1 + grow_y
    if x1 <= x0 or y1 <= y0:
        skipped.append(f"'{path.relative_to(root)}': landmarks span no area, the whole image is used")
        return None
    return float(x0), float(y0), float(x1), float(y1)


def _protocol_file(root: Path, *parts: str) -> Path:
    path = root.joinpath("EvaluationProtocols", "FaceIdentification", *parts)
    if not path.is_file():
        raise ManifestError([f"protocol file '{path.relative_to(root)}' not found"], source=str(root))
    return path


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _training_people(path: Path) -> set[str]:
    """``<Name>\\t<#caricatures>\\t<#photos>`` lines; a leading count line, if any, is ignored."""
    people = set()
    for line in _lines(path):
        fields = [field.strip() for field in line.split("\t")] if "\t" in line else line.rsplit(maxsplit=2)
        if len(fields) >= 3 and fields[-1].isdigit() and fields[-2].isdigit():
            people.add(" ".join(fields[:-2]).strip())
    return people


def _image_key(line: str) -> str:
    """``Name/C00001`` from ``Name\\C00001.jpg``, ``Name/C00001``, or ``Name<TAB>C00001``."""
    text = line.replace("\\", "/")
    if "\t" in text:
        fields = [field.strip() for field in text.split("\t") if field.strip()]
        text = "/".join(fields[-2:])
    person, _, name = text.rpartition("/")
    return f"{person.strip()}/{Path(name.strip()).stem}"


def _apply_protocol(root: Path, records: list[dict[str, object]], suffix: str, direction: str,
                    skipped: list[str]) -> list[dict[str, object]]:
    tag = direction.upper()
    training = _training_people(_protocol_file(root, f"FR_Train{suffix}.txt"))
    roles: dict[str, str] = {}
    for role, stem in (("query", "Probe"), ("gallery", "Gallery")):
        path = _protocol_file(root, tag, f"FR_{stem}_{tag}{suffix}.txt")
        for number, line in enumerate(_lines(path), start=1):
            key = _image_key(line)
            if key in roles and roles[key] != role:
                raise ManifestError([f"{path.name} line {number}: '{key}' is both a probe and a gallery image"],
                                    source=str(root))
            roles[key] = role
    known = {str(record["instance"]) for record in records}
    missing = sorted(set(roles) - known)
    if missing:
        raise ManifestError([f"protocol image '{key}' is not in OriginalImages/" for key in missing],
                            source=str(root))
    evaluated = {key.rsplit("/", 1)[0] for key in roles}
    both = sorted(training & evaluated)
    if both:
        raise ManifestError([f"'{name}' is both a training and an evaluated person in fold '{suffix.strip('_')}'"
                             for name in both], source=str(root))
    kept = []
    for record in records:
        person = str(record["identity"])
        if person in training:
            kept.append({**record, "split": "dev"})
        elif person in evaluated:
            kept.append({**record, "split": "test", "role": roles.get(str(record["instance"]), "")})
        else:
            skipped.append(f"'{record['instance']}': person in neither the training nor the evaluated set of this fold")
    return kept
