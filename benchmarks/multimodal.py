"""Manga-MMTL on synthetic manga-speech books: the paper's Tables 3-5 for our data (issue 11).

    nice -n 10 .venv/bin/python benchmarks/multimodal.py [--train-books 6] [--test-books 4]
        [--characters 10] [--pages 10] [--steps 600] [--text-model minilm-l6] [--image-model default]

Data: `comicid synth --speech manga` books (docs/SYNTH.md). Training books (seed 21) train M1-M5 with
the real recipe (`comicid.training.multimodal`) on their ``split=dev`` characters only; 15 % of those
instances are held out of training to measure classification accuracy (Table 3). Held-out books
(seed 22: unseen characters, unseen worlds) are scored as `comicid evaluate` does: retrieval
leave-one-out over their ``split=test`` instances across books (Table 4), and clustering per book
of the same instances (Table 5) with UMAP + HDBSCAN and with the default agglomerative clusterer,
whose threshold is calibrated on the held-out books' ``split=dev`` characters. Writes the
``multimodal`` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


from common import markdown_table, write_section

import comicid
from comicid.data.manifest import read_manifest, write_manifest
from comicid.data.synth import generate_books
from comicid.evaluation.clustering import clustering_metrics
from comicid.workflows.evaluate import choose_rows, retrieval_scores
from comicid.workflows.cluster import assign_identities
from comicid.models.multimodal import load_multimodal
from comicid.models.text import create_text_encoder
from comicid.runtime import tune_allocator
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection
from comicid.store.ingest import ingest
from comicid.training.config import TrainConfig
from comicid.training.multimodal import MultimodalConfig, MultimodalDataConfig
from comicid.workflows.multimodal import train_multimodal_from_config

TRAIN_SEED, TEST_SEED = 21, 22
PAGE = (800, 1100)
#: Feature sets scored on the held-out books, in table order (the paper's plus the image model alone).
FEATURE_SETS = ("image model", "M1", "M2", "M3", "M4", "M5", "M3+M1", "M3+M5")
METHODS = ("umap-hdbscan", "agglomerative")


def _hold_out_instances(manifest: Path, out: Path, fraction: float, seed: int) -> tuple[Path, Path]:
    """Split the dev rows of the training books by instance: a training manifest and a classification test one."""
    frame = read_manifest(manifest)
    frame = frame[frame["split"] == "dev"].reset_index(drop=True)
    keys = (frame["book"] + "/" + frame["instance"]).to_numpy()
    unique = np.unique(keys)
    held = set(np.random.default_rng(seed).permutation(unique)[: int(round(len(unique) * fraction))])
    mask = np.array([key in held for key in keys])
    train_path = write_manifest(frame[~mask], out / "train.csv")
    held_path = write_manifest(frame[mask], out / "heldout.csv")
    return train_path, held_path


def _classification(run: Path, held: Path, image_model: str, text_model: str, work: Path) -> list[list[object]]:
    """Table 3: accuracy of each model's classifier(s) on held-out instances of the training characters."""
    collection = Collection.create(work / "heldout")
    ingest(read_manifest(held), collection, progress=False)
    embedded = embed_collection(collection, comicid.load_model(image_model), progress=False)
    table = embedded.table
    image = torch.from_numpy(embedded.vectors)
    text = torch.from_numpy(create_text_encoder(text_model).encode(table["text"].tolist()))
    rows = []
    for variant in ("M1", "M2", "M3", "M4", "M5"):
        net, _ = load_multimodal(run / variant / "model.pt")
        checkpoint = torch.load(run / variant / "model.pt", weights_only=True)
        characters = {name: i for i, name in enumerate(checkpoint["characters"])}
        albums = {name: i for i, name in enumerate(checkpoint["albums"])}
        char_truth = np.array([characters.get(f"{b}/{i}", -1) for b, i in zip(table["book"], table["identity"])])
        album_truth = np.array([albums.get(b, -1) for b in table["book"]])
        with torch.no_grad():
            logits = net(image, text)
        char_acc = float((logits["character"].argmax(1).numpy() == char_truth).mean()) if "character" in logits else None
        album_acc = float((logits["album"].argmax(1).numpy() == album_truth).mean()) if "album" in logits else None
        rows.append([variant, "-" if char_acc is None else char_acc, "-" if album_acc is None else album_acc])
    return rows


