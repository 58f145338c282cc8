"""Reading an annotation JSON file with errors a user can act on (file, line, column)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comicid.errors import ManifestError


def load_json(path: Path, expected: type, what: str) -> Any:
    """Parse ``path`` and check its top-level type; ``what`` describes the expected content."""
    if not path.is_file():
        raise ManifestError([f"'{path}' not found"])
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ManifestError([f"'{path}' is not valid JSON (line {error.lineno}, column {error.colno}: "
                             f"{error.msg})"]) from None
    except UnicodeDecodeError as error:
        raise ManifestError([f"'{path}' is not UTF-8 text ({error.reason})"]) from None
    except RecursionError:
        raise ManifestError([f"'{path}' is nested too deeply to be an annotation file"]) from None
    if not isinstance(data, expected):
        raise ManifestError([f"'{path}' holds a JSON {type(data).__name__}, expected {what}"])
    return data
