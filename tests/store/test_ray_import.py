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
def test_ray_import_equals_single_machine_import_and_resumes(tmp_path: Path) -> None:
    manifest = generate_books(tmp_path / "synth", books=1, characters=4, pages=3, seed=3, progress=False)
    single, distributed = tmp_path / "single", tmp_path / "ray"
    assert main(["-q", "import", str(manifest), "--out", str(single)]) == 0
    # A cluster of its own, started and stopped by the command, on 127.0.0.1 with two 1-CPU workers.
    assert main(["-q", "import", str(manifest), "--out", str(distributed), "--ray", "local", "--ray-workers", "2"]) == 0
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
        assert {f"crops/{key[:2]}/{key}.png" for key in journal[0]["cut"]["hashes"]} <= set(_crops(resumed))
        result = import_source_ray(manifest, resumed, "local", workers=2)
    pages = one["image"].nunique()
    assert pages == 3 and result.ray == {"pages_resumed": 1, "pages_cut": pages - 1}
    pd.testing.assert_frame_equal(Collection.open(resumed).instances(), one)
    assert _crops(resumed) == _crops(single) and not (resumed / JOURNAL).exists()


def import_source_ray_interrupted(manifest: Path, out: Path, cutter: RayCutter, after_pages: int) -> None:
    """Run an import whose driver is interrupted (Ctrl-C) after ``after_pages`` pages came back."""
    from comicid.workflows.imports import import_source

    def interrupted(jobs, collection, progress):  # type: ignore[no-untyped-def]
        for number, cut in enumerate(cutter(jobs, collection, progress), start=1):
            yield cut
            if number >= after_pages:
                raise KeyboardInterrupt

    import_source(manifest, out, cutter=interrupted)


def test_ray_import_refuses_a_bad_address_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = generate_books(tmp_path / "synth", books=1, characters=2, pages=1, seed=1, progress=False)
    with pytest.raises(ConfigError, match="cannot connect to the Ray cluster at '127.0.0.1:1'"):
        import_source_ray(manifest, tmp_path / "c", "127.0.0.1:1")
    assert main(["-q", "import", str(manifest), "--out", str(tmp_path / "c"), "--ray", "no-port"]) == 1
    error = capsys.readouterr().err.strip()
    assert "give HOST:PORT" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "c" / "instances.parquet").exists()
