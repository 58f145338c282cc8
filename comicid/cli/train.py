"""Train a model: `ssl CONFIG` (stage 1) or `finetune CONFIG` (stage 2) of the face-body recipe,
`bot CONFIG [--pseudo-label UNLABELLED.csv]`, the BoT re-ID recipe, or `multimodal CONFIG`: Manga-MMTL's
M1-M5, or `detector CONFIG`: the page detector (docs/TRAINING.md, docs/MULTIMODAL.md, docs/DETECTION.md).


Recipes are YAML files (see configs/ and docs/TRAINING.md). Stage 1 writes OUTPUT_DIR/ssl_model.pt,
stage 2 reads it and writes the embedding model (OUTPUT_DIR/model.pt unless export.path says
otherwise), usable wherever a model is asked for (`--model PATH`). Runs checkpoint as they go;
`--resume` continues an interrupted run from its last checkpoint. `multimodal` trains the Manga-MMTL
models on image and text features and writes OUTPUT_DIR/<M1..M5>/model.pt (docs/MULTIMODAL.md).
`detector` trains the page detector (panels, bodies, faces, text) on synth folders and writes
OUTPUT_DIR/detector.pt (docs/DETECTION.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from comicid.errors import ConfigError
from comicid.identity import mine_identities
from comicid.training.bot import BotConfig, train_bot
from comicid.training.config import FinetuneConfig, SSLConfig, load_config
from comicid.training.detector import DetectorConfig, train_detector
from comicid.training.discriminant import DiscriminantConfig
from comicid.training.finetune import train_finetune
from comicid.training.loop import TrainResult
from comicid.training.multimodal import MultimodalConfig
from comicid.training.ssl import SSL_MODEL_NAME, train_ssl
from comicid.workflows.discriminant import train_discriminant
from comicid.workflows.multimodal import train_multimodal_from_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in (("ssl", "stage 1: self-supervised face-body pre-training"),
                            ("finetune", "stage 2: frozen network, trained fusion + projector"),
                            ("multimodal", "Manga-MMTL: M1-M5 on image and text features"),
                            ("bot", "BoT re-ID recipe: BNNeck, batch-hard triplets, cross-domain, MDL"),
                            ("detector", "the page detector: panels, bodies, faces, text balloons"),
                            ("discriminant", "extend a trained model's head by a linear discriminant of labelled "
                                             "identities (the shipped default's last stage)")):
        stage = stages.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("config", metavar="CONFIG", type=Path, help="recipe YAML file")
        stage.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
        stage.add_argument("--resume", action="store_true",
                           help="continue from the checkpoint in the recipe's output_dir")
        if name == "bot":
            stage.add_argument("--pseudo-label", type=Path, metavar="UNLABELLED",
                               help="manifest whose rows without identity are pseudo-labelled by identity "
                                    "mining and added to training")
        stage.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="no progress bars or summaries")
        if name == "multimodal":
            stage.add_argument("--text-model", metavar="NAME|PATH",
                               help="text encoder: a registry name (minilm-l6, hashing) or a local transformers "
                                    "model folder; overrides the recipe's text_model")


def run(args: argparse.Namespace) -> int:
    quiet = bool(getattr(args, "quiet", False))
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.stage == "multimodal":
        overrides = {"text_model": args.text_model} if args.text_model else None
        mm_config = load_config(args.config, MultimodalConfig, overrides)
        trained = train_multimodal_from_config(mm_config, args.device, args.resume, progress=not quiet)
        if not quiet:
            for variant, (mm_result, path) in trained.items():
                print(f"{_summary(variant, mm_result)}; wrote {path}")
        return 0
    if args.stage == "detector":
        det_config = load_config(args.config, DetectorConfig)
        det_result, det_path = train_detector(det_config, args.device, args.resume, progress=not quiet)
        if not quiet:
            print(f"{_summary('detector', det_result, 'validation AP@0.5')}; wrote {det_path}")
        return 0
    if args.stage == "discriminant":
        if args.resume:
            raise ConfigError("train discriminant is a closed-form fit in one pass: there is nothing to resume")
        fitted = train_discriminant(load_config(args.config, DiscriminantConfig), args.device, progress=not quiet)
        if not quiet:
            print(f"discriminant head: {fitted.n_instances} instances of {fitted.n_identities} identities, "
                  f"{fitted.dims} directions ({fitted.explained:.0%} of the between-class variance), "
                  f"embedding {fitted.out_dim}-d; {fitted.model_id}; wrote {fitted.path}")
        return 0
    if args.stage == "ssl":
        ssl_config = load_config(args.config, SSLConfig)
        result = train_ssl(ssl_config, args.device, args.resume, progress=not quiet)
        written: Path | None = ssl_config.output_dir / SSL_MODEL_NAME
    elif args.stage == "bot":
        bot_config = load_config(args.config, BotConfig)
        bot = train_bot(bot_config, args.device, args.resume, progress=not quiet, pseudo_label=args.pseudo_label,
                        labeler=mine_identities)
        result, written = bot.phases[next(reversed(bot.phases))], bot.model_path
        if not quiet and bot.pseudo is not None:
            print(f"pseudo-labels: {bot.pseudo.coverage:.1%} of unlabelled instances into "
                  f"{bot.pseudo.identities} identities")
    else:
        finetune_config = load_config(args.config, FinetuneConfig)
        result, written = train_finetune(finetune_config, args.device, args.resume, progress=not quiet)
    if not quiet:
        print(_summary(args.stage, result))
        print(f"wrote {written}" if written else "no embedding model exported (see the log above)")
    return 0


def _summary(label: str, result: TrainResult, metric: str = "validation") -> str:
    """One line per trained model: steps, first -> last loss, best validation and an early stop."""
    losses = result.losses()
    line = f"{label}: {result.steps} steps"
    if losses:
        line += f", loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    if result.best is not None:
        line += f", best {metric} {result.best:.4f} at step {result.best_step}"
    return f"{line} (stopped early)" if result.stopped_early else line
