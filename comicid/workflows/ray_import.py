"""Importing on a Ray cluster (`comicid import --ray`): pages decoded and crops cut across workers.

The driver reads the source and plans the import exactly as on one machine (:func:`comicid.store.ingest.ingest`:
stable row keys, reuse of crops a previous import cut, one job per page to decode). Only the
expensive part, decoding each page and cutting and writing its crops, is handed to a Ray Data
pipeline (``map_batches`` over single-CPU tasks, a few pages per task). Workers write the crops
straight into ``COLLECTION/crops/`` under their content hash (:meth:`Collection.store_crop`), so a
crop has the same file and the same key whichever machine cut it, and a crop already present is not
written again. The driver collects each page's hashes and problems and writes the parts table itself,
with the same code as the single-machine path, so the collection is the one `comicid import` writes.

Resuming: the driver appends every finished page to ``COLLECTION/ray-import.jsonl`` (keyed by the
page's path, its size and mtime, and the boxes asked of it). A run interrupted before the parts table
was written (Ctrl-C, a lost node) leaves that journal and its crops; the next run takes those pages
from the journal (when all their crops are still there) instead of decoding them again, and removes
the journal once the parts table is written. A journal line cut short by a crash is ignored.

Workers read the source images and write the crops by path: on a real cluster both the source and
the collection must be on a file system every node mounts at the same path (docs/RAY.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from comicid.data.crops import Box
from comicid.data.images import file_stamp
from comicid.store.collection import Collection
from comicid.store.ingest import PageCut, PageJob, cut_page
from comicid.workflows.imports import ImportResult, import_source
from comicid.workflows.ray_cluster import LOCAL, ray_cluster, worker_count

#: The journal of finished pages, in the collection folder; removed once the parts table is written.
JOURNAL = "ray-import.jsonl"
#: Pages per Ray task: large enough to amortise scheduling, small enough to spread a few hundred pages.
PAGES_PER_TASK = 8


def _job_to_json(job: PageJob) -> str:
    return json.dumps({"image": job.image, "kinds": list(job.kinds),
                       "boxes": [None if box is None else list(astuple(box)) for box in job.boxes]})


def _job_from_json(text: str) -> PageJob:
    data = json.loads(text)
    boxes = tuple(None if box is None else Box(*box) for box in data["boxes"])
    return PageJob(data["image"], tuple(range(len(boxes))), tuple(data["kinds"]), boxes)


def _cut_to_dict(cut: PageCut) -> dict[str, Any]:
    return {"hashes": cut.hashes, "problems": cut.problems, "tiny": cut.tiny, "error": cut.error}


def _cut_from_dict(data: dict[str, Any], rows: tuple[int, ...]) -> PageCut:
    return PageCut(rows, list(data["hashes"]), list(data["problems"]), [bool(t) for t in data["tiny"]],
                   str(data["error"]))


def _cut_pages(batch: dict[str, np.ndarray], root: str) -> dict[str, np.ndarray]:
    """The Ray task: cut a batch of pages into the collection at ``root`` (row numbers are the driver's)."""
    collection = Collection(root)
    cuts = [json.dumps(_cut_to_dict(cut_page(_job_from_json(str(text)), collection))) for text in batch["job"]]
    return {"index": batch["index"], "cut": np.array(cuts, dtype=object)}


def page_key(job_json: str, image: str) -> str:
    """What makes a journalled page reusable: the same file (path, size, mtime) and the same boxes asked
    (``job_json``: the page's job as the tasks get it)."""
    return hashlib.sha1((job_json + "\x1f" + file_stamp(image)).encode()).hexdigest()


class Journal:
    """Pages an interrupted Ray import finished: ``page_key -> cut`` (JSON lines, appended by the driver)."""

    def __init__(self, collection: Collection) -> None:
        self.path = collection.root / JOURNAL

    def load(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[str(entry["key"])] = entry["cut"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # the last line of a run killed while writing it
        return done

    def append(self, entries: list[tuple[str, PageCut]]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for key, cut in entries:
                handle.write(json.dumps({"key": key, "cut": _cut_to_dict(cut)}) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class RayCutter:
    """A :data:`comicid.store.ingest.Cutter` that cuts pages on the Ray cluster at ``address``.

    ``workers`` bounds the tasks running at once (default: one per CPU of the cluster); each task takes
    one CPU, so on one node there is never more than one decoding thread per core. Counts what it did in
    :attr:`counts` (pages cut on the cluster, pages resumed from the journal).
    """

    def __init__(self, address: str = LOCAL, workers: int | None = None, pages_per_task: int = PAGES_PER_TASK) -> None:
        self.address = address
        self.workers = workers
        self.pages_per_task = pages_per_task
        self.counts = {"pages_cut": 0, "pages_resumed": 0}

    def __call__(self, jobs: list[PageJob], collection: Collection, progress: bool) -> Iterator[PageCut]:
        journal = Journal(collection)
        finished = journal.load()
        texts = [_job_to_json(job) for job in jobs]
        keys = [page_key(text, job.image) for text, job in zip(texts, jobs, strict=True)]
        todo: list[int] = []
        for number, (job, key) in enumerate(zip(jobs, keys, strict=True)):
            cut = _cut_from_dict(finished[key], job.rows) if key in finished else None
            if cut is not None and all(collection.crop_path(h).is_file() for h in cut.hashes if h):
                self.counts["pages_resumed"] += 1
                yield cut
            else:
                todo.append(number)
        if not todo:
            return
        with ray_cluster(self.address, num_cpus=self.workers) as ray:
            items = [{"index": number, "job": texts[number]} for number in todo]
            dataset = ray.data.from_items(items).map_batches(
                _cut_pages, fn_kwargs={"root": str(collection.root.resolve())}, batch_size=self.pages_per_task,
                compute=ray.data.TaskPoolStrategy(size=worker_count(ray, self.workers)), num_cpus=1)
            with tqdm(total=len(todo), disable=not progress, unit="image", desc="cutting crops (ray)") as bar:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    cuts = [(int(number), _cut_from_dict(json.loads(str(text)), jobs[int(number)].rows))
                            for number, text in zip(batch["index"], batch["cut"], strict=True)]
                    # Journal first: a page the driver has seen is never cut again after an interrupt.
                    journal.append([(keys[number], cut) for number, cut in cuts if not cut.error])
                    for _, cut in cuts:
                        self.counts["pages_cut"] += 1
                        bar.update(1)
                        yield cut


def import_source_ray(src: str | Path, collection: str | Path | Collection, address: str = LOCAL,
                      workers: int | None = None, **kwargs: Any) -> ImportResult:
    """:func:`comicid.workflows.imports.import_source` with the pages cut on the Ray cluster at ``address``
    (``HOST:PORT``, ``auto`` or ``local``); the same collection results. ``kwargs`` as for ``import_source``."""
    cutter = RayCutter(address, workers)
    result = import_source(src, collection, cutter=cutter, **kwargs)
    Journal(result.collection).remove()  # the parts table now records every page the journal held
    result.ray = dict(cutter.counts)
    return result
