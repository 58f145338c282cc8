"""The HTML report of a collection: who the model thinks is who, and where it is wrong.

One self-contained file (inline CSS, images as ``data:`` URIs, no JavaScript, nothing fetched), so it
can be mailed or archived next to a paper. Per book it shows pages with boxes coloured by predicted
identity and a gallery per predicted identity, largest first.

**Mistakes.** An instance is a mistake when it is labelled and its label differs from the majority
label of its predicted identity (majority over the labelled instances of that identity in the whole
collection; a tie goes to the alphabetically first label, so the report is deterministic). This is
the error that weighted cluster purity (WCP) counts. Unlabelled or unassigned instances are never
mistakes. Without assignments (``comicid cluster`` not run) everything is grouped by its label and
nothing is a mistake.

Sizes are bounded by :class:`ReportOptions`: at most ``max_pages_per_book`` pages per book (reading
order) and ``max_per_identity`` crops per gallery (mistakes first, then the most confident), each cut
announced in the report, so that thousands of instances still make a file of a few MB.

The page itself is the Jinja2 template ``templates/report.html.j2`` (autoescaped); this module decides
what goes in it (which instances, which thumbnails, which words).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from tqdm.auto import tqdm

from comicid._version import __version__
from comicid.data.images import load_image
from comicid.data.manifest import BOX_COLUMNS, has_box
from comicid.errors import ConfigError, ImageReadError
from comicid.report.thumbnails import (
    UNKNOWN_COLOUR,
    DrawnBox,
    crop_thumbnail,
    css_colour,
    data_uri,
    page_thumbnail,
    palette,
)
from comicid.atomic import atomic_write_text
from comicid.store.collection import Collection
from comicid.store.embeddings import instance_table as instances_of

#: The part that stands for an instance in a gallery: the face identifies a drawn character best.
PART_PREFERENCE = {"face": 0, "character": 1, "body": 2}
#: Metric sections shown first, in this order; any other section follows in sorted order.
METRIC_SECTIONS = ("retrieval", "clustering")
CAPTION_TEXT_CHARS = 60
#: Largest collection a one-file report is made for: every book is matched against every instance and
#: every identity gets a gallery of embedded images, so beyond this the file and the time explode.
REPORT_MAX_INSTANCES = 50_000
#: Longer side of a gallery crop in px; the gallery's CSS grid is sized to it.
CROP_SIDE = 112
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class ReportOptions:
    """Size bounds of a report (pixels and counts)."""

    max_pages_per_book: int = 12
    max_per_identity: int = 40
    page_width: int = 900

    def __post_init__(self) -> None:
        if self.max_pages_per_book < 0 or self.max_per_identity < 0:
            raise ConfigError("--max-pages-per-book and --max-per-identity must be 0 or more")
        if self.page_width < 64:
            raise ConfigError("page_width must be at least 64 px")


def _text(value: object) -> Markup:
    """Escaped text for HTML content or attributes; control characters (e.g. the key separator) become spaces."""
    return Markup(html.escape(_CONTROL.sub(" ", str(value)), quote=True))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _natural(value: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts page "2" before page "10"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(value) if part)


def majority_labels(truth: Sequence[str], predicted: Sequence[str]) -> pd.Series:
    """The majority label of each predicted identity, over its labelled instances (ties: first label).

    ``truth`` and ``predicted`` are per instance; "" means unlabelled or unassigned. Identities with
    no labelled instance are absent from the result.
    """
    frame = pd.DataFrame({"truth": list(truth), "predicted": list(predicted)}, dtype=object)
    known = frame[(frame["truth"] != "") & (frame["predicted"] != "")]
    counts = known.groupby(["predicted", "truth"]).size().rename("n").reset_index()
    counts = counts.sort_values(["predicted", "n", "truth"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("predicted").set_index("predicted")["truth"]


def mark_mistakes(truth: Sequence[str], predicted: Sequence[str]) -> np.ndarray:
    """Boolean mask: labelled, assigned instances whose label is not their identity's majority label."""
    majority = majority_labels(truth, predicted)
    return np.array([bool(label and identity and label != majority[identity])
                     for label, identity in zip(truth, predicted, strict=True)], dtype=bool)


