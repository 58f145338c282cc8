from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from comicid.errors import CollectionError
from comicid.store.edits import EditLog, read_exported


def _append_many(root: str, writer: int, count: int) -> None:
    log = EditLog(root)
    for index in range(count):
        log.append("name", {"identity": f"w{writer}", "name": f"n{index}"}, who=f"writer{writer}")


def test_append_numbers_events_and_records_who_and_when(tmp_path: Path) -> None:
    log = EditLog(tmp_path)
    assert not log.exists()
    first = log.append("name", {"identity": "a", "name": "Ann"}, who="ed")
    second = log.append("not_this", {"instance": "k", "identity": "a"})
    assert (first.seq, second.seq) == (1, 2)
    assert first.who == "ed" and second.who and first.when.endswith("+00:00")
    assert [event.type for event in log.events()] == ["name", "not_this"]
    assert log.exists()


def test_two_processes_appending_at_once_lose_no_event(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    events = EditLog(tmp_path).events()
    assert len(events) == 80
    assert [event.seq for event in events] == list(range(1, 81))
    for writer in range(2):  # each writer's own events stay in its order
        names = [e.data["name"] for e in events if e.who == f"writer{writer}"]
        assert names == [f"n{i}" for i in range(40)]


def test_a_taken_number_is_never_overwritten(tmp_path: Path) -> None:
    log = EditLog(tmp_path)
    log.append("name", {"identity": "a", "name": "Ann"})
    # a writer that did not see the lock (stale count) must not replace event 1
    assert not log._publish(log.events()[0].__class__(seq=1, type="name", data={"identity": "b"}, who="x", when="t"))
    assert log.events()[0].data["identity"] == "a"


def test_export_round_trips_and_unknown_types_are_refused(tmp_path: Path) -> None:
    log = EditLog(tmp_path / "c")
    log.append("merge", {"into": "a", "sources": ["b"], "instances": ["k1", "k2"]})
    exported = read_exported(log.export(tmp_path / "edits.jsonl"))
    assert [e.to_json() for e in exported] == [e.to_json() for e in log.events()]
    with pytest.raises(CollectionError, match="unknown edit type"):
        log.append("delete_everything", {})


def test_a_corrupt_event_file_is_an_error_not_a_skip(tmp_path: Path) -> None:
    log = EditLog(tmp_path)
    log.append("name", {"identity": "a", "name": "Ann"})
    (log.events_dir / "000000002.json").write_text("{not json")
    with pytest.raises(CollectionError, match="000000002"):
        log.events()
    assert json.loads((log.events_dir / "000000001.json").read_text())["seq"] == 1
