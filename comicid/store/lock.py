"""One writer at a time per collection: an OS file lock on ``COLLECTION/.lock``.

Two processes that import, embed or cluster into one collection at once would each read the parts
table, change it and replace it, and the later rename would silently drop the other's rows. Every
writer therefore holds an exclusive lock for its whole read-modify-write; a second writer fails at
once with :class:`CollectionBusyError` naming the holder, rather than waiting behind a job that may
run for an hour. The lock is an ``flock`` held by an open file (via the ``filelock`` package), so the
kernel releases it when the holder exits, even on ``kill -9``: a crash never leaves a stale lock.
Within one process the lock is re-entrant (``cluster`` embeds, then writes assignments).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from comicid.errors import CollectionError

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"


class CollectionBusyError(CollectionError):
    """Another process is writing the collection."""


def _lock_for(root: Path) -> FileLock:
    # One object per path in this process (is_singleton), shared by all threads: re-entrant nesting.
    return FileLock(root / LOCK_NAME, timeout=0, blocking=False, is_singleton=True, thread_local=False)


@contextlib.contextmanager
def writer_lock(root: str | Path, command: str) -> Iterator[None]:
    """Hold the collection's writer lock for the ``with`` block; ``command`` names the holder.

    Raises:
        CollectionBusyError: another process holds the lock ("collection is busy").
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    lock = _lock_for(root)
    outermost = not lock.is_locked
    try:
        lock.acquire()
    except Timeout:
        holder = ""
        with contextlib.suppress(OSError):
            holder = (root / OWNER_NAME).read_text(encoding="utf-8").strip()
        raise CollectionBusyError(f"collection '{root}' is busy: another comicid process is writing it"
                                  f"{f' ({holder})' if holder else ''}; wait until it finishes and run "
                                  "this command again") from None
    try:
        if outermost:
            with contextlib.suppress(OSError):
                (root / OWNER_NAME).write_text(f"pid {os.getpid()}, `comicid {command}`\n", encoding="utf-8")
        yield
    finally:
        if outermost:
            with contextlib.suppress(OSError):
                (root / OWNER_NAME).unlink()
        lock.release()
