"""Deleting and drawing boxes in the viewer: events in the edit log, written through to the parts table."""

from __future__ import annotations

from pathlib import Path

import filelock
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from comicid.data.images import load_image  # noqa: E402
from comicid.data.manifest import COLUMNS, display_key  # noqa: E402
from comicid.store.collection import Collection  # noqa: E402
from comicid.store.lock import LOCK_NAME  # noqa: E402
from comicid.store.edits import EditLog  # noqa: E402
from comicid.web.app import create_app  # noqa: E402
from comicid.web.toy import cluster_toy, embed_toy  # noqa: E402
from comicid.workflows.imports import import_source  # noqa: E402

JSON = {"Content-Type": "application/json"}


@pytest.fixture()
def client(toy: Collection) -> TestClient:
    return TestClient(create_app(toy))


def _a_box(client: TestClient) -> dict:
    first = client.get("/api/overview").json()["books"][0]["pages"][0]
    page = client.get("/api/page", params={"book": "b0", "page": first}).json()
    return {**page["boxes"][0], "book": page["book"], "page": page["page"]}


def _post(client: TestClient, kind: str, body: dict):
    return client.post(f"/api/edit/{kind}", json=body, headers=JSON)


def test_delete_box_then_undo(client: TestClient, toy: Collection) -> None:
    box = _a_box(client)
    before = len(toy.instances())
    response = _post(client, "delete_box", {"instance": box["instance"], "kind": box["kind"], "who": "ana"})
    assert response.status_code == 200, response.text
    event = response.json()["event"]
    assert event["type"] == "delete_box" and event["who"] == "ana" and event["when"]
    assert len(toy.instances()) == before - 1
    page = client.get("/api/page", params={"book": box["book"], "page": box["page"]}).json()
    assert (box["instance"], box["kind"]) not in {(b["instance"], b["kind"]) for b in page["boxes"]}
    assert _post(client, "delete_box", {"instance": box["instance"], "kind": box["kind"]}).status_code in (400, 404)
    assert _post(client, "undo", {}).status_code == 200
    assert len(toy.instances()) == before
    page = client.get("/api/page", params={"book": box["book"], "page": box["page"]}).json()
    assert (box["instance"], box["kind"]) in {(b["instance"], b["kind"]) for b in page["boxes"]}
    assert _post(client, "redo", {}).status_code == 200 and len(toy.instances()) == before - 1


def test_add_box_with_identity_then_undo(client: TestClient, toy: Collection) -> None:
    box = _a_box(client)
    identity = box["identity"]
    before = client.get("/api/identity", params={"id": identity}).json()["total"]
    response = _post(client, "add_box", {"book": box["book"], "page": box["page"], "kind": "face",
                                         "box": [2, 3, 30, 40], "identity": identity})
    assert response.status_code == 200, response.text
    added = response.json()["event"]["data"]["instance"]
    parts = toy.instances()
    row = parts[parts["instance_key"] == added]
    assert len(row) == 1 and row["origin"].iat[0] == "viewer" and row["kind"].iat[0] == "face"
    assert toy.crop_path(row["crop_hash"].iat[0]).is_file()
    assert client.get("/api/identity", params={"id": identity}).json()["total"] == before + 1
    page = client.get("/api/page", params={"book": box["book"], "page": box["page"]}).json()
    drawn = [b for b in page["boxes"] if b["box"] == [2.0, 3.0, 30.0, 40.0]]
    assert len(drawn) == 1 and drawn[0]["identity"] == identity
    assert client.get(drawn[0]["crop"]).content[:4] == b"\x89PNG"
    assert _post(client, "undo", {}).status_code == 200
    assert added not in set(toy.instances()["instance_key"])
    assert client.get("/api/identity", params={"id": identity}).json()["total"] == before


