"""The commands of this area through the CLI: cluster keeping edits, serve's bind rules, export, demo's last line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from comicid.cli import main
from comicid.identity.curation import Curator
from comicid.store.collection import Collection
from comicid.store.vectors import load_instance_vectors


def test_cluster_keeps_edits_by_default_once_edits_exist(toy: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    curator = Curator(toy)
    members = curator.state().members()
    a, b = sorted(members, key=lambda i: -len(members[i]))[:2]
    if a.split("/")[0] != b.split("/")[0]:  # keep the merge inside one book (book scope)
        b = next(i for i in members if i != a and i.split("/")[0] == a.split("/")[0])
    curator.merge([a, b], into=a)
    curator.name(a, "Ann")
    merged = set(curator.state().members()[a])
    assert main(["cluster", str(toy.root), "--threshold", "0.05"]) == 0  # a threshold that splits everything
    out = capsys.readouterr().out
    assert "kept edits" in out
    after = Curator(toy).state()
    assert set(after.members()[a]) == merged and after.roster[a].name == "Ann"
    keys, vectors = load_instance_vectors(toy)
    assert len(keys) == len(vectors) == toy.instances()["instance_key"].nunique()
    assert main(["-q", "cluster", str(toy.root), "--threshold", "0.05", "--no-keep-edits"]) == 0
    assert set(Curator(toy).state().members().get(a, [])) == merged  # the log still replays over it


def test_serve_refuses_a_public_bind_without_the_flag(toy: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(toy.root), "--host", "0.0.0.0"]) == 1
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["serve", str(toy.root), "--port", "0"]) == 1
    assert main(["serve", str(toy.root / "missing")]) == 1


def test_export_refuses_unknown_formats(toy: Collection, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["export", str(toy.root), "--format", "pdf", "--out", str(tmp_path / "x")])


def test_demo_ends_with_the_serve_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from comicid.cli import demo

    monkeypatch.setattr(demo, "generate_books", lambda *a, **k: tmp_path / "manifest.csv")
    monkeypatch.setattr(demo, "evaluate_manifest", lambda *a, **k: {})
    monkeypatch.setattr(demo, "format_summary", lambda result: "summary")
    monkeypatch.setattr(demo, "write_report", lambda *a, **k: tmp_path / "report.html")
    monkeypatch.setattr(demo.Collection, "open", staticmethod(lambda root: None))
    args = argparse.Namespace(out=tmp_path / "demo", books=1, characters=2, pages=1, seed=0, method="agglomerative",
                              model="default", device="cpu", precision="auto", batch_size=8, quiet=True)
    assert demo.run(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"comicid serve {tmp_path / 'demo' / 'collection'}")


def test_serve_refuses_an_unclustered_collection(toy: Collection, capsys: pytest.CaptureFixture[str]) -> None:
    toy.assignments_path.unlink()
    assert main(["serve", str(toy.root)]) == 1
    assert "comicid cluster" in capsys.readouterr().err


def test_cluster_with_a_bank(toy: Collection, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    members = Curator(toy).state().members()
    identity = max(members, key=lambda i: len(members[i]))
    toy_bank = tmp_path / "toy-bank"  # enrolled from the toy vectors: another model than `cluster` uses
    assert main(["-q", "bank", "add", "Ann", "--bank", str(toy_bank), "--from", str(toy.root), "--identity", identity]) == 0
    assert main(["cluster", str(toy.root), "--bank", str(toy_bank)]) == 1
    assert "enrol with the model" in capsys.readouterr().err
    # the same bank enrolled from the shipped model's vectors, kept by the cluster run
    assert main(["-q", "cluster", str(toy.root)]) == 0
    members = Curator(toy).state().members()
    identity = max(members, key=lambda i: len(members[i]))
    bank = tmp_path / "bank"
    assert main(["-q", "bank", "add", "Ann", "--bank", str(bank), "--from", str(toy.root), "--identity", identity]) == 0
    assert main(["cluster", str(toy.root), "--bank", str(bank)]) == 0
    assert "clusters named" in capsys.readouterr().out
    state = Curator(toy).state()
    assert set(members[identity]) <= set(state.members()["bank/Ann"]) and state.roster["bank/Ann"].name == "Ann"
