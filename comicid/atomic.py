"""Atomic writes: a reader sees the old file or the new one, never half of either.

Written to a temporary file in the destination folder (same filesystem, so the final rename is
atomic on POSIX), flushed and fsynced, then renamed over the target. An exception or an interrupt
leaves the target untouched and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _mode_for(path: Path) -> int:
    """The existing file's mode, else what ``open()`` would give under the current umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(descriptor, mode, encoding=None if binary else encoding,
                       newline=None if binary else "") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(path))  # mkstemp makes 0600; a written file should look like any other
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


PARQUET_SUFFIXES = (".parquet", ".pq")


def write_table(frame: "pd.DataFrame", path: str | Path, float_format: str = "%.10g") -> Path:
    """Write a table atomically: Parquet for ``.parquet``/``.pq``, CSV otherwise."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        with atomic_write(path, "wb") as handle:
            frame.to_parquet(handle, index=False)
    else:
        with atomic_write(path, "w") as handle:
            frame.to_csv(handle, index=False, float_format=float_format)
    return path
