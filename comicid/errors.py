"""Exceptions a user can act on.

Every error that a user can cause (a bad manifest row, a missing file, an unknown model name) is a
subclass of :class:`ComicidError`. The CLI prints such errors as one line and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class ComicidError(Exception):
    """Base class of errors caused by input or configuration, never by a bug."""


class ManifestError(ComicidError):
    """One or more manifest rows are invalid.

    ``problems`` holds one message per bad row, e.g. ``"row 12: x1 < x0"``; rows are numbered from 1
    in data order (the CSV header is not a row), so row 12 is on line 13 of a CSV file.
    """

    MAX_SHOWN = 20

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        shown = self.problems[: self.MAX_SHOWN]
        head = f"{source}: " if source else ""
        text = "; ".join(shown)
        if len(self.problems) > len(shown):
            text += f"; ... and {len(self.problems) - len(shown)} more bad rows"
        super().__init__(head + text)


class ImageReadError(ComicidError):
    """An image is missing, corrupt or in a format that cannot be decoded."""


class CollectionError(ComicidError):
    """A collection folder is missing, incomplete, or was written by an incompatible version."""


class ModelError(ComicidError):
    """An unknown model name, or a checkpoint that does not match its architecture."""


class ConfigError(ComicidError):
    """A recipe or command option has an invalid value."""
