"""The one way comicid writes and reads its torch files (models, stage-1 networks, adapters, multimodal
heads): a dict with ``format`` (which family of file it is, e.g. ``comicid-model``), ``version`` and the
family's fields; the ``comicid-model`` family adds ``kind`` (``plain``, ``facebody``, ... see
:data:`comicid.models.embedding_model.CHECKPOINT_KINDS`). Writes are atomic; reads use
``weights_only`` (no code runs) and validate format and version in one place, so every loader refuses a
foreign, damaged or newer file with the same kind of one-line message.

Families stay distinct on purpose: a stage-1 network, an adapter and an embedding model are not
interchangeable, and the ``format`` field is what keeps one from being loaded as another. The training
loop's resumable state (``comicid.training.loop``) is a run folder's private file, not an artefact.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from comicid.atomic import atomic_write
from comicid.errors import ComicidError, ModelError


def write_checkpoint(path: str | Path, format: str, version: int, **fields: Any) -> Path:  # noqa: A002
    """Write ``{"format", "version", **fields}`` with ``torch.save``, atomically; returns the path."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        torch.save({"format": format, "version": version, **fields}, handle)
    return path


def read_checkpoint(path: str | Path, formats: Mapping[str, int], what: str,
                    error: type[ComicidError] = ModelError) -> tuple[dict[str, Any], bytes]:
    """The checkpoint dict at ``path`` and its bytes (for a content id), validated.

    ``formats`` maps each accepted ``format`` to the ``version`` this comicid reads; ``what`` names the
    file in messages (e.g. ``"adapter"``).

    Raises:
        ``error``: the file is missing, unreadable, of another format, or of another version.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' not found")
    data = path.read_bytes()
    try:
        checkpoint: Any = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as problem:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a checkpoint"
        first_line = (str(problem).strip().splitlines() or [type(problem).__name__])[0][:160]
        raise error(f"cannot read {what} '{path}': not a readable torch file ({first_line})") from None
    family = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if family not in formats:
        raise error(f"'{path}' is not a {what}")
    if checkpoint.get("version") != formats[family]:
        raise error(f"'{path}' has {family} format version {checkpoint.get('version')}; this comicid reads "
                    f"version {formats[family]}")
    return checkpoint, data
