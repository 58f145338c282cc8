"""Does stage 3 carry to a source it has never seen? Leave one source out, on dev identities only.

    PYTHONPATH=. python benchmarks/source_holdout.py [--model PATH] [--sources cataclysm freeciv ...]
        [--no-tail] [--tail-option KEY=VALUE ...] [--no-write]

Why: every other selection of stage 3 (``discriminant_selection.py``, ``tail_selection.py``) halves each
set's identities, so the half it scores was drawn by the same artists, tilesets and vendors as the half
it fitted. A user's book, and the held-out sets this project is measured on, come from sources no
development set contains. This benchmark asks the user's question of the shipped recipe: how much of
its gain over the ImageNet features survives when the scored source contributed nothing to the fit?

Protocol (no ``split=test`` row is read; the halves of ``discriminant_selection.py``):

* **seen source** (the reference, what ``tail_selection.py`` measures): the trunk's last stages are
  tuned (``comicid.training.style_tail``, shipped settings) and the discriminant is fitted (shipped
  settings) on half A of every fitted set; half B of each set is scored.
* **unseen source**, one fold per source: the same, with every set of that source left out of the fit
  (tuning and discriminant), then that source's half B is scored. The only difference from the
  reference is the source's own half A, so the drop from one to the other is what the shipped model
  owes to having seen that source's style.

Sources group the sets that share drawings (comicgen's three manifests and the pages composed from
its art are one source; tuxemon's two are one). DiceBear is never fitted (its licence keeps it out
of shipped weights), so it is unseen in the reference already and has no fold. On tuxemon and
supertux, half B is cut to the identities stage 2 never saw (as in ``tail_selection.py``).

Columns, rank-1 / mAP on the same half-B rows: the untuned backbone (ImageNet features), the stage-2
embedding (stage 3's starting point), stage 3 without tuning the trunk, and stage 3 as shipped
(tuned trunk, then discriminant), each with the source seen and unseen. ``--no-tail`` skips the
tunings (minutes instead of about 8 minutes per fold on 2 cores). Per-fold results are kept in
``build/benchmarks/source_holdout/<model id>/`` so an interrupted run resumes. Writes the ``source-holdout``
section of docs/BENCHMARKS.md. ``--tail-option`` (e.g. ``mixstyle_p=0.5``) measures a variant of the
tuning instead: its folds are cached apart and it writes a section of its own,
``source-holdout-<variant>``, to compare with the shipped recipe's.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from common import ROOT, markdown_table, write_section
from sets import CACHE
from stage3_halves import head_inputs, load_sets, score, stage2_model, stage3, tuned_copy

from comicid.errors import ConfigError
from comicid.runtime import tune_allocator
from comicid.training.style_tail import TailConfig

RESULTS = CACHE.parent / "source_holdout"
#: The reference fit (every source seen) is stored under this fold name.
SEEN = "(every source seen)"


def run_fold(model, sets: list[dict], held_out: str | None, tail: bool, keep_inputs: Path | None = None,
             config: TailConfig | None = None) -> dict[str, dict[str, list[float] | None]]:
    """Scores of the sets of ``held_out`` (every set when None) with that source left out of the fit;
    ``keep_inputs``: where to save the tuned head inputs of every set (``.npz``)."""
    fit_sets = [e for e in sets if e["fitted"] and e["source"] != held_out]
    scored = [e for e in sets if held_out is None or e["source"] == held_out]
    untuned = {e["name"]: head_inputs(model, e) for e in sets}
    columns: dict[str, dict[str, np.ndarray]] = {
        "ImageNet backbone": {n: x[:, :model.backbone.feature_dim] for n, x in untuned.items()},
        "stage 2": {n: model.head(torch.from_numpy(x).float()).detach().numpy() for n, x in untuned.items()},
        "stage 3, trunk untuned": stage3(model.head, sets, fit_sets, untuned),
    }
    if tail:
        tuned = tuned_copy(model, fit_sets, config)
        inputs = {e["name"]: head_inputs(model, e, tuned) for e in sets}
        if keep_inputs is not None:  # for explorations of other heads over the same tunings
            np.savez_compressed(keep_inputs, **{n: x.astype(np.float16) for n, x in inputs.items()})
        columns["stage 3 (shipped recipe)"] = stage3(model.head, sets, fit_sets, inputs)
    return {e["name"]: {column: score(e, vectors[e["name"]]) for column, vectors in columns.items()} for e in scored}


def fold_path(fold: str, tail: bool, model_id: str, variant: str = "") -> Path:
    """Where one fold's scores are kept: per stage-2 model and tuning variant (a cache of other weights or
    other settings is never read)."""
    slug = "seen" if fold == SEEN else fold
    folder = RESULTS / re.sub(r"[^A-Za-z0-9]+", "-", model_id)
    if variant:
        folder /= re.sub(r"[^A-Za-z0-9.]+", "-", variant)
    return folder / f"{slug}{'' if tail else '-no-tail'}.json"


def tail_options(options: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` settings of :class:`TailConfig`, each value converted to its field's type."""
    types = {f.name: type(getattr(TailConfig(), f.name)) for f in fields(TailConfig)}
    settings: dict[str, object] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in types or types[key] is tuple:
            raise SystemExit(f"error: --tail-option {option!r}: give KEY=VALUE with KEY one of "
                             f"{', '.join(k for k, t in types.items() if t is not tuple)}")
        try:
            settings[key] = types[key](value)
        except ValueError as error:
            raise SystemExit(f"error: --tail-option {option!r}: {error}") from error
    try:
        replace(TailConfig(), **settings).check()
    except ConfigError as error:
        raise SystemExit(f"error: --tail-option: {error}") from error
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "out" / "train_default" / "stage2.pt",
                        help="the stage-2 model stage 3 starts from (benchmarks/recover_stage2.py writes it "
                             "as OUT/stage2-recovered.pt on a fresh clone)")
    parser.add_argument("--sources", nargs="*", default=None, help="folds to run (default: every fitted source)")
    parser.add_argument("--no-tail", dest="tail", action="store_false", help="skip the trunk tunings")
    parser.add_argument("--keep-inputs", action="store_true",
                        help="also save each fold's tuned head inputs beside its results (.npz, float16)")
    parser.add_argument("--tail-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a tuning variant (repeatable), e.g. mixstyle_p=0.5: its folds are cached apart and "
                             "it writes a section of its own, source-holdout-<variant>")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.settings = tail_options(args.tail_option)
    args.variant = " ".join(f"{key}={value}" for key, value in args.settings.items())
    config = replace(TailConfig(), **args.settings)
    tune_allocator()
    torch.manual_seed(0)
    model = stage2_model(args.model)
    sets = load_sets(model, args.model.parent / "train_manifest.csv")
    sources = list(dict.fromkeys(e["source"] for e in sets if e["fitted"]))
    folds = [SEEN, *(args.sources if args.sources is not None else sources)]
    unknown = sorted(set(folds[1:]) - set(sources))
    if unknown:
        parser.error(f"unknown sources {unknown}; fitted sources are {sources}")
    results: dict[str, dict] = {}
    for fold in folds:
        path = fold_path(fold, args.tail, model.model_id, args.variant)
        if path.is_file():
            results[fold] = json.loads(path.read_text())
            continue
        started = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        results[fold] = run_fold(model, sets, None if fold == SEEN else fold, args.tail,
                                 keep_inputs=path.with_suffix(".npz") if args.keep_inputs else None, config=config)
        results[fold]["_minutes"] = round((time.time() - started) / 60, 1)
        path.write_text(json.dumps(results[fold], indent=1))
        print(fold, json.dumps(results[fold]), flush=True)
    write(args, model, sets, folds, results)


