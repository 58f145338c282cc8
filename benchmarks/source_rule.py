"""What the re-ID source rule changes: scores of the shipped model under the rule comicid used before
(every gallery item of the query's source left out) and the re-ID rule it uses now (same source *and*
same identity left out), on the sets whose ``source`` groups many identities or near-duplicate frames.

    .venv/bin/python benchmarks/source_rule.py [--model default] [--no-write]

Writes the ``source-rule`` section of docs/BENCHMARKS.md. Test identities only (dev identities are not
used: nothing is tuned here). The old rule is rebuilt in this script for the comparison; the library
only offers the new one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


from common import DATASETS, markdown_table, write_section

import comicid
from comicid.data.manifest import read_manifest
from comicid.workflows.evaluate import choose_rows, protocol_groups
from comicid.evaluation.protocols import global_protocol, local_protocol
from comicid.evaluation.retrieval import exclusion_mask, retrieval_metrics
from comicid.runtime import tune_allocator
from comicid.store.collection import Collection
from comicid.store.ingest import ingest

SETS = (
    ("supertux creatures", "supertux/creatures.csv", "source = animation of one creature (near-duplicate frames)"),
    ("cataclysm cross-tileset", "cataclysm/monsters_cross_tileset.csv", "source = tileset (many identities)"),
    ("freeciv cross-tileset", "freeciv/units_cross_tileset.csv", "source = unit set (many identities)"),
    ("emoji cross-vendor", "emoji/emoji_cross_vendor.csv", "source = vendor (many identities)"),
)
HEADER = ["set", "source", "rule", "queries", "rank-1", "rank-5", "mAP", "MAP@R", "local P@1", "local MAP@R",
          "global P@1"]


def scores(vectors: np.ndarray, identities: np.ndarray, sources: np.ndarray, books: object, rule: str) -> list[object]:
    ids = np.arange(len(identities))
    if rule == "re-ID":
        exclude = exclusion_mask(sources, sources, ids, ids, query_labels=identities, gallery_labels=identities)
        protocol_sources: np.ndarray | None = sources
    else:  # every same-source item left out, whatever its identity (comicid before issue 10)
        exclude = ((sources[:, None] == sources[None, :]) & (sources != "")[:, None]) | (ids[:, None] == ids[None, :])
        protocol_sources = None  # the paper protocols ignored source then
    r = retrieval_metrics(vectors, identities, vectors, identities, exclude=exclude)
    local = local_protocol(vectors, identities, books, sources=protocol_sources)
    global_ = global_protocol(vectors, identities, books, sources=protocol_sources)
    return [r["queries"], r["rank1"], r["rank5"], r["mAP"], r["map_at_r"], local["precision_at_1"],
            local["map_at_r"], global_["precision_at_1"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    model = comicid.load_model(args.model)
    rows = []
    for name, relative, note in SETS:
        manifest = DATASETS / relative
        if not manifest.is_file():
            print(f"skipping {name}: {manifest} not found", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix="comicid-source-rule-") as scratch:
            collection = Collection.create(Path(scratch) / "c")
            ingest(read_manifest(manifest), collection, progress=False)
            embedded = comicid.embed(collection, model)
        scored, _, split = choose_rows(embedded, "auto")
        test = embedded.subset(scored & (embedded.table["identity"] != "").to_numpy())
        table = test.table
        for rule in ("same source (before)", "re-ID"):
            values = scores(test.vectors, table["identity"].to_numpy(), table["source"].to_numpy(),
                            protocol_groups(table), "re-ID" if rule == "re-ID" else "old")
            rows.append([name, note, rule, *values])
            print(name, rule, [f"{v:.3f}" if isinstance(v, float) else v for v in values], flush=True)
    body = ("## The source rule: before and after (`benchmarks/source_rule.py`)\n\n"
            f"Command: `.venv/bin/python benchmarks/source_rule.py --model {args.model}`. Model `{model.model_id}`, "
            "scored rows `test`, leave-one-out over the test instances. *same source (before)*: every gallery "
            "item sharing the query's source was left out and the paper protocols ignored source; *re-ID* "
            "(now, docs/METRICS.md): only items of the same source **and** identity are left out, in the "
            "standard retrieval and in the local/global protocols. Where a source holds many identities the "
            "old rule removed the same-style distractors, so its scores hid the model's style bias.\n\n"
            + markdown_table(HEADER, rows))
    if not args.no_write:
        write_section("source-rule", body)
    print(body)


if __name__ == "__main__":
    main()
