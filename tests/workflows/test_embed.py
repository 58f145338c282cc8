"""Embedding a collection: part features cached by the collection's crop hashes, fused per instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comicid.data.manifest import read_manifest
from comicid.models import embed as embed_module
from comicid.models.embedding_model import load_embedding_model
from comicid.store.collection import Collection
from comicid.workflows.embed import embed_collection
from comicid.store.ingest import ingest


@pytest.fixture()
def collection(tmp_path: Path) -> Collection:
    page = Image.new("RGB", (80, 60), "white")
    page.paste((200, 30, 30), (5, 5, 25, 25))
    page.paste((30, 30, 200), (30, 5, 70, 55))
    page.save(tmp_path / "page.png")
    (tmp_path / "m.csv").write_text("image,x0,y0,x1,y1,identity,kind,instance\n"
                                    "page.png,5,5,25,25,a,face,i1\npage.png,30,5,70,55,a,body,i1\n"
                                    "page.png,30,5,70,55,b,character,\n")
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(tmp_path / "m.csv"), collection, progress=False)
    return collection


def test_instances_fuse_parts_and_rerun_reads_nothing_to_hash(collection: Collection,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_embedding_model("tiny-cnn")
    first = embed_collection(collection, model, progress=False, num_workers=0)
    assert first.table["parts"].tolist() == ["body+face", "character"]
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)

    def no_hashing(_: object) -> str:
        raise AssertionError("a cached crop was read again to compute its key")

    monkeypatch.setattr(embed_module, "crop_key", no_hashing)
    again = embed_collection(collection, model, progress=False, num_workers=0)
    assert np.array_equal(first.vectors, again.vectors)