def instance_table(parts: pd.DataFrame, assignments: pd.DataFrame | None) -> pd.DataFrame:
    """One row per instance, in reading order (book, page, instance), indexed by ``instance_key``.

    Columns: ``book``, ``page``, ``truth`` (label or ""), ``predicted`` (identity id or ""),
    ``confidence`` (NaN when unassigned), ``crop_hash`` (of the preferred part, see
    :data:`PART_PREFERENCE`), ``text``, ``group`` (what the report groups and colours by: the
    predicted id, or the label when there are no assignments), ``majority`` (the majority label of
    the predicted identity, "" when none) and ``mistake``.
    """
    labels = instances_of(parts)[0].set_index("instance_key")
    table = labels[["book", "page"]].copy()
    table["truth"], table["text"] = labels["identity"], labels["text"]
    rank = parts["kind"].map(PART_PREFERENCE).fillna(len(PART_PREFERENCE))
    chosen = parts.assign(_rank=rank).sort_values(["instance_key", "_rank"], kind="stable")
    table["crop_hash"] = chosen.drop_duplicates("instance_key").set_index("instance_key")["crop_hash"]
    if assignments is None:
        table["predicted"] = ""
        table["confidence"] = np.nan
    else:
        latest = assignments.drop_duplicates("instance_key", keep="last").set_index("instance_key")
        ids = latest["identity_id"].reindex(table.index)
        table["predicted"] = ids.map(lambda value: "" if pd.isna(value) else str(value))
        table["confidence"] = pd.to_numeric(latest["confidence"], errors="coerce").reindex(table.index)
    table["group"] = table["predicted"] if assignments is not None else table["truth"]
    truth, predicted = table["truth"].tolist(), table["predicted"].tolist()
    majority = majority_labels(truth, predicted)
    table["majority"] = [majority.get(identity, "") for identity in predicted]
    table["mistake"] = mark_mistakes(truth, predicted)
    order = sorted(table.index, key=lambda key: (table.at[key, "book"], _natural(table.at[key, "page"]), key))
    return table.loc[order]


@dataclass
class _Book:
    """What one book section shows: its pages (image path, boxed parts) and galleries (group, instances)."""

    name: str
    pages: list[tuple[str, pd.DataFrame]]
    galleries: list[tuple[str, pd.DataFrame]]


