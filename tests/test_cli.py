"""The command line: every command runs on a tiny synthetic book, and user mistakes are one clear line.

Uses the `tiny-cnn` backbone so the whole file runs in seconds; what the models compute is tested
elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from comicid.cli import main

MODEL = ["--model", "tiny-cnn"]


def one_error_line(capsys: pytest.CaptureFixture[str], code: int, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert "Traceback" not in err


def test_import_embed_cluster_search(collection: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(collection), *MODEL]) == 0
    assert "instances embedded with tiny-cnn" in capsys.readouterr().out
    assert main(["-q", "cluster", str(collection), *MODEL, "--threshold", "0.3",
                 "--out", str(collection / "a.csv")]) == 0
    table = pd.read_csv(collection / "a.csv")
    assert list(table.columns) == ["instance", "identity", "confidence"]
    assert table["identity"].str.len().gt(0).all()
    first = table["instance"][0]
    assert main(["search", str(collection), "--instance", first, "--top", "3", "--json", *MODEL]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and first not in [hit["instance"] for hit in hits]
    assert {"score", "identity", "predicted"} <= set(hits[0])


def test_evaluate_writes_the_promised_json(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(book), *MODEL, "--json", str(out), "--threshold", "0.3"]) == 0
    result = json.loads(out.read_text())
    assert {"queries", "rank1", "rank5", "rank10", "mAP", "mINP", "map_at_r"} <= set(result["retrieval"])
    assert {"books", "ari", "ami", "nmi", "v_measure", "bcubed_f", "pairwise_f", "wcp", "pred_clusters",
            "true_clusters"} <= set(result["clustering"])
    assert {"embed", "cluster", "total"} <= set(result["seconds"])
    assert result["images"] > result["instances"] > 0


def test_evaluate_is_deterministic(book: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        assert main(["-q", "evaluate", str(book), *MODEL, "--json", str(tmp_path / f"{name}.json")]) == 0
        result = json.loads((tmp_path / f"{name}.json").read_text())
        result.pop("seconds")
        runs.append(result)
    assert runs[0] == runs[1]


def test_bad_inputs_are_one_clear_line(collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["import", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c")], "not found"),
        (["embed", str(tmp_path / "nothing")], "is not a comicid collection"),
        (["embed", str(collection), "--model", "no-such-model"], "no-such-model"),
        (["embed", str(collection), *MODEL, "--ray-workers", "2"], "--ray-workers needs --ray ADDRESS"),
        (["cluster", str(collection), *MODEL, "--threshold", "high"], "--threshold must be 'auto' or a number"),
        (["search", str(collection), *MODEL], "give either a query IMAGE or --instance ID"),
        (["search", str(collection), *MODEL, "--instance", "nobody"], "no instance 'nobody'"),
        (["search", str(collection), str(tmp_path / "none.png"), *MODEL], "not found"),
        (["evaluate", str(tmp_path / "none.csv"), *MODEL], "not found"),
        (["report", str(tmp_path / "nothing")], "is not a comicid collection"),
    ]
    for argv, expected in cases:
        one_error_line(capsys, main(["-q", *argv]), expected)


def test_bad_manifest_rows_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,x0,y0,x1,y1\na.png,5,0,1,9\na.png,0,0,4,4\nb.png,,,,\n")
    code = main(["import", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1 and "row 1: x1 < x0" in err and "row 3: image" in err and "Traceback" not in err


def test_skip_bad_imports_the_rest_and_reports_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"junk")
    (tmp_path / "m.csv").write_text("image,identity\na.png,x\nbad.png,y\n")
    assert main(["import", str(tmp_path / "m.csv"), "--out", str(tmp_path / "c"), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "1 skipped" in out and "skipped row 2" in out


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["cluster"])
    assert caught.value.code == 2
    assert main([]) == 2


def test_adaptive_clusters_without_a_threshold_and_keeps_its_adapters(collection: Path) -> None:
    assert main(["-q", "cluster", str(collection), *MODEL, "--method", "adaptive"]) == 0
    meta = json.loads((collection / "collection.json").read_text())
    assert meta["assignments"]["method"] == "adaptive" and meta["assignments"]["threshold"] is None
    assert sorted(path.name for path in (collection / "models" / "adapters").iterdir()) == [
        "b0.adapter.pt", "b0.centre.npy"]
    checkpoints = sorted((collection / "models" / "adaptive-state").rglob("*"))
    assert checkpoints  # stage checkpoints: a rerun on the same inputs resumes from them
    assert main(["-q", "cluster", str(collection), *MODEL, "--method", "adaptive"]) == 0
    assert sorted((collection / "models" / "adaptive-state").rglob("*")) == checkpoints


def test_search_reuses_the_adapted_metric_after_adaptive_clustering(collection: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "cluster", str(collection), *MODEL, "--method", "adaptive"]) == 0
    capsys.readouterr()
    assert main(["search", str(collection), "--instance", "b0/p000-k0-i0", "--top", "4", "--json", *MODEL]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [hit["space"] for hit in hits] == ["adapted"] * 4
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert main(["-q", "cluster", str(collection), *MODEL, "--threshold", "0.3"]) == 0
    capsys.readouterr()
    assert main(["search", str(collection), "--instance", "b0/p000-k0-i0", "--json", *MODEL]) == 0
    assert {hit["space"] for hit in json.loads(capsys.readouterr().out)} == {"cosine"}


@pytest.mark.parametrize("protocol", ["local", "global"])
def test_evaluate_scores_the_papers_protocols(book: Path, tmp_path: Path, protocol: str) -> None:
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(book), *MODEL, "--protocol", protocol, "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["protocol"]
    assert scores["name"] == protocol
    assert {"map_at_r", "precision_at_1", "mrr", "r_precision"} <= set(scores)
    assert scores["queries"] > 0 and 0.0 <= scores["map_at_r"] <= 1.0


def test_precision_picks_the_int8_graph_on_cpu_and_keeps_caches_apart(collection: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(collection)]) == 0
    assert "instances embedded with default-int8@" in capsys.readouterr().out
    assert main(["embed", str(collection), "--precision", "fp32"]) == 0
    assert "instances embedded with default@" in capsys.readouterr().out
    code = main(["embed", str(collection), "--model", "tiny-cnn", "--precision", "int8"])
    one_error_line(capsys, code, "has no int8 graph")
