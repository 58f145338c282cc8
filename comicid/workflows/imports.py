"""Import a source (manifest, folder, COCO, COMICS, Manga109) into a collection: the job behind
`comicid import` and :func:`comicid.import_source`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comicid.data.importers import load_source
from comicid.data.ocr import attach_ocr_text
from comicid.errors import ConfigError
from comicid.identity.boxes import sync_boxes
from comicid.store.collection import Collection
from comicid.store.ingest import Cutter, IngestReport, ingest
from comicid.workflows.detect import DEFAULT_MIN_SCORE, detect_manifest


@dataclass
class ImportResult:
    """The collection written to, what ingest did, and the source entries the importer left out."""

    collection: Collection
    report: IngestReport
    left_out: list[str] = field(default_factory=list)
    #: With ``ocr``: pages read, text blocks found and blocks assigned to an instance.
    ocr: dict[str, int] = field(default_factory=dict)
    #: With ``detect``: boxes kept per class (panel, body, face, text) and pages skipped as unreadable.
    detected: dict[str, int] = field(default_factory=dict)
    #: With a Ray cutter (``comicid import --ray``): pages cut on the cluster and pages resumed from the
    #: journal of an interrupted run (:mod:`comicid.workflows.ray_import`).
    ray: dict[str, int] = field(default_factory=dict)


def import_source(src: str | Path, collection: str | Path | Collection, format: str = "auto",
                  skip_bad: bool = False, progress: bool = False, allow_outside: bool = False,
                  ocr: bool = False, detect: bool = False, detector: str | Path | None = None,
                  min_score: float = DEFAULT_MIN_SCORE, device: str = "cpu", cutter: Cutter | None = None,
                  **options: Any) -> ImportResult:
    """Read ``src`` in ``format`` (``auto``: detected) and ingest it into ``collection`` (created when it
    is a folder that is not one yet). Idempotent and incremental (a true upsert keyed by stable instance
    ids; rows an earlier import of ``src`` brought and ``src`` no longer has are removed and listed);
    ``skip_bad`` skips unreadable rows (counted in the report) instead of failing. Images outside
    ``src``'s folder are refused unless ``allow_outside``. ``ocr`` reads the text of every page with boxed
    rows (RapidOCR, offline) and gives it to the instances of its panel that have none (docs/IMPORTERS.md).
    ``options`` go to the format's importer. ``detect`` reads ``src`` as pages without boxes (a folder,
    a page list or a manifest of pages) and finds the characters with the page detector (``detector``,
    default the shipped one; ``min_score``), see :mod:`comicid.workflows.detect`. ``cutter`` decodes pages
    and cuts crops elsewhere (:mod:`comicid.workflows.ray_import`); default this machine."""
    detected: dict[str, int] = {}
    if detect:
        if options or format != "auto":
            raise ConfigError("--detect reads pages only: --format and --option do not apply")
        pages = detect_manifest(src, detector, min_score=min_score, skip_bad=skip_bad, progress=progress,
                                device=device, allow_outside=allow_outside)
        frame, left_out = pages.frame, pages.skipped
        detected = {**pages.counts, "skipped_pages": len(pages.skipped)}
    else:
        options.setdefault("check_files", not skip_bad)
        frame = load_source(src, format, allow_outside=allow_outside, **options)
        left_out = [str(entry) for entry in frame.attrs.get("skipped", [])]
    ocr_counts: dict[str, int] = {}
    if ocr:
        frame = attach_ocr_text(frame, progress=progress)
        ocr_counts = dict(frame.attrs.get("ocr", {}))
    target = collection if isinstance(collection, Collection) else Collection.create(collection)
    report = ingest(frame, target, skip_bad=skip_bad, progress=progress, source=str(Path(src).resolve()),
                    cutter=cutter)
    sync_boxes(target)  # boxes a person deleted or drew in the viewer stay so (comicid.identity.boxes)
    return ImportResult(target, report, left_out, ocr_counts, detected)