def _galleries(instances: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Groups largest first (ties by id), the unassigned/unlabelled group last."""
    groups = [(key, members) for key, members in instances.groupby("group", sort=True)]
    return sorted(groups, key=lambda item: (item[0] == "", -len(item[1]), item[0]))


def _plan(parts: pd.DataFrame, instances: pd.DataFrame) -> list[_Book]:
    boxed = parts[has_box(parts)]
    books = []
    for book in sorted(instances["book"].unique()):
        book_parts = boxed[boxed["book"] == book]
        pages = sorted(book_parts.groupby("image", sort=True),
                       key=lambda item: (_natural(item[1]["page"].iat[0]), item[0]))
        books.append(_Book(book, [(str(image), rows) for image, rows in pages],
                           _galleries(instances[instances["book"] == book])))
    return books


def _colours(instances: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    sizes = instances.loc[instances["group"] != "", "group"].value_counts()
    ranked = sorted(sizes.index, key=lambda key: (-int(sizes[key]), key))
    return palette(ranked)


def _format_value(value: Any) -> Markup:
    if value is None:
        return Markup("&mdash;")
    if isinstance(value, bool):
        return Markup("yes" if value else "no")
    if isinstance(value, int):
        return Markup(f"{value:d}")
    if isinstance(value, float):
        return Markup("n/a" if math.isnan(value) else f"{value:.4f}")
    return _text(value)


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def _metric_rows(metrics: dict[str, Any] | None) -> list[tuple[str, str, Any]]:
    """(section, metric, value) rows, :data:`METRIC_SECTIONS` first."""
    if not metrics:
        return []
    order = [name for name in METRIC_SECTIONS if name in metrics]
    order += sorted(name for name in metrics if name not in METRIC_SECTIONS)
    return [(section, key or section, value) for section in order for key, value in _flatten("", metrics[section])]


def _summary_rows(collection: Collection, meta: dict[str, Any], parts: pd.DataFrame,
                  instances: pd.DataFrame, books: list[_Book], stale: int) -> list[tuple[str, Any]]:
    info = meta.get("assignments") or {}
    assigned = instances["predicted"] != ""
    rows: list[tuple[str, Any]] = [
        ("collection", collection.root.name),
        ("comicid version", f"{__version__} (collection written by {meta.get('comicid_version', 'unknown')})"),
        ("method", info.get("method")),
        ("model", info.get("model") or meta.get("embedding_model")),
        ("threshold", info.get("threshold")),
        ("assignments written", info.get("written")),
        ("books", len(books)),
        ("pages with boxes", sum(len(book.pages) for book in books)),
        ("parts", len(parts)),
        ("instances", len(instances)),
        ("labelled instances", int((instances["truth"] != "").sum())),
        ("labelled identities", int(instances.loc[instances["truth"] != "", "truth"].nunique())),
        ("assigned instances", int(assigned.sum())),
        ("predicted identities", int(instances.loc[assigned, "predicted"].nunique())),
        ("mistakes", int(instances["mistake"].sum())),
    ]
    if stale:
        rows.append(("assignments of instances no longer in the collection (not shown)", stale))
    return rows


def _page(image: str, rows: pd.DataFrame, instances: pd.DataFrame, colours: dict[str, tuple[int, int, int]],
          options: ReportOptions) -> dict[str, Any]:
    boxes: list[DrawnBox] = []
    for key, own in rows.groupby("instance_key", sort=True):
        instance = instances.loc[key]
        colour = colours.get(instance["group"], UNKNOWN_COLOUR)
        areas = ((own["x1"] - own["x0"]) * (own["y1"] - own["y0"])).to_numpy()
        for position, coords in enumerate(own[list(BOX_COLUMNS)].itertuples(index=False)):
            label = (instance["group"] or "?") if position == int(np.argmax(areas)) else None
            boxes.append(DrawnBox(*map(float, coords), colour=colour, label=label,
                                  mistake=bool(instance["mistake"])))
    on_page = instances.loc[rows["instance_key"].unique()]
    mistakes = int(on_page["mistake"].sum())
    page = rows["page"].iat[0] or Path(image).name
    caption = f"page {page}: {_count(len(on_page), 'instance')}"
    if mistakes:
        caption += f", {_count(mistakes, 'mistake')}"
    try:
        picture = data_uri(page_thumbnail(load_image(image), boxes, options.page_width))
    except ImageReadError as error:
        return {"caption": caption, "error": str(error), "picture": None}
    return {"caption": caption, "error": None, "picture": picture}


def _crop(collection: Collection, key: str, instance: pd.Series) -> dict[str, Any]:
    truth = instance["truth"] or "unlabelled"
    lines = [f"true: {truth}"]
    if not math.isnan(instance["confidence"]):
        lines.append(f"confidence {instance['confidence']:.2f}")
    text = instance["text"]
    if text:
        lines.append(text if len(text) <= CAPTION_TEXT_CHARS else text[:CAPTION_TEXT_CHARS - 3] + "...")
    crop = {"truth": truth, "lines": lines, "mistake": bool(instance["mistake"]), "error": None, "picture": None,
            "title": f"{key} (page {instance['page']})" + (f": {text}" if text else "")}
    try:
        crop["picture"] = data_uri(crop_thumbnail(collection.load_crop(instance["crop_hash"]), CROP_SIDE))
    except ImageReadError as error:
        crop["error"] = str(error)
    return crop


def _gallery(collection: Collection, group: str, members: pd.DataFrame, has_assignments: bool,
             colours: dict[str, tuple[int, int, int]], options: ReportOptions, bar: tqdm) -> dict[str, Any]:
    facts = [_count(len(members), "instance")]
    if members["majority"].iat[0]:
        facts.append(f"majority label {members['majority'].iat[0]}")
        facts.append(_count(int(members["mistake"].sum()), "mistake"))
    ordered = members.assign(_neg=-members["confidence"].fillna(-1.0), _mistake=~members["mistake"])
    ordered = ordered.sort_values(["_mistake", "_neg"], kind="stable")
    crops = []
    for key, instance in ordered.head(options.max_per_identity).iterrows():
        crops.append(_crop(collection, str(key), instance))
        bar.update(1)
    return {"name": group or ("unassigned" if has_assignments else "unlabelled"),
            "colour": css_colour(colours.get(group, UNKNOWN_COLOUR)), "facts": ", ".join(facts),
            "crops": crops, "shown": len(crops), "total": len(members)}


def _book(index: int, book: _Book, collection: Collection, instances: pd.DataFrame, has_assignments: bool,
          colours: dict[str, tuple[int, int, int]], options: ReportOptions, bar: tqdm) -> dict[str, Any]:
    members = instances[instances["book"] == book.name]
    pages = []
    for image, rows in book.pages[:options.max_pages_per_book]:
        pages.append(_page(image, rows, instances, colours, options))
        bar.update(1)
    return {"index": index, "name": book.name, "pages": pages, "pages_total": len(book.pages),
            "facts": f'{_count(len(members), "instance")}, {_count(len(book.pages), "page")} with boxes, '
                     f'{_count(int(members["mistake"].sum()), "mistake")}',
            "galleries": [_gallery(collection, group, rows, has_assignments, colours, options, bar)
                          for group, rows in book.galleries]}


#: Templates ship inside the package; autoescape is on, and ``clean`` escapes text exactly as the report
#: always did (``html.escape``, control characters as spaces), marking it safe so it is escaped once.
_TEMPLATES = Environment(loader=PackageLoader("comicid.report", "templates"), autoescape=True,
                         keep_trailing_newline=True, undefined=StrictUndefined)
_TEMPLATES.filters["clean"] = _text
_TEMPLATES.filters["value"] = _format_value


def build_report(collection: Collection, options: ReportOptions | None = None, progress: bool = False) -> str:
    """The report of ``collection`` as one HTML string.

    Raises:
        CollectionError: the collection holds no instances.
        ConfigError: it holds more than :data:`REPORT_MAX_INSTANCES` instances.
    """
    options = options or ReportOptions()
    meta = collection.meta()
    parts = collection.instances()
    count = int(parts["instance_key"].nunique())
    if count > REPORT_MAX_INSTANCES:
        raise ConfigError(f"a one-file HTML report of {count:,} instances is refused above {REPORT_MAX_INSTANCES:,}; "
                          "use `comicid search` to inspect identities, or report a collection of a few books")
    assignments = collection.assignments() if collection.assignments_path.is_file() else None
    instances = instance_table(parts, assignments)
    stale = 0 if assignments is None else int((~assignments["instance_key"].isin(instances.index)).sum())
    books = _plan(parts, instances)
    colours = _colours(instances)
    total = sum(min(len(book.pages), options.max_pages_per_book)
                + sum(min(len(rows), options.max_per_identity) for _, rows in book.galleries) for book in books)
    with tqdm(total=total, desc="report", unit="image", disable=not progress) as bar:
        sections = [_book(index, book, collection, instances, assignments is not None, colours, options, bar)
                    for index, book in enumerate(books, start=1)]
    return _TEMPLATES.get_template("report.html.j2").render(
        title=f"comicid report: {collection.root.name}", crop_side=CROP_SIDE,
        has_assignments=assignments is not None,
        summary=_summary_rows(collection, meta, parts, instances, books, stale),
        metrics=_metric_rows(meta.get("metrics")), books=sections)


def write_report(collection: Collection, out: str | Path | None = None, options: ReportOptions | None = None,
                 progress: bool = False) -> Path:
    """Write the report atomically to ``out`` (default ``COLLECTION/report.html``) and return its path."""
    path = Path(out) if out is not None else collection.root / "report.html"
    atomic_write_text(path, build_report(collection, options, progress))
    return path
