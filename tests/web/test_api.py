"""Every endpoint of the viewer, with the attacks a local server must withstand."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from comicid.cli.serve import check_bind  # noqa: E402
from comicid.errors import ConfigError  # noqa: E402
from comicid.store.collection import Collection  # noqa: E402
from comicid.web.app import MAX_BODY, create_app  # noqa: E402


@pytest.fixture()
def client(toy: Collection) -> TestClient:
    return TestClient(create_app(toy))


def _largest(client: TestClient, count: int = 2, book: str = "b0") -> list[str]:
    items = client.get("/api/identities", params={"book": book}).json()["items"]
    return [item["id"] for item in items[:count]]


def test_front_end_and_security_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<script src=\"/static/app.js\"" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_reads_overview_identities_instances_pages(client: TestClient, toy: Collection) -> None:
    overview = client.get("/api/overview").json()
    assert overview["instances"] == toy.instances()["instance_key"].nunique()
    assert [b["book"] for b in overview["books"]] == ["b0", "b1"] and overview["search"] is True
    listing = client.get("/api/identities", params={"limit": 3}).json()
    assert listing["total"] == overview["identities"] and len(listing["items"]) == 3
    counts = [item["count"] for item in listing["items"]]
    assert counts == sorted(counts, reverse=True)
    second = client.get("/api/identities", params={"limit": 3, "offset": 3}).json()["items"]
    assert not {i["id"] for i in second} & {i["id"] for i in listing["items"]}
    assert all("b1" in i["books"] for i in client.get("/api/identities", params={"book": "b1"}).json()["items"])
    ident = listing["items"][0]
    members = client.get("/api/identity", params={"id": ident["id"], "limit": 500}).json()
    assert members["total"] == ident["count"] == len(members["items"])
    key = members["items"][0]["key"]
    detail = client.get("/api/instance", params={"key": key}).json()
    assert detail["identity"] == ident["id"] and detail["parts"] and 0 <= detail["confidence"] <= 1
    similar = client.get("/api/similar", params={"key": key, "k": 5}).json()["items"]
    assert len(similar) == 5 and key not in [s["key"] for s in similar]
    assert [s["score"] for s in similar] == sorted((s["score"] for s in similar), reverse=True)
    crop = client.get(detail["parts"][next(iter(detail["parts"]))])
    assert crop.status_code == 200 and crop.content[:4] == b"\x89PNG"
    page = client.get("/api/page", params={"book": detail["book"], "page": detail["page"]}).json()
    assert key in {box["instance"] for box in page["boxes"]} and page["next"] or page["previous"]
    image = client.get(page["image"])
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    unknown = client.get("/api/instances", params={"unknown": "true"}).json()
    assert unknown["total"] == overview["unknown"]
    low = client.get("/api/instances", params={"max_confidence": 0.99}).json()["items"]
    assert all(client.get("/api/instance", params={"key": i["key"]}).json()["confidence"] < 0.99 for i in low[:5])
    assert client.get("/api/roster").status_code == 200


def test_edits_through_the_api_and_the_log(client: TestClient) -> None:
    a, b = _largest(client)
    merged = client.post("/api/edit/merge", json={"identities": [a, b], "who": "tester"})
    assert merged.status_code == 200 and merged.json()["event"]["who"] == "tester"
    members = client.get("/api/identity", params={"id": a, "limit": 500}).json()["items"]
    assert client.get("/api/identity", params={"id": b}).status_code == 404
    keys = [m["key"] for m in members]
    split = client.post("/api/edit/split", json={"identity": a, "instances": keys[:1]}).json()
    new_id = split["event"]["data"]["into"]
    assert client.get("/api/instance", params={"key": keys[0]}).json()["identity"] == new_id
    assert client.post("/api/edit/move", json={"instances": [keys[0]], "target": a}).status_code == 200
    assert client.post("/api/edit/not_this", json={"instances": [keys[1]], "identity": a}).status_code == 200
    assert client.get("/api/instance", params={"key": keys[1]}).json()["identity"] == ""
    assert client.post("/api/edit/confirm", json={"identity": a}).status_code == 200
    assert client.post("/api/edit/name", json={"identity": a, "name": "Ann", "aliases": ["A"],
                                               "attributes": {"gender": "f"}}).status_code == 200
    assert client.get("/api/identity", params={"id": a}).json()["name"] == "Ann"
    assert client.post("/api/edit/undo", json={}).status_code == 200
    assert client.get("/api/identity", params={"id": a}).json()["name"] == ""
    assert client.post("/api/edit/redo", json={}).status_code == 200
    assert client.get("/api/identity", params={"id": a}).json()["name"] == "Ann"
    for query in ("ann", "A", a):  # name, alias, id
        assert a in [i["id"] for i in client.get("/api/identities", params={"q": query}).json()["items"]]
    assert client.get("/api/identities", params={"q": "zzz-nobody"}).json()["total"] == 0
    log = client.get("/api/edits").json()
    assert log["total"] == 8 and log["items"][0]["type"] == "redo"
    assert client.post("/api/edit/merge", json={"identities": [a]}).status_code == 400
    assert client.post("/api/edit/split", json={"identity": a, "instances": ["no/such"]}).status_code == 404
    assert client.post("/api/edit/explode", json={}).status_code == 404


def test_html_in_names_is_data_never_markup(client: TestClient) -> None:
    (a,) = _largest(client, 1)
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    assert client.post("/api/edit/name", json={"identity": a, "name": evil}).status_code == 200
    assert client.get("/api/identity", params={"id": a}).json()["name"] == evil  # stored verbatim, as JSON text
    assert evil not in client.get("/").text  # never rendered server-side
    assert "textContent" in client.get("/static/app.js").text and ".innerHTML" not in client.get("/static/app.js").text
    control = client.post("/api/edit/name", json={"identity": a, "name": "bad\x00name"})
    assert control.status_code == 400


@pytest.mark.parametrize("path", [
    "/crops/../collection.json", "/crops/..%2f..%2fcollection.json", "/crops/%2e%2e%2fcollection.json",
    "/crops/" + "0" * 64 + ".png", "/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/data.py",
    "/page-image?book=../..&page=etc/passwd", "/page-image?book=b0&page=../../collection.json",
    "/page-image?book=/etc&page=passwd",
])
def test_path_traversal_is_refused(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert b"comicid-collection" not in response.content and b"root:" not in response.content


def test_oversized_and_non_json_bodies_are_refused(client: TestClient) -> None:
    big = b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}'
    response = client.post("/api/edit/name", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the stream itself is cut off
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024

    assert client.post("/api/edit/name", content=chunks(), headers={"Content-Type": "application/json"}).status_code == 413
    form = client.post("/api/edit/undo", data={"a": "b"})
    assert form.status_code == 415
    assert client.post("/api/edit/name", content=b"[1]", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.get("/api/identities", params={"limit": 100000}).status_code == 422


def test_token_and_host_checks(toy: Collection) -> None:
    secured = TestClient(create_app(toy, token="s3cret-token-0123456789"))
    assert secured.get("/api/overview").status_code == 401
    assert secured.get("/api/overview", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert secured.get("/api/overview", headers={"Authorization": "Bearer s3cret-token-0123456789"}).status_code == 200
    first = secured.get("/", params={"token": "s3cret-token-0123456789"})
    assert first.status_code == 200 and "httponly" in first.headers["set-cookie"].lower()
    assert secured.get("/api/overview").status_code == 200  # the cookie now carries it
    local = TestClient(create_app(toy))
    assert local.get("/api/overview", headers={"Host": "evil.example"}).status_code == 400


def test_binding_rules() -> None:
    assert check_bind("127.0.0.1", False, None) is None
    assert check_bind("::1", False, None) is None
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_bind("0.0.0.0", False, None)
    assert len(check_bind("0.0.0.0", True, None)) >= 16
    with pytest.raises(ConfigError, match="at least 16"):
        check_bind("192.168.1.5", True, "short")


def test_two_tabs_editing_at_once_lose_nothing(toy: Collection) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(toy)
    first = TestClient(app)
    ids = _largest(first, 2)

    def tab(number: int) -> list[int]:
        client = TestClient(create_app(toy))  # a second app object, as a second server process would be
        return [client.post("/api/edit/name", json={"identity": ids[number], "name": f"tab{number}-{i}"}).status_code
                for i in range(10)]

    with ThreadPoolExecutor(2) as pool:
        codes = [code for result in pool.map(tab, [0, 1]) for code in result]
    assert codes == [200] * 20
    log = first.get("/api/edits", params={"limit": 100}).json()
    assert log["total"] == 20 and sorted(e["seq"] for e in log["items"]) == list(range(1, 21))
    assert first.get("/api/identity", params={"id": ids[0]}).json()["name"] == "tab0-9"
    assert first.get("/api/identity", params={"id": ids[1]}).json()["name"] == "tab1-9"
