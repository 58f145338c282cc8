"""`search`/`evaluate` with re-ranking, query expansion and model ensembles, on a tiny synthetic book."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comicid.cli import main

MODEL = ["--model", "tiny-cnn"]


def _search(collection: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict]:
    query = _first_instance(collection)
    capsys.readouterr()
    model = [] if "--model" in extra else MODEL
    assert main(["-q", "search", str(collection), "--instance", query, "--top", "4", "--json", *model, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _first_instance(collection: Path) -> str:
    from comicid.data.manifest import display_key
    from comicid.store.collection import Collection

    return display_key(Collection.open(collection).instances()["instance_key"].iloc[0])


def test_search_reranked_and_expanded(collection: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _search(collection, capsys)
    reranked = _search(collection, capsys, "--rerank")
    expanded = _search(collection, capsys, "--aqe", "2")
    query = _first_instance(collection)
    for hits, space in ((plain, "cosine"), (reranked, "reranked"), (expanded, "expanded")):
        assert len(hits) == 4 and query not in [hit["instance"] for hit in hits]
        assert {hit["space"] for hit in hits} == {space}
        scores = [hit["score"] for hit in hits]
        assert scores == sorted(scores, reverse=True)
    assert [hit["score"] for hit in reranked] != [hit["score"] for hit in plain]


def test_evaluate_with_rerank_reports_it(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(book), *MODEL, "--json", str(out), "--threshold", "0.3", "--rerank",
                 "--aqe", "1"]) == 0
    retrieval = json.loads(out.read_text())["retrieval"]
    assert retrieval["reranked"] is True and retrieval["aqe"] == 1
    assert 0.0 <= retrieval["mAP"] <= 1.0 and retrieval["queries"] > 0


def test_embed_search_evaluate_with_an_ensemble(book: Path, collection: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = ["--model", "tiny-cnn=2,color-hist=1"]
    capsys.readouterr()
    assert main(["embed", str(collection), *ensemble]) == 0
    out = capsys.readouterr().out
    assert "ensemble(tiny-cnn*0.6667+color-hist*0.3333)" in out
    hits = _search(collection, capsys, "--model", "tiny-cnn=2,color-hist=1")
    assert len(hits) == 4
    result = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(book), *ensemble, "--json", str(result), "--threshold", "0.3"]) == 0
    assert json.loads(result.read_text())["model"].startswith("ensemble(")
    assert main(["-q", "evaluate", str(book), "--model", "tiny-cnn,tiny-cnn"]) == 1
    assert "listed twice" in capsys.readouterr().err


def test_cluster_with_identity_mining_leaves_far_instances_unknown(collection: Path) -> None:
    import pandas as pd

    out = collection / "mined.csv"
    assert main(["-q", "cluster", str(collection), *MODEL, "--method", "mining", "--threshold", "0.05",
                 "--out", str(out)]) == 0
    tight = pd.read_csv(out, keep_default_na=False)
    assert main(["-q", "cluster", str(collection), *MODEL, "--method", "mining", "--threshold", "auto",
                 "--out", str(out)]) == 0
    calibrated = pd.read_csv(out, keep_default_na=False)
    assert (tight["identity"] == "").sum() > (calibrated["identity"] == "").sum() >= 0
    assert (tight.loc[tight["identity"] == "", "confidence"] == 0).all()
