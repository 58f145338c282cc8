"""The public API in ``comicid/__init__.py``: one test per call, and the README's library example run as
written. Uses the shipped ``default`` model only where the README does; elsewhere the tiny backbone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone

import comicid
from comicid.data.synth import generate_books

ROOT = Path(__file__).resolve().parents[1]
TINY = "tiny-cnn"


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_books(tmp_path_factory.mktemp("synth"), books=1, characters=4, pages=2, seed=3, progress=False)


@pytest.fixture(scope="module")
def collection(book: Path, tmp_path_factory: pytest.TempPathFactory) -> comicid.Collection:
    return comicid.import_source(book, tmp_path_factory.mktemp("c") / "collection")


def crops(book: Path, folder: Path, n: int = 2) -> list[Path]:
    """The first ``n`` body boxes of the book saved as crop files."""
    frame = pd.read_csv(book)
    bodies = frame[frame["kind"] == "body"].head(n)
    paths = []
    for index, row in enumerate(bodies.itertuples()):
        with Image.open(book.parent / row.image) as page:
            box = tuple(int(v) for v in (row.x0, row.y0, row.x1, row.y1))
            paths.append(folder / f"crop{index + 1}.png")
            page.convert("RGB").crop(box).save(paths[-1])
    return paths


def test_readme_library_example_runs_as_written(book: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use it as a library"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    shutil.copytree(book.parent, tmp_path, dirs_exist_ok=True)
    shutil.copy(tmp_path / book.name, tmp_path / "pages.csv")
    crops(tmp_path / "pages.csv", tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example, run as written
    vectors, embedded = namespace["vectors"], namespace["embedded"]
    assert isinstance(vectors, np.ndarray) and vectors.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(namespace["assignment"].table) == len(embedded)  # type: ignore[attr-defined]
    assert len(namespace["hits"]) == 5  # type: ignore[arg-type]
    assert len(namespace["labels"]) == len(embedded)  # type: ignore[arg-type]


def test_load_model_embeds_images_like_search_does(book: Path, tmp_path: Path) -> None:
    model = comicid.load_model(TINY)
    paths = crops(book, tmp_path, n=3)
    vectors = model.embed_images(paths)
    assert vectors.shape == (3, model.out_dim) and vectors.dtype == np.float32
    from_pil = model.embed_images([Image.open(path) for path in paths])
    np.testing.assert_allclose(vectors, from_pil, atol=1e-5)  # paths and images are the same input
    assert not np.allclose(vectors[0], vectors[1])


def test_load_model_unknown_name_is_a_user_error() -> None:
    with pytest.raises(comicid.ComicidError):
        comicid.load_model("no-such-model")


def test_import_source_and_open_collection(collection: comicid.Collection, book: Path) -> None:
    again = comicid.open_collection(collection.root)
    parts = again.instances()
    assert len(parts) == len(pd.read_csv(book))
    with pytest.raises(comicid.ComicidError):
        comicid.open_collection(collection.root / "missing")


def test_embed_cluster_and_search(collection: comicid.Collection) -> None:
    model = comicid.load_model(TINY)
    embedded = comicid.embed(collection, model)
    assert embedded.vectors.shape[0] == len(embedded.table) > 0
    assignment = comicid.cluster(embedded, method="agglomerative", threshold=0.3)
    assert assignment.info["threshold"] == 0.3 and (assignment.table["identity_id"] != "").all()
    assert not collection.assignments_path.is_file()  # embeddings in, nothing written
    saved = comicid.cluster(collection, model=model, threshold=0.3)
    assert collection.assignments_path.is_file()
    pd.testing.assert_frame_equal(saved.table, assignment.table)
    first = embedded.table["book"][0] + "/" + embedded.table["instance"][0]
    hits = comicid.search(collection, first, model=model, top=3)
    assert len(hits) == 3 and first not in set(hits["instance"]) and "predicted" in hits


def test_evaluate_scores_a_manifest(book: Path) -> None:
    result = comicid.evaluate(book, model=TINY, threshold=0.3)
    assert result["instances"] > 0 and 0.0 <= result["retrieval"]["rank1"] <= 1.0
    assert result["clustering"]["threshold"] == 0.3


def test_clusterers_are_exported_and_registered() -> None:
    for name, cls in comicid.CLUSTERERS.items():
        assert getattr(comicid, cls.__name__) is cls
        assert isinstance(comicid.create_clusterer(name), cls)
        assert type(clone(cls())) is cls
