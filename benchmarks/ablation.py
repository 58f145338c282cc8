"""The identity-aware SSL ablation grid on synthetic comics (issue 4, item 5).

    .venv/bin/python benchmarks/ablation.py [--steps 300] [--backbone tiny-cnn] [--input-size 48]

Variants: {face only, body only, face+body} x {separate backbones, shared without the identity term,
shared with it}, each trained by the real stage-1 recipe (`comicid.training.ssl.train_ssl`) on
synthetic training books (seed 7) and evaluated on held-out synthetic books (seed 101) by leave-one-out
retrieval over instances (a part the variant cannot embed adds nothing) and per-book clustering with
the threshold calibrated on the held-out books' dev identities. Baselines: the same backbone
untrained, ImageNet EfficientNet-Lite0, colour histogram. Writes the ``ablation`` section of
docs/BENCHMARKS.md.

CPU budget decides the scale: by default a small CNN from scratch at 48 px, so that the nine-odd
trainings fit in minutes on 2 cores; the relative effect of parts, sharing and the identity term is the
point, not the absolute level (see the default model's card for a full-size backbone).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from common import ROOT, markdown_table, write_section

import comicid
from comicid.data.manifest import read_manifest
from comicid.data.synth import generate_books
from comicid.evaluation.clustering import clustering_metrics_by_group
from comicid.workflows.evaluate import retrieval_scores
from comicid.workflows.cluster import assign_identities
from comicid.models.embed import embed_crops, fuse_parts
from comicid.models.facebody import FaceBodyNetwork, load_facebody_network
from comicid.runtime import tune_allocator
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings, instance_table
from comicid.store.ingest import ingest
from comicid.training.config import SSLConfig, load_config
from comicid.training.ssl import SSL_MODEL_NAME, train_ssl

VARIANTS = {  # name -> (parts, shared backbone, identity-term weight)
    "face only": (["face"], True, 0.0),
    "body only": (["body"], True, 0.0),
    "face+body, separate backbones": (["face", "body"], False, 1.0),
    "face+body, shared, no identity term": (["face", "body"], True, 0.0),
    "face+body, shared + identity term": (["face", "body"], True, 1.0),
}


class PartEmbedder(nn.Module):
    """One part branch of a stage-1 network, shaped like an EmbeddingModel for `embed_crops`."""

    def __init__(self, network: FaceBodyNetwork, part: str, model_id: str) -> None:
        super().__init__()
        self.network, self.part, self.model_id = network, part, f"{model_id}:{part}"
        self.input_size, self.mean, self.std = network.input_size, network.mean, network.std
        self.part_dim = self.out_dim = network.out_dim
        self.head = nn.Identity()

    def forward_parts(self, images: Tensor) -> Tensor:
        return self.network.embed(images, self.part)


def evaluate(embedders: dict[str, nn.Module], collection: Collection) -> dict[str, float]:
    """Leave-one-out retrieval and per-book clustering of the held-out instances."""
    parts = collection.instances()
    table, instance_index = instance_table(parts)
    dim = next(iter(embedders.values())).part_dim
    features = np.zeros((len(parts), dim), np.float32)
    for kind, embedder in embedders.items():
        rows = np.flatnonzero((parts["kind"] == kind).to_numpy())
        crops = [collection.crop_path(key) for key in parts["crop_hash"].iloc[rows]]
        features[rows] = embed_crops(crops, embedder, progress=False, num_workers=0)
    embedded = InstanceEmbeddings(table, fuse_parts(features, instance_index, len(table)), "ablation")
    retrieval = retrieval_scores(embedded)
    test = embedded.subset((table["split"] == "test").to_numpy())
    assignment = assign_identities(test, calibration=embedded.subset((table["split"] == "dev").to_numpy()),
                                   progress=False)
    predicted = assignment.table["identity_id"].to_numpy(dtype=object)
    clustering = clustering_metrics_by_group(test.table["identity"].to_numpy(), np.where(predicted == "", -1, predicted),
                                             test.table["book"].to_numpy())
    return {"rank1": retrieval["rank1"], "mAP": retrieval["mAP"], "map_at_r": retrieval["map_at_r"],
            "ami": clustering["ami"], "bcubed_f": clustering["bcubed_f"],
            "clusters": f"{clustering['pred_clusters']}/{clustering['true_clusters']}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--backbone", default="tiny-cnn")
    parser.add_argument("--pretrained", action="store_true", help="start from the backbone's shipped weights")
    parser.add_argument("--input-size", type=int, default=48)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "ablation")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tune_allocator()
    train_books = args.work / "train_books" / "manifest.csv"
    eval_books = args.work / "eval_books" / "manifest.csv"
    if not train_books.is_file():
        generate_books(train_books.parent, books=4, characters=12, pages=10, seed=7, progress=False)
    if not eval_books.is_file():
        generate_books(eval_books.parent, books=4, characters=12, pages=10, seed=101, progress=False)
    collection = Collection.create(args.work / "eval_collection")
    ingest(read_manifest(eval_books), collection, progress=False)

    base = load_config(ROOT / "configs" / "ssl_synth_tiny.yaml", SSLConfig)
    rows: list[list[object]] = []
    for name, (parts, shared, identity) in VARIANTS.items():
        config = replace(
            base, output_dir=args.work / "runs" / name.replace(" ", "_").replace(",", "").replace("+", "-"),
            data=replace(base.data, manifests=[train_books], splits=["", "dev", "test"], parts=parts,
                         val_fraction=0.0, crop_max_side=max(64, args.input_size)),
            model=replace(base.model, backbone=args.backbone, pretrained=args.pretrained,
                          input_size=args.input_size, shared_backbone=shared),
            loss=replace(base.loss, identity_weight=identity),
            train=replace(base.train, steps=args.steps, batch_size=32, checkpoint_every=args.steps, log_every=50))
        started = time.perf_counter()
        train_ssl(config, progress=False)
        seconds = time.perf_counter() - started
        network = load_facebody_network(Path(config.output_dir) / SSL_MODEL_NAME).eval()
        scores = evaluate({part: PartEmbedder(network, part, name) for part in parts}, collection)
        print(f"{name:40s} {scores} ({seconds:.0f} s)", flush=True)
        rows.append([name, *scores.values(), f"{seconds:.0f}"])
    for baseline in (f"{args.backbone} untrained", "effnet-lite0-imagenet", "color-hist"):
        if baseline.endswith("untrained"):
            from comicid.models.facebody import build_facebody_network

            torch.manual_seed(0)
            network = build_facebody_network(args.backbone, pretrained=args.pretrained,
                                             input_size=args.input_size).eval()
            embedders = {part: PartEmbedder(network, part, baseline) for part in ("face", "body")}
        else:
            model = comicid.load_model(baseline)
            embedders = {"face": model, "body": model}
        scores = evaluate(embedders, collection)
        print(f"{baseline:40s} {scores}", flush=True)
        rows.append([baseline, *scores.values(), "-"])
    body = ("## Identity-aware SSL ablation on synthetic comics (`benchmarks/ablation.py`)\n\n"
            f"Command: `.venv/bin/python benchmarks/ablation.py --steps {args.steps} --backbone {args.backbone} "
            f"--input-size {args.input_size}{' --pretrained' if args.pretrained else ''}`. Trained on 4 synthetic "
            "books (seed 7), evaluated on 4 held-out books (seed 101, 12 characters x 10 pages each): "
            "leave-one-out retrieval over all instances; clustering of test identities per book with the "
            "threshold calibrated on dev identities.\n\n"
            + markdown_table(["variant", "rank-1", "mAP", "MAP@R", "AMI", "B3-F", "pred/true", "train s"], rows))
    if not args.no_write:
        write_section("ablation", body)
    print(body)


if __name__ == "__main__":
    main()
