"""Pages without boxes -> a manifest: detect, link faces to bodies, assign panels (`import --detect`).

Every page of the source (a folder of page images, a text file listing pages, or a manifest whose
rows name pages) goes through the page detector (:mod:`comicid.models.detector`); detections under
``min_score`` are dropped; each face is linked to the body it sits in (one face per body, Hungarian
where several compete; :func:`comicid.data.page_links.link_faces_to_bodies`); panels are put in
reading order and every instance gets the panel holding it, so instances of one panel become
cannot-links for clustering. The result is an ordinary manifest-v1 with a ``score`` column (each
part's detection score) that ingest, OCR, clustering and reports read unchanged. Text balloons are
detected and counted; their words come from ``--ocr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from comicid.data.detection import DETECTION_KINDS
from comicid.data.images import load_image
from comicid.data.importers.folder import IMAGE_SUFFIXES
from comicid.data.manifest import from_records
from comicid.data.page_links import assign_to_panels, link_faces_to_bodies, reading_order
from comicid.errors import ConfigError, ImageReadError
from comicid.models.detector import DEFAULT_DETECTOR, detect_pages, load_detector
from comicid.runtime import resolve_device

#: Default detection score threshold (docs/DETECTION.md: chosen on the dev validation pages).
DEFAULT_MIN_SCORE = 0.5
#: Detections narrower or lower than this many pixels are dropped (nothing to crop).
MIN_SIDE = 2.0


@dataclass
class DetectedPages:
    """The manifest of detected instances, the pages skipped (``path: reason``) and counts per class."""

    frame: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def list_pages(src: str | Path, allow_outside: bool = False) -> list[Path]:
    """The page images of ``src``: a folder (images at any depth, sorted), a ``.txt`` list (one path a
    line, relative to the file), or a manifest CSV/Parquet (its distinct ``image`` values). Pages outside
    ``src``'s folder are refused unless ``allow_outside``, as the importers do.

    Raises:
        ConfigError: ``src`` is missing, of another kind, or names no page.
    """
    src = Path(src)
    if src.is_dir():
        pages = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif src.is_file() and src.suffix.lower() == ".txt":
        lines = [line.strip() for line in src.read_text(encoding="utf-8").splitlines()]
        pages = [(src.parent / line) for line in lines if line and not line.startswith("#")]
    elif src.is_file() and src.suffix.lower() in (".csv", ".parquet", ".pq"):
        table = pd.read_parquet(src) if src.suffix.lower() != ".csv" else pd.read_csv(src, dtype=str,
                                                                                        keep_default_na=False)
        if "image" not in table.columns:
            raise ConfigError(f"'{src}' has no 'image' column naming its pages")
        pages = [src.parent / image for image in dict.fromkeys(str(v) for v in table["image"] if str(v))]
    elif not src.exists():
        raise ConfigError(f"'{src}' not found")
    else:
        raise ConfigError(f"--detect reads a folder of pages, a .txt page list or a manifest, not '{src}'")
    if not pages:
        raise ConfigError(f"'{src}' names no page images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    resolved = [page.resolve() for page in pages]
    root = (src if src.is_dir() else src.parent).resolve()
    outside = [page for page in resolved if not page.is_relative_to(root)]
    if outside and not allow_outside:
        raise ConfigError(f"page '{outside[0]}' is outside '{root}' ({len(outside)} such pages); pass "
                          "--allow-outside (allow_outside=True) to read it")
    return resolved


def page_rows(image: str, book: str, page: str, found: dict[str, np.ndarray], min_score: float,
              ) -> list[dict[str, object]]:
    """Manifest rows of one page's detections (see the module docstring)."""
    sides = found["boxes"][:, 2:] - found["boxes"][:, :2]
    keep = (found["scores"] >= min_score) & (sides >= MIN_SIDE).all(axis=1)  # a degenerate box crops nothing
    boxes, scores, labels = found["boxes"][keep], found["scores"][keep], found["labels"][keep]

    def of(kind: str) -> tuple[np.ndarray, np.ndarray]:
        mask = labels == DETECTION_KINDS.index(kind)
        return boxes[mask], scores[mask]

    faces, face_scores = of("face")
    bodies, body_scores = of("body")
    panels, _ = of("panel")
    order = reading_order(panels)
    panel_key = {int(index): f"{page}-k{rank}" for rank, index in enumerate(order)}
    pairs = link_faces_to_bodies(faces, bodies)
    extents = np.array([bodies[b] if b is not None else faces[f] for f, b in pairs]).reshape(-1, 4)
    holders = assign_to_panels(extents, panels)
    rows: list[dict[str, object]] = []
    for number, ((f, b), holder) in enumerate(zip(pairs, holders)):
        common = {"image": image, "book": book, "page": page, "instance": f"{page}-d{number}",
                  "panel": panel_key.get(int(holder), "")}
        for kind, index, table, table_scores in (("face", f, faces, face_scores), ("body", b, bodies, body_scores)):
            if index is not None:
                x0, y0, x1, y1 = (float(v) for v in table[index])
                rows.append({**common, "kind": kind, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
                             "score": f"{float(table_scores[index]):.4f}"})
    return rows


def detect_manifest(src: str | Path, detector: str | Path | None = None, min_score: float = DEFAULT_MIN_SCORE,
                    skip_bad: bool = False, progress: bool = False, device: str = "cpu",
                    allow_outside: bool = False) -> DetectedPages:
    """Detect the characters on every page of ``src`` and return them as a manifest (module docstring).

    Raises:
        ImageReadError: a page cannot be read (without ``skip_bad``; with it the page is skipped and listed).
        ConfigError: a bad ``min_score``, a source naming no pages, or no character found on any page.
        ModelError: the detector checkpoint is missing or not a detector.
    """
    if not 0.0 <= min_score <= 1.0:
        raise ConfigError(f"--min-score must be in [0, 1], got {min_score}")
    pages = list_pages(src, allow_outside)
    target = resolve_device(device)
    model, _ = load_detector(detector or DEFAULT_DETECTOR, target)
    records: list[dict[str, object]] = []
    skipped: list[str] = []
    counts = {kind: 0 for kind in DETECTION_KINDS}
    for path in tqdm(pages, desc="detecting", unit="page", disable=not progress):
        try:
            image = load_image(path)
        except ImageReadError as error:
            if not skip_bad:
                raise ImageReadError(f"{error} (pass --skip-bad to skip unreadable pages)") from None
            skipped.append(f"{path}: {error}")
            continue
        found = detect_pages(model, [image], target)[0]
        rows = page_rows(str(path), path.parent.name or "default", path.stem, found, min_score)
        for label, box, score in zip(found["labels"], found["boxes"], found["scores"]):
            if score >= min_score and (box[2:] - box[:2] >= MIN_SIDE).all():
                counts[DETECTION_KINDS[int(label)]] += 1
        records.extend(rows)
    if not records:
        raise ConfigError(f"no character was detected on {len(pages) - len(skipped)} readable pages at "
                          f"--min-score {min_score}")
    frame = from_records(records, check_files=False, source=str(src))
    return DetectedPages(frame, skipped, counts)