def test_bad_boxes_are_refused(client: TestClient, toy: Collection) -> None:
    box = _a_box(client)
    width, height = load_image(toy.instances()["image"].iat[0]).size
    where = {"book": box["book"], "page": box["page"], "kind": "body"}
    bad = [
        {**where, "box": [-5, 0, 20, 20]}, {**where, "box": [0, 0, width + 1, 20]},
        {**where, "box": [10, 10, 5, 20]}, {**where, "box": [0, 0, 2, 2]}, {**where, "box": [0, 0, 10]},
        {**where, "box": ["0", 0, 10, 10]}, {**where, "box": [0, 0, 10, 10], "kind": "hat"},
        {**where, "box": [0, 0, 10, 10], "page": "../../etc"}, {**where, "box": [0, 0, 10, 10], "identity": "nobody"},
        {**where, "box": [0, 0, 10, 10], "book": "<script>"}, {**where, "box": [0, 0, height * 10, 10]},
    ]
    count = len(toy.instances())
    for body in bad:
        response = _post(client, "add_box", body)
        assert 400 <= response.status_code < 500, body
        assert response.json()["error"], body
    assert _post(client, "delete_box", {"instance": "b0/<img src=x>", "kind": "face"}).status_code == 404
    assert len(toy.instances()) == count and not EditLog(toy.root).exists()


def test_recluster_reflects_box_edits(client: TestClient, toy: Collection) -> None:
    parts = toy.instances()
    sizes = parts.groupby("instance_key")["kind"].transform("size")
    single = parts[sizes == 1].iloc[0]  # deleting its only part removes the instance
    double = parts[sizes == 2].iloc[0]  # deleting one part keeps the instance with the other
    for row in (single, double):
        response = _post(client, "delete_box", {"instance": display_key(row["instance_key"]), "kind": row["kind"]})
        assert response.status_code == 200, response.text
    added = _post(client, "add_box", {"book": single["book"], "page": single["page"], "kind": "body",
                                      "box": [1, 1, 20, 20]}).json()["event"]["data"]["instance"]
    cluster_toy(toy, embed_toy(toy))
    keys = set(toy.assignments()["instance_key"])
    assert added in keys and single["instance_key"] not in keys and double["instance_key"] in keys
    stored = toy.instances()
    left = set(stored.loc[stored["instance_key"] == double["instance_key"], "kind"])
    assert left == {"face", "body"} - {double["kind"]}
    fresh = TestClient(create_app(toy))  # a new server replays the same log over the new assignment
    boxes = fresh.get("/api/page", params={"book": single["book"], "page": single["page"]}).json()["boxes"]
    shown = {b["instance"] for b in boxes}
    assert display_key(added) in shown and display_key(single["instance_key"]) not in shown


def test_reimport_keeps_a_deleted_box_deleted(client: TestClient, toy: Collection, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    toy.instances()[list(COLUMNS)].to_csv(manifest, index=False)
    row = toy.instances().iloc[0]
    assert _post(client, "delete_box", {"instance": display_key(row["instance_key"]),
                                        "kind": row["kind"]}).status_code == 200
    result = import_source(manifest, toy, allow_outside=True)
    assert result.report.added >= 1  # the source still lists the deleted part ...
    stored = toy.instances()
    # ... and it stays deleted
    assert not ((stored["instance_key"] == row["instance_key"]) & (stored["kind"] == row["kind"])).any()
    assert _post(client, "undo", {}).status_code == 200
    stored = toy.instances()
    assert ((stored["instance_key"] == row["instance_key"]) & (stored["kind"] == row["kind"])).sum() == 1


def test_box_edit_on_a_busy_collection_is_refused_and_not_logged(client: TestClient, toy: Collection) -> None:
    box = _a_box(client)
    with filelock.FileLock(toy.root / LOCK_NAME, timeout=0):  # another process's lock (not re-entrant here)
        response = _post(client, "delete_box", {"instance": box["instance"], "kind": box["kind"]})
    assert response.status_code == 400 and "busy" in response.json()["error"]
    assert not EditLog(toy.root).exists()