def _features(name: str, run: Path, image_model: str) -> str:
    if name == "image model":
        return image_model
    return "+".join(str(run / part / "model.pt") for part in name.split("+"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-books", type=int, default=6)
    parser.add_argument("--test-books", type=int, default=4)
    parser.add_argument("--characters", type=int, default=10)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--text-model", default="minilm-l6")
    parser.add_argument("--image-model", default="default")
    parser.add_argument("--text-source", choices=("panel", "speech"), default="panel",
                        help="instance text: all text of its panel (the paper's reading of Manga109, default) or "
                             "only the character's own balloon (an ablation; section multimodal-speech)")
    parser.add_argument("--work", type=Path, help="keep books, collections and models here")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/BENCHMARKS.md")
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    scratch = tempfile.TemporaryDirectory(prefix="comicid-mm-") if args.work is None else None
    work = Path(scratch.name) if scratch else args.work
    work.mkdir(parents=True, exist_ok=True)

    train_manifest = generate_books(work / "train_books", books=args.train_books, characters=args.characters,
                                    pages=args.pages, seed=TRAIN_SEED, page_size=PAGE, progress=False, speech="manga")
    test_manifest = generate_books(work / "test_books", books=args.test_books, characters=args.characters,
                                   pages=args.pages, seed=TEST_SEED, page_size=PAGE, progress=False, speech="manga")
    if args.text_source == "speech":  # the speaker's own line instead of the whole panel's text
        for path in (train_manifest, test_manifest):
            frame = read_manifest(path)
            write_manifest(frame.assign(text=frame["speech"]), path)
    train_csv, held_csv = _hold_out_instances(train_manifest, work / "train_books", 0.15, TRAIN_SEED)
    config = MultimodalConfig(
        output_dir=work / "run", data=MultimodalDataConfig(manifests=[train_csv], splits=["dev"]),
        image_model=args.image_model, text_model=args.text_model,
        train=TrainConfig(steps=args.steps, batch_size=64, lr=0.01, weight_decay=1e-4, warmup_steps=0, grad_clip=0.0,
                          amp=False, checkpoint_every=0, val_every=20, patience=5, log_every=20, optimizer="sgd",
                          momentum=0.9))
    config.check()
    trained = train_multimodal_from_config(config, progress=False)
    training_rows = [[variant, result.steps, result.best_step if result.best_step is not None else "-",
                      "yes" if result.stopped_early else "no"] for variant, (result, _) in trained.items()]
    table3 = _classification(work / "run", held_csv, args.image_model, args.text_model, work)

    collection = Collection.create(work / "test_collection")
    ingest(read_manifest(test_manifest), collection, progress=False)
    retrieval_rows, cluster_rows, per_book_rows = [], [], []
    for name in FEATURE_SETS:
        embedded: InstanceEmbeddings = embed_collection(
            collection, comicid.load_model(_features(name, work / "run", args.image_model)), progress=False)
        scored, dev, _ = choose_rows(embedded, "auto")
        evaluated = embedded.subset(scored)
        r = retrieval_scores(evaluated)
        retrieval_rows.append([name, evaluated.vectors.shape[1], r["rank1"], r["rank5"], r["mAP"]])
        for method in METHODS:
            assignment = assign_identities(evaluated, method=method, scope="book", calibration=embedded.subset(dev),
                                           progress=False)
            truth = evaluated.table["identity"].to_numpy()
            predicted = assignment.table["identity_id"].to_numpy(dtype=object)
            predicted = np.where(predicted == "", -1, predicted)  # unknown counts as its own singleton
            books = evaluated.table["book"].to_numpy()
            per_book = {book: clustering_metrics(truth[books == book], predicted[books == book])
                        for book in sorted(set(books))}
            mean = {key: float(np.mean([m[key] for m in per_book.values()])) for key in ("ari", "ami", "v_measure")}
            counts = (sum(int(m["pred_clusters"]) for m in per_book.values()),
                      sum(int(m["true_clusters"]) for m in per_book.values()))
            cluster_rows.append([name, method, mean["ari"], mean["ami"], mean["v_measure"], f"{counts[0]} / {counts[1]}"])
            if name in ("image model", "M1", "M5", "M3+M5") and method == "umap-hdbscan":
                for book, m in per_book.items():
                    per_book_rows.append([name, book, m["ari"], m["ami"], m["v_measure"],
                                          f"{m['pred_clusters']} / {m['true_clusters']}"])
    minutes = (time.perf_counter() - started) / 60
    text_share = float((read_manifest(test_manifest)["text"] != "").mean())
    ablation = args.text_source == "speech"
    body = [
        ("### Ablation: each instance's text = its own balloon only" if ablation else
         "## Multimodal multitask features (Manga-MMTL) on synthetic manga-speech books (`benchmarks/multimodal.py`)"),
        "",
        f"Command: `nice -n 10 .venv/bin/python benchmarks/multimodal.py --train-books {args.train_books} "
        f"--test-books {args.test_books} --characters {args.characters} --pages {args.pages} --steps {args.steps} "
        f"--text-model {args.text_model} --image-model {args.image_model}"
        f"{' --text-source speech' if ablation else ''}` ({minutes:.1f} min on the shared "
        "2-core machine, contended).",
        "",
        f"Training: {args.train_books} synthetic books (seed {TRAIN_SEED}, `--speech manga`), `split=dev` characters "
        f"only, 15 % of their instances held out for Table 3. Scoring: {args.test_books} held-out books (seed "
        f"{TEST_SEED}: unseen characters, unseen book worlds), their `split=test` instances; the agglomerative "
        "threshold is calibrated on their `split=dev` characters; UMAP + HDBSCAN has no threshold. Image features: "
        f"`{args.image_model}` instance embeddings; text features: `{args.text_model}` over "
        + ("the character's own balloon only" if ablation else "the panel's text (as Manga-MMTL reads Manga109)")
        + f" ({100 * text_share:.0f} % of the held-out parts have text, the rest get a zero text feature).",
        "",
        "**Table 3: classification accuracy** on held-out instances of the training characters (M3 and M5's "
        "album column: which training book).",
        "",
        markdown_table(["model", "character acc.", "album acc."], table3),
        "",
        markdown_table(["model", "steps", "best step", "stopped early"], training_rows),
        "",
        "**Table 4: retrieval** on the held-out books (leave-one-out over their test instances, all books "
        "together: a wrong book is a wrong answer).",
        "",
        markdown_table(["features", "dim", "rank-1", "rank-5", "mAP"], retrieval_rows),
        "",
        "**Table 5: clustering per book** (means over the held-out books; predicted / true clusters summed).",
        "",
        markdown_table(["features", "method", "ARI", "AMI", "V", "clusters pred / true"], cluster_rows),
        "",
        "Per book, UMAP + HDBSCAN:",
        "",
        markdown_table(["features", "book", "ARI", "AMI", "V", "clusters pred / true"], per_book_rows),
    ]
    text = "\n".join(body) + "\n"
    print(text)
    if not args.no_write:
        write_section("multimodal-speech" if ablation else "multimodal", text)
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
