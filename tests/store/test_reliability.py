"""Nothing lost, nothing fused: stable keys, true upsert, one writer, bounded boxes, a healing cache, no NaN.

Regression tests for issue 10 (items 2, 3, 4, 5, 8, 9).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comicid.data.importers import import_folder
from comicid.data.manifest import instance_keys, read_manifest
from comicid.errors import CollectionError, ManifestError, ModelError
from comicid.models import FeatureCache, load_embedding_model
from comicid.store.collection import Collection
from comicid.workflows.embed import embed_collection
from comicid.store.ingest import ingest
from comicid.store.lock import CollectionBusyError

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _images(folder: Path, names: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in names.items():
        Image.new("RGB", (24, 24), colour).save(folder / name)


# -- item 2: keys never depend on row position, and never collide across sources --------------------
def test_two_manifests_without_instance_ids_stay_four_instances(tmp_path: Path) -> None:
    for sub, rows in (("a", "alice,bob"), ("b", "carol,dave")):
        _images(tmp_path / sub, {"0.png": "red", "1.png": "blue"} if sub == "a" else {"0.png": "green", "1.png": "black"})
        first, second = rows.split(",")
        (tmp_path / sub / "m.csv").write_text(f"image,identity\n0.png,{first}\n1.png,{second}\n")
    collection = Collection.create(tmp_path / "c")
    for sub in ("a", "b"):
        ingest(read_manifest(tmp_path / sub / "m.csv"), collection, progress=False, source=sub)
    parts = collection.instances()
    assert parts["instance_key"].nunique() == 4
    assert sorted(parts["identity"]) == ["alice", "bob", "carol", "dave"]


def test_two_folders_with_the_same_name_do_not_fuse(tmp_path: Path) -> None:
    _images(tmp_path / "x" / "comics" / "alice", {"a.png": "red"})
    _images(tmp_path / "y" / "comics" / "carol", {"a.png": "green"})
    collection = Collection.create(tmp_path / "c")
    for sub in ("x", "y"):
        ingest(import_folder(tmp_path / sub / "comics"), collection, progress=False, source=sub)
    assert collection.instances()["instance_key"].nunique() == 2


def test_an_explicit_id_like_row0_never_equals_an_anonymous_key(tmp_path: Path) -> None:
    _images(tmp_path, {"0.png": "red", "1.png": "blue"})
    (tmp_path / "m.csv").write_text("image,identity,instance\n0.png,alice,\n1.png,bob,#row0\n")
    keys = instance_keys(read_manifest(tmp_path / "m.csv"))
    assert keys[0] != keys[1]
    reordered = read_manifest(tmp_path / "m.csv").iloc[::-1].reset_index(drop=True)
    assert sorted(instance_keys(reordered)) == sorted(keys)  # position plays no part


# -- item 4: re-import is an upsert keyed by stable ids; rows gone from the source are removed ----------
def test_a_corrected_manifest_replaces_the_instance_and_drops_deleted_rows(tmp_path: Path) -> None:
    page = Image.new("RGB", (100, 100), "white")
    page.save(tmp_path / "page.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,x0,y0,x1,y1,identity,kind,instance\n"
                        "page.png,0,0,20,20,alice,face,i1\npage.png,50,50,90,90,bob,body,i2\n")
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(manifest), collection, progress=False, source=str(manifest))
    manifest.write_text("image,x0,y0,x1,y1,identity,kind,instance\npage.png,2,2,22,22,carol,face,i1\n")
    report = ingest(read_manifest(manifest), collection, progress=False, source=str(manifest))
    parts = collection.instances()
    assert len(parts) == 1 and parts["identity"].tolist() == ["carol"]  # one face, the new label
    assert parts["x0"].tolist() == [2.0]
    assert report.updated == 1 and len(report.removed) == 1 and "i2" in report.removed[0]


def test_rows_of_other_sources_stay_and_conflicts_across_sources_are_refused(tmp_path: Path) -> None:
    Image.new("RGB", (60, 60), "white").save(tmp_path / "p.png")
    (tmp_path / "a.csv").write_text("image,x0,y0,x1,y1,identity,kind,instance\np.png,0,0,20,20,alice,face,i1\n")
    (tmp_path / "b.csv").write_text("image,x0,y0,x1,y1,identity,kind,instance\np.png,0,0,20,20,bob,body,i9\n")
    (tmp_path / "c.csv").write_text("image,x0,y0,x1,y1,identity,kind,instance\np.png,0,0,20,20,zed,body,i1\n")
    collection = Collection.create(tmp_path / "c")
    for name in ("a", "b"):
        ingest(read_manifest(tmp_path / f"{name}.csv"), collection, progress=False, source=name)
    assert len(collection.instances()) == 2
    with pytest.raises(CollectionError, match="two|identities"):  # i1 would get alice and zed
        ingest(read_manifest(tmp_path / "c.csv"), collection, progress=False, source="c")
    assert len(collection.instances()) == 2  # nothing written


# -- item 3: one writer at a time, with two real processes ---------------------------------------------
_HOLDER = """
import sys, time, pathlib
from comicid.store.collection import Collection
collection = Collection.open(sys.argv[1])
with collection.writer("test holder"):
    pathlib.Path(sys.argv[2]).write_text("held")
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""


