"""`comicid import --ray`: pages cut on a private loopback Ray cluster give the collection one machine gives."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")

from comicid.cli import main  # noqa: E402
from comicid.data.synth import generate_books  # noqa: E402
from comicid.errors import ConfigError  # noqa: E402
from comicid.store.collection import Collection  # noqa: E402
from comicid.workflows.ray_cluster import ray_cluster  # noqa: E402
from comicid.workflows.ray_import import JOURNAL, RayCutter, import_source_ray  # noqa: E402


def _crops(root: Path) -> dict[str, str]:
    """Every crop file of a collection: relative path -> SHA-256 of its bytes."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted((root / "crops").rglob("*.png"))}


@pytest.mark.slow
def test_ray_import_equals_single_machine_import_and_resumes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = generate_books(tmp_path / "synth", books=1, characters=4, pages=3, seed=3, progress=False)
    # With a page that is missing and a box that does not fit its page: skipped and counted alike.
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write("pages/b0/missing.png,1,1,20,20,b0-c1,body,gone-1,b0,p999,,,,,,dev,colour\n")
        handle.write("pages/b0/p000.png,90000,90000,90050,90050,b0-c1,body,far-1,b0,p000,,,,,,dev,colour\n")
    single, distributed = tmp_path / "single", tmp_path / "ray"
    assert main(["import", str(manifest), "--out", str(single), "--skip-bad"]) == 0
    alone = capsys.readouterr().out
    # A cluster of its own, started and stopped by the command, on 127.0.0.1 with two 1-CPU workers.
    assert main(["import", str(manifest), "--out", str(distributed), "--skip-bad", "--ray", "local",
                 "--ray-workers", "2"]) == 0
    on_ray = capsys.readouterr().out
    assert "2 skipped" in alone and "skipped row" in alone
    assert on_ray.replace(str(distributed), str(single)).replace(
        "  ray: 4 pages cut on the cluster, 0 resumed from an interrupted run\n", "") == alone
    one = Collection.open(single).instances()
    assert len(one) > 20 and one["crop_hash"].ne("").all()
    pd.testing.assert_frame_equal(Collection.open(distributed).instances(), one)
    assert _crops(distributed) == _crops(single) and len(_crops(single)) == one["crop_hash"].nunique()
    assert not (distributed / JOURNAL).exists()  # removed once the parts table is written

    # An interrupted run (one page per task): the first page back was journalled and its crops
    # written, then Ctrl-C before the parts table. The resumed run takes that page from the journal
    # and cuts only the others.
    # Both runs share one private cluster (started here) to keep the test short.
    resumed = tmp_path / "resumed"
    with ray_cluster("local", num_cpus=2):
        with pytest.raises(KeyboardInterrupt):
            import_source_ray_interrupted(manifest, resumed, RayCutter("local", workers=2, pages_per_task=1),
                                          after_pages=1)
        journal = [json.loads(line) for line in (resumed / JOURNAL).read_text().splitlines()]
        assert len(journal) == 1 and journal[0]["cut"]["hashes"] and not (resumed / "instances.parquet").exists()
        # Its crops are there (tasks still running at the interrupt may have written more: harmless).
        assert {f"crops/{key[:2]}/{key}.png" for key in journal[0]["cut"]["hashes"] if key} <= set(_crops(resumed))
        result = import_source_ray(manifest, resumed, "local", workers=2, skip_bad=True)
    pages = one["image"].nunique()
    # 4 pages: the missing one is never journalled, so it is tried again (and skipped again).
    assert pages == 3 and result.ray == {"pages_resumed": 1, "pages_cut": 3}
    pd.testing.assert_frame_equal(Collection.open(resumed).instances(), one)
    assert _crops(resumed) == _crops(single) and not (resumed / JOURNAL).exists()


def import_source_ray_interrupted(manifest: Path, out: Path, cutter: RayCutter, after_pages: int) -> None:
    """Run an import whose driver is interrupted (Ctrl-C) after ``after_pages`` readable pages came back."""
    from comicid.workflows.imports import import_source

    def interrupted(jobs, collection, progress):  # type: ignore[no-untyped-def]
        good = 0
        for cut in cutter(jobs, collection, progress):
            yield cut
            good += not cut.error
            if good >= after_pages:
                raise KeyboardInterrupt

    import_source(manifest, out, cutter=interrupted, skip_bad=True)


def test_ray_import_refuses_a_bad_address_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = generate_books(tmp_path / "synth", books=1, characters=2, pages=1, seed=1, progress=False)
    with pytest.raises(ConfigError, match="cannot connect to the Ray cluster at '127.0.0.1:1'"):
        import_source_ray(manifest, tmp_path / "c", "127.0.0.1:1")
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c"), "--ray", "no-port"]) == 1
    error = capsys.readouterr().err.strip()
    assert "give HOST:PORT" in error and len(error.splitlines()) == 1
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c"), "--ray-workers", "2"]) == 1
    assert "--ray-workers needs --ray" in capsys.readouterr().err
    assert not (tmp_path / "c" / "instances.parquet").exists()
