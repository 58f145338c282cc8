"""Measure and store the label-free clustering rule of the shipped registry backbones (their calibration files).

    PYTHONPATH=. python benchmarks/label_free.py [--models effnet-lite0-imagenet]
                                                 [--face-weight W] [--objective bcubed_f]

For each model, :func:`comicid.workflows.label_free.calibrate_model` embeds the labelled, non-test
instances of :func:`calibration_manifests` and writes ``<model>.calibration.json`` in the package's
weights folder. Not for the shipped default: its discriminant head was fitted on these identities,
so its rule is measured on cross-fitted halves by ``benchmarks/train_default.py --label-free-only``
(or by stage 3 itself after training).

The calibration data (``split=test`` rows are never read): the ``split=dev`` identities of every
development manifest, comic pages composed from comicgen's dev and test drawings at a seed of their own
(only the dev identities count), and synthetic books at the training seed of train_default.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from common import DATASETS, ROOT
from sets import all_sets

from comicid.data.synth import generate_books
from comicid.data.synth.real_art import generate_art_books
from comicid.runtime import tune_allocator
from comicid.workflows.label_free import DEFAULT_OBJECTIVE, calibrate_model

#: Seeds of the generated calibration data: the training seed of train_default.py's synthetic books,
#: and a composed-pages seed other than the benchmark's (7).
SYNTH_SEED, COMPOSED_SEED = 1000, 1
#: comicgen's three manifests hold the same drawings; its face+body one stands for them.
SKIP = ("comicgen figures", "comicgen nuovo->classic")
#: Fusion weights stored with the models: face 0.8, body 0.2, chosen on the dev identities of the
#: face+body sets by benchmarks/pages.py (re-run it after retraining; pass --face-weight if it moves).
FACE_WEIGHT = 0.8


def fusion_weights(face_weight: float = FACE_WEIGHT) -> dict[str, float]:
    return {"face": face_weight, "body": round(1.0 - face_weight, 6)}


def calibration_manifests(out: Path) -> list[Path]:
    """The manifests a label-free threshold is measured on (test rows are dropped by the fit)."""
    manifests = [path for name, path in all_sets(include_generated=False) if name not in SKIP]
    synth = out / "label_free_synth" / "manifest.csv"
    if not synth.is_file():
        generate_books(synth.parent, books=3, characters=8, pages=6, seed=SYNTH_SEED, progress=False)
    manifests.append(synth)
    source = DATASETS / "comicgen" / "face_body.csv"
    if source.is_file():
        composed = out / "label_free_composed" / "manifest.csv"
        if not composed.is_file():
            generate_art_books(composed.parent, source, books=3, cast=6, pages=6, seed=COMPOSED_SEED, progress=False)
        manifests.append(composed)
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="effnet-lite0-imagenet")
    parser.add_argument("--face-weight", type=float, default=FACE_WEIGHT,
                        help=f"store fusion weights face W / body 1-W (default: {FACE_WEIGHT}; 0.5 is the plain sum)")
    parser.add_argument("--objective", default=DEFAULT_OBJECTIVE)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks" / "label_free")
    args = parser.parse_args()
    tune_allocator()
    manifests = calibration_manifests(args.out)
    weights = fusion_weights(args.face_weight)
    names = args.models.split(",")
    if "default" in names:
        parser.error("the default's rule is measured on cross-fitted identities: "
                     "python benchmarks/train_default.py --label-free-only")
    for name in names:
        target = name
        path = calibrate_model(target, manifests, objective=args.objective, part_weights=weights,
                               workdir=args.out / "collections" / name, progress=False, name=name)
        print(f"{name}: {path}\n{path.read_text()[:600]}")


if __name__ == "__main__":
    main()
