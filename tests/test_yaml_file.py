"""One reader for the project's YAML files: the same clear errors for a recipe and an ensemble file."""

from __future__ import annotations

from pathlib import Path

import pytest

from comicid.errors import ConfigError
from comicid.models.ensemble import parse_ensemble
from comicid.training.config import SSLConfig, load_config
from comicid.yaml_file import read_yaml


def test_reads_a_mapping_and_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("members:\n  - {model: x, weight: 2}\n", encoding="utf-8")
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    assert read_yaml(tmp_path / "a.yaml", "file") == {"members": [{"model": "x", "weight": 2}]}
    assert read_yaml(tmp_path / "empty.yaml", "file") is None


def test_recipe_and_ensemble_file_share_their_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("members: [oops\n", encoding="utf-8")
    missing = tmp_path / "missing.yaml"
    for call, what in ((lambda p: load_config(p, SSLConfig), "config"), (parse_ensemble, "ensemble file")):
        with pytest.raises(ConfigError, match=f"^{what} '.*broken.yaml' is not valid YAML"):
            call(broken)
        with pytest.raises(ConfigError, match=f"^{what} '.*missing.yaml' not found$"):
            call(missing)
