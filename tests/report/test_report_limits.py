"""The one-file report refuses collections beyond its documented size, naming what to use instead."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from comicid.cli import main
from comicid.report import html
from comicid.store.collection import Collection


def test_report_refuses_a_collection_above_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    collection = Collection.create(tmp_path / "c")
    collection.write_instances(pd.DataFrame({"instance_key": [f"b\x1fi{i}" for i in range(11)], "book": "b"}))
    monkeypatch.setattr(html, "REPORT_MAX_INSTANCES", 10)
    assert main(["report", str(collection.root)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "11 instances is refused above 10" in err and "comicid search" in err
