"""The Ray path: a private local cluster on the loopback interface embeds a collection exactly as one machine does."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray")

from comicid.cli import main  # noqa: E402
from comicid.data.synth import generate_books  # noqa: E402
from comicid.store.collection import Collection  # noqa: E402

MODEL = ["--model", "tiny-cnn"]


@pytest.mark.slow
def test_ray_embedding_equals_single_machine_embedding_and_assignments(tmp_path: Path) -> None:
    book = generate_books(tmp_path / "synth", books=1, characters=4, pages=2, seed=7, progress=False)
    single, distributed = tmp_path / "single", tmp_path / "ray"
    assert main(["-q", "import", str(book), "--out", str(single)]) == 0
    shutil.copytree(single, distributed)
    assert main(["-q", "embed", str(single), *MODEL]) == 0
    # A cluster of its own, started and stopped by the command, on 127.0.0.1 with two 1-thread workers.
    assert main(["-q", "embed", str(distributed), *MODEL, "--ray", "local", "--ray-workers", "2"]) == 0

    from comicid.models.embedding_model import load_embedding_model
    from comicid.workflows.embed import embed_collection

    model = load_embedding_model("tiny-cnn")
    one = embed_collection(Collection.open(single), model, progress=False)
    many = embed_collection(Collection.open(distributed), model, progress=False)
    pd.testing.assert_frame_equal(one.table, many.table)
    np.testing.assert_allclose(many.vectors, one.vectors, atol=1e-5)
    for root in (single, distributed):
        assert main(["-q", "cluster", str(root), *MODEL, "--threshold", "0.3", "--out", str(root / "a.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(single / "a.csv"), pd.read_csv(distributed / "a.csv"))
    # Resumable: everything is cached now, so a second run starts no cluster and changes nothing.
    assert main(["-q", "embed", str(distributed), *MODEL, "--ray", "127.0.0.1:1"]) == 0
