"""The index stored with a collection: `comicid index`, incremental updates, search through it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from comicid.cli import main
from comicid.data.synth import generate_books
from comicid.models.embedding_model import load_embedding_model
from comicid.store.index import index_folder, load_collection_index, update_collection_index
from comicid.store.collection import Collection
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection

MODEL = ["--model", "tiny-cnn"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    book = generate_books(tmp_path_factory.mktemp("synth"), books=1, characters=4, pages=2, seed=5, progress=False)
    out = tmp_path_factory.mktemp("c") / "collection"
    assert main(["-q", "import", str(book), "--out", str(out)]) == 0
    assert main(["-q", "embed", str(out), *MODEL]) == 0
    return out


def _embedded(root: Path) -> InstanceEmbeddings:
    return embed_collection(Collection.open(root), load_embedding_model("tiny-cnn"), progress=False)


def test_index_command_builds_a_stored_index_with_its_recall(collection: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(collection), *MODEL, "--rebuild"]) == 0
    out = capsys.readouterr().out
    assert "recall@10 vs exact" in out and "built" in out
    embedded = _embedded(collection)
    index, keys, info = load_collection_index(Collection.open(collection), embedded.model_id)
    assert len(index) == len(keys) == len(embedded) == info["instances"]
    assert 0.0 <= info["recall_at_10"] <= 1.0
    np.testing.assert_array_equal(np.sort(keys), np.sort(embedded.table["instance_key"].to_numpy(dtype=str)))


def test_update_adds_only_new_instances_and_rebuilds_when_vectors_change(collection: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(collection, root)
    shutil.rmtree(root / "index", ignore_errors=True)
    store = Collection.open(root)
    embedded = _embedded(root)
    older = embedded.subset(np.arange(len(embedded)) < len(embedded) - 3)
    first, _, _ = update_collection_index(store, older)
    assert first.rebuilt and first.instances == len(embedded) - 3
    second, index, keys = update_collection_index(store, embedded)
    assert not second.rebuilt and second.added == 3 and len(index) == len(embedded)
    assert list(keys[-3:]) == list(embedded.table["instance_key"].iloc[-3:])
    unchanged, _, _ = update_collection_index(store, embedded)
    assert unchanged.added == 0 and not unchanged.rebuilt
    moved = InstanceEmbeddings(embedded.table, embedded.vectors[::-1].copy(), embedded.model_id)
    assert update_collection_index(store, moved)[0].rebuilt  # an indexed vector changed: rebuilt


def test_search_uses_the_stored_index_and_agrees_with_exact(collection: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "index", str(collection), *MODEL]) == 0
    embedded = _embedded(collection)
    first = embedded.table["instance_key"].iloc[0].replace("\x1f", "/")
    results = {}
    for backend in ("ann", "exact"):
        assert main(["search", str(collection), "--instance", embedded.table["instance"].iloc[0], "--top", "3",
                     "--json", "--index", backend, *MODEL]) == 0
        results[backend] = json.loads(capsys.readouterr().out)
    assert len(results["ann"]) == 3
    assert first not in [hit["instance"] for hit in results["ann"]]
    # A few dozen vectors: the tuned index probes enough lists to be exact here.
    assert [hit["instance"] for hit in results["ann"]] == [hit["instance"] for hit in results["exact"]]
    assert index_folder(Collection.open(collection), embedded.model_id).joinpath("index.faiss.npy").is_file()


def test_embed_builds_the_index_on_request(collection: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "copy"
    shutil.copytree(collection, root)
    shutil.rmtree(root / "index", ignore_errors=True)
    assert main(["embed", str(root), *MODEL, "--no-index"]) == 0
    assert not (root / "index").exists()
    assert main(["embed", str(root), *MODEL, "--index"]) == 0
    assert "index:" in capsys.readouterr().out and (root / "index").is_dir()


def test_a_damaged_index_is_one_clear_error(collection: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "copy"
    shutil.copytree(collection, root)
    assert main(["-q", "index", str(root), *MODEL]) == 0
    folder = next((root / "index").iterdir())
    np.save(folder / "keys.npy", np.array(["only-one"]))
    instance = _embedded(root).table["instance"].iloc[0]
    code = main(["search", str(root), "--instance", instance, "--index", "ann", *MODEL])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "comicid index --rebuild" in err