def test_a_second_writer_process_gets_collection_is_busy(tmp_path: Path) -> None:
    _images(tmp_path / "src", {"0.png": "red", "1.png": "blue"})
    (tmp_path / "src" / "m.csv").write_text("image,identity\n0.png,alice\n1.png,bob\n")
    collection = Collection.create(tmp_path / "c")
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(collection.root), str(ready), str(release)],
                              env=_env())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        blocked = subprocess.run([sys.executable, "-m", "comicid", "import", str(tmp_path / "src" / "m.csv"),
                                  "--out", str(collection.root), "-q"], env=_env(), capture_output=True, text=True)
        assert blocked.returncode == 1
        assert "is busy" in blocked.stderr and "test holder" in blocked.stderr
        assert "Traceback" not in blocked.stderr and len(blocked.stderr.strip().splitlines()) == 1
        with pytest.raises(CollectionBusyError):  # the library refuses too, for any writer
            ingest(read_manifest(tmp_path / "src" / "m.csv"), collection, progress=False)
    finally:
        release.write_text("go")
        holder.wait(timeout=60)
    assert not collection.has_instances()
    ingest(read_manifest(tmp_path / "src" / "m.csv"), collection, progress=False)  # free again
    assert len(collection.instances()) == 2


@pytest.mark.slow  # two CLI processes start torch on a shared 2-core machine: ~40 s
def test_two_racing_imports_never_lose_rows(tmp_path: Path) -> None:
    rows = {"a": 30, "b": 25}
    for name, count in rows.items():
        folder = tmp_path / name
        folder.mkdir()
        for i in range(count):
            Image.new("RGB", (16, 16), (i * 8, 100 if name == "a" else 200, 0)).save(folder / f"{i}.png")
        (folder / "m.csv").write_text("image,identity\n" + "".join(f"{i}.png,{name}{i}\n" for i in range(count)))
    Collection.create(tmp_path / "c")
    processes = [subprocess.Popen([sys.executable, "-m", "comicid", "import", str(tmp_path / name / "m.csv"),
                                   "--out", str(tmp_path / "c"), "-q"], env=_env(), stderr=subprocess.PIPE, text=True)
                 for name in rows]
    outcomes = [(process.wait(timeout=120), process.stderr.read()) for process in processes]
    for code, stderr in outcomes:
        assert code == 0 or (code == 1 and "is busy" in stderr and "Traceback" not in stderr)
    succeeded = sum(count for (code, _), count in zip(outcomes, rows.values(), strict=True) if code == 0)
    kept = len(Collection.open(tmp_path / "c").instances()) if (tmp_path / "c" / "instances.parquet").exists() else 0
    assert kept == succeeded  # every row of every import that reported success is there