def _cell(value: list[float] | None) -> str:
    """``rank-1 / mAP``, or ``-`` where the column does not apply."""
    return "-" if value is None else f"{value[0]:.3f} / {value[1]:.3f}"


def write(args, model, sets: list[dict], folds: list[str], results: dict[str, dict]) -> None:
    columns = list(next(iter(results[SEEN].values())).keys() - {"_minutes"}) if results[SEEN] else []
    columns = [c for c in ("ImageNet backbone", "stage 2", "stage 3, trunk untuned", "stage 3 (shipped recipe)")
               if c in columns]
    fitted_columns = columns[2:]
    header = ["set", *columns[:2], *[f"{c}, source {s}" for c in fitted_columns for s in ("seen", "unseen")]]
    rows, complete, seen_only = [], [], []
    for entry in sets:
        fold = entry["source"] if entry["fitted"] and entry["source"] in results else None
        seen = results[SEEN].get(entry["name"], {})
        unseen = seen if not entry["fitted"] else results[fold].get(entry["name"], {}) if fold else {}
        cells = [seen.get(c) for c in columns[:2]]
        for c in fitted_columns:  # a set never fitted is unseen in the reference already
            cells += [seen.get(c) if entry["fitted"] else None, unseen.get(c)]
        if all(cell is None for cell in cells):
            continue
        rows.append([entry["name"], *map(_cell, cells)])
        if entry["fitted"] and all(cell is not None for cell in cells):
            complete.append(cells)
        if entry["fitted"] and all(cell is not None for cell in cells[::2] + cells[1:2]):
            seen_only.append(cells)
    if complete:  # means over the fitted sets scored in every column
        rows.append([f"**mean over {len(complete)} fitted sets**",
                     *[_cell(np.mean([cells[i] for cells in complete], axis=0).tolist()) for i in range(len(header) - 1)]])
    if len(seen_only) > len(complete):  # some folds not run: the seen columns still have every fitted set
        rows.append([f"**mean over {len(seen_only)} fitted sets, source seen**",
                     *[_cell(np.mean([cells[i] for cells in seen_only], axis=0).tolist()) if i < 2 or i % 2 == 0
                       else "-" for i in range(len(header) - 1)]])
    minutes = "; ".join(f"{fold}: {results[fold].get('_minutes', '?')} min" for fold in folds if fold in results)
    command = f"PYTHONPATH=. python benchmarks/source_holdout.py --model {args.model}"
    command += "".join(f" --tail-option {option}" for option in args.variant.split())
    if args.sources is not None:
        command += " --sources " + " ".join(args.sources)
    if not args.tail:
        command += " --no-tail"
    title = "Stage 3 on a source it has never seen (leave one source out, dev identities)"
    if args.variant:  # the shipped recipe's column is this variant's
        header = [h.replace("shipped recipe", f"tuned with {args.variant}") for h in header]
        title += f": the tuning with {args.variant}"
    body = (f"## {title}\n\n"
            f"`{command}` (stage-2 model `{model.model_id}`, fp32; `benchmarks/recover_stage2.py` writes it on a "
            "fresh clone). Rank-1 / mAP on half B of each set's "
            "`split=dev` identities (sprite sets: identities stage 2 never saw); fitted on half A of every set "
            "(**source seen**) or of every set but the scored set's source (**source unseen**: comicgen's manifests "
            "and the pages composed from its art are one source, tuxemon's two sets one). DiceBear is never fitted, "
            "so it is scored unseen only. No test row read.\n\n"
            + markdown_table(header, rows) + f"\n\nTime per fold (2 CPU cores): {minutes}.\n")
    print(body)
    if not args.no_write:
        write_section("source-holdout" + (f"-{re.sub('[^A-Za-z0-9.]+', '-', args.variant)}" if args.variant else ""),
                      body)


if __name__ == "__main__":
    main()
