"""Shared test set-up.

One intra-op thread per test process: pytest-xdist runs two workers on two cores, and two torch
processes with two threads each run 15-30x slower than one thread each (see docs/DEVELOPMENT.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency; keeps collection errors readable
    pass


# -- a toy collection shared by the store, identity, export and server tests (built once per session)
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from torch import nn  # noqa: E402

from comicid.models import EmbeddingModel, create_backbone, save_embedding_model  # noqa: E402


@pytest.fixture(scope="session")
def toy_source(tmp_path_factory: pytest.TempPathFactory):
    """Two drawn books, four characters each, imported for real, synthetic vectors, clustered."""
    from comicid.web.toy import toy_collection  # only sessions that use it pay for drawing it

    return toy_collection(tmp_path_factory.mktemp("toy"), books=2, characters=4, pages=2)


@pytest.fixture()
def toy(toy_source, tmp_path: Path):
    """A private copy of the toy collection that a test may edit."""
    from comicid.store.collection import Collection

    shutil.copytree(toy_source.root, tmp_path / "collection")
    return Collection.open(tmp_path / "collection")


# -- a tiny synthetic book and its collection, imported by the CLI (test_cli*.py; once per module)
@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic book (4 characters, 2 pages); a module with its own ``book`` fixture overrides it."""
    from comicid.data.synth import generate_books

    return generate_books(tmp_path_factory.mktemp("synth"), books=1, characters=4, pages=2, seed=3, progress=False)


@pytest.fixture(scope="module")
def collection(book: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``book`` imported with ``comicid import``; a module with its own ``collection`` fixture overrides it."""
    from comicid.cli import main

    out = tmp_path_factory.mktemp("c") / "collection"
    assert main(["-q", "import", str(book), "--out", str(out)]) == 0
    return out


@pytest.fixture()
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A plain tiny-cnn checkpoint with a linear head (``tmp_path/m.pt``), weights nudged off their init."""
    backbone = create_backbone("tiny-cnn")
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.01)
    return save_embedding_model(EmbeddingModel(backbone, nn.Linear(32, 8)), tmp_path / "m.pt")