# -- item 5: a box is checked against its page before anything is allocated -----------------------------
@pytest.mark.parametrize("box", ["0,0,50,10000000", "0,0,100000,100000", "500,500,600,600"])
def test_boxes_that_do_not_fit_the_page_are_refused_or_skipped(tmp_path: Path, box: str) -> None:
    Image.new("RGB", (64, 48), "white").save(tmp_path / "p.png")
    (tmp_path / "m.csv").write_text(f"image,x0,y0,x1,y1,identity\np.png,{box},alice\np.png,0,0,10,10,bob\n")
    collection = Collection.create(tmp_path / "c")
    with pytest.raises(ManifestError, match="row 1: box"):
        ingest(read_manifest(tmp_path / "m.csv"), collection, progress=False)
    report = ingest(read_manifest(tmp_path / "m.csv"), collection, progress=False, skip_bad=True)
    assert [row for row, _ in report.skipped] == [1] and report.added == 1
    assert report.rows == report.added + len(report.skipped)


def test_astronomic_coordinates_are_a_row_error(tmp_path: Path) -> None:
    Image.new("RGB", (64, 48), "white").save(tmp_path / "p.png")
    (tmp_path / "m.csv").write_text("image,x0,y0,x1,y1\np.png,0,0,1e300,1e300\n")
    with pytest.raises(ManifestError, match="row 1: box coordinate"):
        read_manifest(tmp_path / "m.csv")


# -- items 8 and 9: NaN features are refused; cache shards are never overwritten and heal -----------------
def _embedded_collection(tmp_path: Path, count: int = 6) -> Collection:
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(count):
        Image.new("RGB", (20, 20), (i * 30, 0, 0)).save(folder / f"{i}.png")
    (folder / "m.csv").write_text("image,identity\n" + "".join(f"{i}.png,c{i % 3}\n" for i in range(count)))
    collection = Collection.create(tmp_path / "c")
    ingest(read_manifest(folder / "m.csv"), collection, progress=False)
    return collection


def test_a_model_with_nan_weights_is_refused_naming_the_instance(tmp_path: Path) -> None:
    collection = _embedded_collection(tmp_path)
    model = load_embedding_model("tiny-cnn")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(ModelError, match=r"non-finite.*instance 'default/#[0-9a-f]+'"):
        embed_collection(collection, model, progress=False, num_workers=0)
    assert not any((collection.features_dir).rglob("shard-*.npz"))  # nothing NaN was cached


def test_a_lost_shard_never_makes_a_new_one_overwrite_another(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "m")
    for batch in range(3):
        cache.add([f"k{batch}"], np.full((1, 4), batch, dtype=np.float32))
    shards = sorted(cache.folder.glob("shard-*.npz"))
    shards[0].unlink()  # lose the first shard: counting files would now name the next shard like the last
    kept = {path.name: path.read_bytes() for path in shards[1:]}
    reopened = FeatureCache(tmp_path, "m")
    assert "k0" not in reopened and "k2" in reopened
    reopened.add(["k0"], np.zeros((1, 4), dtype=np.float32))  # the cache heals: the lost crop comes back
    reopened.add(["k3"], np.ones((1, 4), dtype=np.float32))
    for name, data in kept.items():
        assert (cache.folder / name).read_bytes() == data  # never overwritten
    assert {"k0", "k1", "k2", "k3"} <= set(FeatureCache(tmp_path, "m")._vectors)


def test_a_truncated_shard_is_set_aside_and_its_crops_embedded_again(tmp_path: Path) -> None:
    collection = _embedded_collection(tmp_path)
    model = load_embedding_model("tiny-cnn")
    first = embed_collection(collection, model, progress=False, num_workers=0)
    shard = next(collection.features_dir.rglob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:50])
    again = embed_collection(collection, model, progress=False, num_workers=0)
    np.testing.assert_allclose(again.vectors, first.vectors, atol=1e-6)
    assert list(collection.features_dir.rglob("*.damaged"))
