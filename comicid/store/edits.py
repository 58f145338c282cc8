"""The edit log of a collection: every decision a person made, append-only, one file per event.

Layout::

    COLLECTION/edits/
      events/000000001.json    one event per file, named by its sequence number
      .lock                    advisory lock taken while a sequence number is chosen

An event is ``{"seq", "id", "type", "who", "when", "data"}``. Events are never rewritten or deleted:
undo and redo are events too, so the log is the full history and can be replayed from any base
assignment (see :mod:`comicid.identity.curation`) or exported as JSON lines.

Why one file per event: an append to a shared file can interleave or be torn by a crash; a file
written to a temporary name and *hard-linked* to its final name either appears whole or not at all,
and the link fails instead of overwriting when two writers pick the same number. The ``flock`` makes
that race rare; the exclusive link makes it harmless, so two processes appending at once never lose
an event (tested with two processes).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import getpass
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from comicid.errors import CollectionError
from comicid.atomic import atomic_write_text

EDITS_DIR = "edits"
#: Event types a log may hold; what each means is defined by the replay in comicid.identity.curation.
EVENT_TYPES = ("merge", "split", "move", "not_this", "name", "confirm", "add_box", "delete_box", "undo", "redo")
_DIGITS = 9


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def default_author() -> str:
    """Who an edit is attributed to when the caller does not say: the login name, else ``unknown``."""
    try:
        return getpass.getuser()
    except Exception:  # getpass raises several types when no user database entry exists
        return "unknown"


@dataclass(frozen=True)
class EditEvent:
    """One decision: ``type`` in :data:`EVENT_TYPES`, ``data`` its arguments (instance keys, ids, names)."""

    seq: int
    type: str
    data: dict[str, Any]
    who: str
    when: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any], source: str = "") -> EditEvent:
        try:
            event = cls(seq=int(record["seq"]), type=str(record["type"]), data=dict(record["data"]),
                        who=str(record["who"]), when=str(record["when"]), id=str(record["id"]))
        except (KeyError, TypeError, ValueError) as error:
            raise CollectionError(f"{source}: not an edit event ({error})") from None
        if event.type not in EVENT_TYPES:
            raise CollectionError(f"{source}: unknown edit type {event.type!r}")
        return event


class EditLog:
    """Append and read the events under ``COLLECTION/edits``. Cheap to construct; reads on demand."""

    def __init__(self, collection_root: str | Path) -> None:
        self.root = Path(collection_root) / EDITS_DIR
        self.events_dir = self.root / "events"

    def exists(self) -> bool:
        """True once any event was written (``comicid cluster`` then keeps edits by default)."""
        return self.events_dir.is_dir() and any(self._files())

    def _files(self) -> Iterator[Path]:
        if not self.events_dir.is_dir():
            return iter(())
        return (path for path in self.events_dir.iterdir()
                if path.suffix == ".json" and path.stem.isdigit() and len(path.stem) == _DIGITS)

    def stamp(self) -> tuple[int, int]:
        """A cheap token that changes whenever an event is added (count, newest sequence number)."""
        seqs = [int(path.stem) for path in self._files()]
        return len(seqs), max(seqs, default=0)

    def events(self) -> list[EditEvent]:
        """Every event in sequence order; an unreadable file is an error, never skipped silently."""
        events = []
        for path in sorted(self._files()):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise CollectionError(f"cannot read edit event '{path}': {error}") from None
            events.append(EditEvent.from_json(record, str(path)))
        return events

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.events_dir.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append(self, type: str, data: dict[str, Any], who: str | None = None) -> EditEvent:
        """Write one event with the next sequence number and return it (durable when this returns)."""
        if type not in EVENT_TYPES:
            raise CollectionError(f"unknown edit type {type!r}; one of {', '.join(EVENT_TYPES)}")
        json.dumps(data)  # refuse what cannot be stored before taking a number
        with self._locked():
            seq = self.stamp()[1] + 1
            while True:
                event = EditEvent(seq=seq, type=type, data=data, who=who or default_author(), when=_now())
                if self._publish(event):
                    return event
                seq += 1  # another writer without the lock (e.g. another host) took this number

    def _publish(self, event: EditEvent) -> bool:
        """Write ``event`` to a temporary file, fsync it, and link it to its final name if that is free."""
        final = self.events_dir / f"{event.seq:0{_DIGITS}d}.json"
        descriptor, temporary = tempfile.mkstemp(prefix=".event.", suffix=".tmp", dir=self.events_dir)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(event.to_json(), sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)
            try:
                os.link(temporary, final)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    def export(self, path: str | Path) -> Path:
        """Write every event as JSON lines (one event a line, sequence order), atomically."""
        text = "".join(json.dumps(event.to_json(), sort_keys=True) + "\n" for event in self.events())
        atomic_write_text(path, text)
        return Path(path)


def read_exported(path: str | Path) -> list[EditEvent]:
    """Events from a JSON-lines export (to replay them elsewhere or inspect them)."""
    events = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                events.append(EditEvent.from_json(json.loads(line), f"{path}: line {number}"))
            except json.JSONDecodeError as error:
                raise CollectionError(f"{path}: line {number}: {error}") from None
    return events
