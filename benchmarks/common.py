"""What every benchmark shares: where the development sets are, and how a section of BENCHMARKS.md is replaced.

Each benchmark owns one section of docs/BENCHMARKS.md between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers and replaces only that section, so benchmarks can run in any order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"
DATASETS = Path(os.environ.get("COMICID_DATASETS", ROOT.parent / "shared" / "datasets"))
HEADER = ("# Benchmarks\n\nMeasured numbers, each section written by the script named in it, with the command "
          "that made it. Machine: 2 CPU cores, no GPU, unless a section says otherwise.\n")


@dataclass(frozen=True)
class DevSet:
    """One development manifest and what its protocol tests."""

    name: str
    manifest: Path
    note: str


#: The development manifests of ../shared/datasets (see its README), in reporting order.
DEV_SETS = (
    DevSet("tuxemon back->front", Path("tuxemon/monsters_back_to_front.csv"), "query = back view, gallery = front view"),
    DevSet("tuxemon npc portrait->overworld", Path("tuxemon/npcs_portrait_to_overworld.csv"),
           "query = 64 px battle portrait, gallery = tiny overworld frames; palette swaps are other identities"),
    DevSet("supertux creatures", Path("supertux/creatures.csv"), "leave-one-out, same-animation frames excluded"),
    DevSet("dicebear expressions", Path("dicebear/expressions.csv"), "procedural, colour-easy sanity check"),
)

#: The cross-style development sets (same README), reported after DEV_SETS. One list for every benchmark:
#: the names are also cache keys of their collections.
CROSS_STYLE_SETS = (
    DevSet("cataclysm cross-tileset", Path("cataclysm/monsters_cross_tileset.csv"), "cross-style, source = tileset"),
    DevSet("freeciv cross-tileset", Path("freeciv/units_cross_tileset.csv"), "cross-style, source = unit set"),
    DevSet("emoji cross-vendor", Path("emoji/emoji_cross_vendor.csv"), "cross-style, source = vendor"),
    DevSet("comicgen figures", Path("comicgen/figures.csv"), "new poses, emotions and views"),
    DevSet("comicgen nuovo->classic", Path("comicgen/nuovo_to_classic.csv"), "restyle -> classic line art"),
    DevSet("comicgen face+body", Path("comicgen/face_body.csv"), "face and body rows per instance"),
)


def available_dev_sets(dev_sets: Iterable[DevSet] = DEV_SETS) -> list[DevSet]:
    """Those of ``dev_sets`` present here (manifest made absolute); prints why each missing one is skipped."""
    found = []
    for dev_set in dev_sets:
        path = DATASETS / dev_set.manifest
        if path.is_file():
            found.append(DevSet(dev_set.name, path, dev_set.note))
        else:
            print(f"skipping {dev_set.name}: {path} not found (set COMICID_DATASETS to the datasets folder)",
                  file=sys.stderr)
    return found


def write_section(name: str, body: str) -> None:
    """Replace (or append) the ``name`` section of docs/BENCHMARKS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    from comicid.atomic import atomic_write_text

    atomic_write_text(DOC, text)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)
