from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from comicid.cli import main
from comicid.data.manifest import read_manifest
from comicid.identity.curation import Curator
from comicid.report.exports import roster
from comicid.store.collection import Collection


def _named(toy: Collection) -> tuple[str, Curator]:
    curator = Curator(toy)
    identity = max(curator.state().members().items(), key=lambda item: len(item[1]))[0]
    curator.name(identity, "Zoë <b>", aliases=["Z"], attributes={"voice": "alto"})
    return identity, curator


def test_roster_has_names_counts_and_first_appearance(toy: Collection, tmp_path: Path) -> None:
    identity, curator = _named(toy)
    records = {r["identity_id"]: r for r in roster(toy)}
    assert records[identity]["name"] == "Zoë <b>" and records[identity]["aliases"] == ["Z"]
    assert records[identity]["instances"] == len(curator.state().members()[identity])
    assert sum(r["instances"] for r in records.values()) == sum(1 for v in curator.state().labels.values() if v)
    assert main(["-q", "export", str(toy.root), "--format", "roster-csv", "--out", str(tmp_path / "r.csv")]) == 0
    table = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert table.loc[table["identity_id"] == identity, "attributes"].item() == '{"voice": "alto"}'
    assert main(["-q", "export", str(toy.root), "--format", "roster-json", "--out", str(tmp_path / "r.json")]) == 0
    assert len(json.loads((tmp_path / "r.json").read_text())["identities"]) == len(records)


def test_labels_reimport_as_manifest_with_corrected_identities(toy: Collection, tmp_path: Path) -> None:
    identity, curator = _named(toy)
    a, b = sorted(curator.state().members(), key=lambda i: -len(curator.state().members()[i]))[:2]
    curator.merge([a, b], into=a)
    assert main(["-q", "export", str(toy.root), "--format", "labels", "--out", str(tmp_path / "labels.csv")]) == 0
    frame = read_manifest(tmp_path / "labels.csv", allow_outside=True)  # labels point at the pages where they are
    assert len(frame) == len(toy.instances())
    merged = set(curator.state().members()[a])
    keys = toy.instances()["instance_key"]
    assert set(frame.loc[keys.isin(merged).to_numpy(), "identity"]) == {a}


def test_coco_and_manga109_carry_character_ids(toy: Collection, tmp_path: Path) -> None:
    identity, _ = _named(toy)
    assert main(["-q", "export", str(toy.root), "--format", "coco", "--out", str(tmp_path / "coco.json")]) == 0
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco["annotations"]) == len(toy.instances())
    assert {"id": identity, "name": "Zoë <b>"} in coco["characters"]
    assert all(image["width"] > 0 for image in coco["images"])
    assert main(["-q", "export", str(toy.root), "--format", "manga109", "--out", str(tmp_path / "m109")]) == 0
    books = sorted((tmp_path / "m109").glob("*.xml"))
    assert [p.stem for p in books] == ["b0", "b1"]
    root = ET.parse(books[0]).getroot()
    ids = {c.get("id") for c in root.iter("character")}
    used = {box.get("character") for page in root.iter("page") for box in page if box.tag in ("face", "body")}
    assert used - {"unknown"} <= ids and root.find("pages/page").get("width") != "0"
