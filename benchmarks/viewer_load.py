"""Load test of the viewer on loopback: p50/p95 latency per endpoint on a 100,000-instance collection.

The collection repeats a drawn toy collection (:func:`comicid.web.toy.scaled_collection`) to the
requested size, with synthetic embeddings, so the tables, the assignment (about 19,000 identities at
100,000 instances), the vectors and the edit log are full size. `comicid serve`'s app runs under uvicorn
in this process on 127.0.0.1; one client sends a bounded number of requests (``--requests`` per
endpoint, stopping early after ``--seconds``) to random books, pages, identities and instances, after
a few edits so the edit replay is part of the state. Timings are wall-clock on a shared 2-core machine.

Run: ``.venv/bin/python benchmarks/viewer_load.py`` (writes the ``viewer-load`` section of
docs/BENCHMARKS.md; about 2 minutes).
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn


from common import write_section
from comicid.web.toy import scaled_collection, toy_collection
from comicid.web.app import create_app


def serve(app: object) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def run(instances: int, requests: int, seconds: float, seed: int) -> str:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="comicid-load-") as scratch:
        started = time.perf_counter()
        source = toy_collection(Path(scratch) / "toy", books=2, characters=8, pages=3, page_size=(600, 820))
        collection = scaled_collection(source, Path(scratch) / "big", instances=instances, seed=seed)
        build = time.perf_counter() - started
        started = time.perf_counter()
        app = create_app(collection)
        startup = time.perf_counter() - started
        server, base = serve(app)
        client = httpx.Client(base_url=base, timeout=60)
        overview = client.get("/api/overview").json()
        books = overview["books"]
        ids = [item["id"] for item in client.get("/api/identities", params={"limit": 500}).json()["items"]]
        keys = [item["key"] for item in client.get("/api/instances", params={"limit": 500,
                                                                            "offset": instances // 2}).json()["items"]]
        for index in range(5):  # a few edits, so every read replays a log
            client.post("/api/edit/name", json={"identity": ids[index], "name": f"Name {index}"})
        edit_seconds = time.perf_counter()
        client.post("/api/edit/merge", json={"identities": ids[10:12]})  # answers with the new overview
        edit_seconds = time.perf_counter() - edit_seconds

        def pick_page() -> dict[str, str]:
            book = rng.choice(books)
            return {"book": book["book"], "page": rng.choice(book["pages"])}

        endpoints = {
            "page (boxes of one page)": ("/api/page", pick_page),
            "gallery (60 identities, random offset)": (
                "/api/identities", lambda: {"offset": rng.randrange(0, overview["identities"] - 60), "limit": 60}),
            "gallery of one book": ("/api/identities", lambda: {"book": rng.choice(books)["book"], "limit": 60}),
            "identity members (60)": ("/api/identity", lambda: {"id": rng.choice(ids), "limit": 60}),
            "instances filtered (low confidence)": ("/api/instances", lambda: {"max_confidence": 0.95,
                                                                              "offset": rng.randrange(0, 5000)}),
            "instance detail": ("/api/instance", lambda: {"key": rng.choice(keys)}),
            "nearest 12 (exact search)": ("/api/similar", lambda: {"key": rng.choice(keys), "k": 12}),
            "name search": ("/api/identities", lambda: {"q": f"Name {rng.randrange(5)}"}),
        }
        rows = []
        for name, (path, params) in endpoints.items():
            timings, deadline = [], time.perf_counter() + seconds
            for _ in range(requests):
                start = time.perf_counter()
                response = client.get(path, params=params())
                timings.append(time.perf_counter() - start)
                response.raise_for_status()
                if time.perf_counter() > deadline:
                    break
            ms = np.array(timings) * 1000
            rows.append(f"| {name} | `{path}` | {len(ms)} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 95):.1f} |")
        client.close()
        server.should_exit = True
    header = (f"{instances:,} instances, {overview['identities']:,} identities, {len(books):,} books; built in "
              f"{build:.0f} s, app start-up (index tables) {startup:.1f} s, one merge (write the event, replay the "
              f"log over the assignment, recount identities) {edit_seconds * 1000:.0f} ms. Sequential requests from one client on "
              f"127.0.0.1, at most {requests} per endpoint or {seconds:.0f} s; contended 2-core machine.")
    return "\n".join([header, "", "| endpoint | path | requests | p50 ms | p95 ms |", "|---|---|---|---|---|", *rows,
                      "", "Command: `.venv/bin/python benchmarks/viewer_load.py`"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    body = "## Viewer load test (loopback)\n\n" + run(args.instances, args.requests, args.seconds, args.seed)
    print(body)
    if not args.no_write:
        write_section("viewer-load", body)


if __name__ == "__main__":
    main()
