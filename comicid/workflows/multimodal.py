"""Train the Manga-MMTL models (:mod:`comicid.training.multimodal`) from their config: import and embed the
training manifests once with the frozen image model, encode the texts, then train. The embedding is a
collection workflow, so it lives here, above the recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from comicid.data.manifest import read_manifest
from comicid.errors import ConfigError
from comicid.models.embedding_model import load_embedding_model
from comicid.models.text import create_text_encoder
from comicid.runtime import resolve_device
from comicid.store.collection import Collection
from comicid.store.ingest import ingest
from comicid.training.loop import TrainResult
from comicid.training.multimodal import Features, MultimodalConfig, log, train_multimodal
from comicid.workflows.embed import embed_collection


def compute_features(config: MultimodalConfig, device: str | torch.device = "cpu", progress: bool = True) -> Features:
    """Import and embed the training manifests once; encode the texts; keep the labelled training rows."""
    frames = [read_manifest(path, allow_outside=True) for path in config.data.manifests]  # the recipe's own
    frame = pd.concat(frames, ignore_index=True)
    keep = frame["split"].isin(config.data.splits) & (frame["identity"] != "")
    if not keep.any():
        raise ConfigError(f"no labelled rows with split in {config.data.splits} in {config.data.manifests}")
    collection = Collection.create(config.data.collection or Path(config.output_dir) / "collection")
    ingest(frame[keep].reset_index(drop=True), collection, progress=progress)
    image_model = load_embedding_model(config.image_model, device=device)
    embedded = embed_collection(collection, image_model, device=str(device), progress=progress)
    table = embedded.table
    text = create_text_encoder(config.text_model, device=device).encode(table["text"].tolist())
    characters = (table["book"] + "/" + table["identity"]).to_numpy()
    character_names, character_codes = np.unique(characters, return_inverse=True)
    album_names, album_codes = np.unique(table["book"].to_numpy(), return_inverse=True)
    log.info("%d training instances, %d characters, %d albums, %.0f%% with text", len(table),
             len(character_names), len(album_names), 100 * float((table["text"] != "").mean()))
    return Features(embedded.vectors.astype(np.float32), text, character_codes.astype(np.int64),
                    album_codes.astype(np.int64), [str(n) for n in character_names], [str(n) for n in album_names])


def train_multimodal_from_config(config: MultimodalConfig, device: str | torch.device = "cpu", resume: bool = False,
                                 progress: bool = True) -> dict[str, tuple[TrainResult, Path]]:
    """`comicid train multimodal`: :func:`compute_features`, then :func:`train_multimodal`."""
    target = resolve_device(device)
    return train_multimodal(config, compute_features(config, target, progress), target, resume, progress)
