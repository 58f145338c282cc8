"""comicid.checkpoint: the one writer and validating reader of comicid's torch files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comicid.checkpoint import read_checkpoint, write_checkpoint
from comicid.errors import ConfigError, ModelError


def test_round_trip_keeps_fields_and_tensors(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "a.pt", "comicid-test", 2, kind="plain", weight=torch.arange(3.0))
    checkpoint, data = read_checkpoint(path, {"comicid-test": 2}, "test file")
    assert checkpoint["format"] == "comicid-test" and checkpoint["version"] == 2 and checkpoint["kind"] == "plain"
    assert torch.equal(checkpoint["weight"], torch.arange(3.0)) and data == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]  # no temporary file left


def test_missing_foreign_damaged_and_newer_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="test file '.*nowhere.pt' not found"):
        read_checkpoint(tmp_path / "nowhere.pt", {"comicid-test": 1}, "test file")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="cannot read test file .*not a readable torch file"):
        read_checkpoint(tmp_path / "junk.pt", {"comicid-test": 1}, "test file", ConfigError)
    other = write_checkpoint(tmp_path / "other.pt", "comicid-other", 1)
    with pytest.raises(ModelError, match="is not a test file"):
        read_checkpoint(other, {"comicid-test": 1}, "test file")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="is not a test file"):
        read_checkpoint(tmp_path / "list.pt", {"comicid-test": 1}, "test file")
    newer = write_checkpoint(tmp_path / "newer.pt", "comicid-test", 3)
    with pytest.raises(ModelError, match="comicid-test format version 3; this comicid reads version 1"):
        read_checkpoint(newer, {"comicid-test": 1}, "test file")
