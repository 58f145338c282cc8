"""comicid.atomic: a failed write leaves the old file and no temporary behind; modes and tables."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from comicid.atomic import atomic_write, atomic_write_bytes, atomic_write_text, write_table


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_write(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_writes_create_folders_and_replace_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "b.bin"
    atomic_write_bytes(path, b"\x00\x01")
    atomic_write_bytes(path, b"\x02")
    assert path.read_bytes() == b"\x02"


def test_a_new_file_gets_the_umask_mode_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        atomic_write_text(fresh, "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o640)
        atomic_write_text(kept, "y")
        assert kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_write_table_round_trips_by_suffix(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"instance": ["a", "b"], "score": [0.5, 0.25]})
    path = write_table(frame, tmp_path / name)
    back = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
