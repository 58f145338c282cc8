"""Reading the project's small YAML files (training recipes, ensemble files) with one set of errors.

A user's YAML mistake (no such file, a syntax error) must read the same whichever file it is in, and
raise :class:`~comicid.errors.ConfigError` (one line from the CLI) rather than a parser traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from comicid.errors import ConfigError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of the YAML file ``path`` (``None`` when empty); ``what`` names it in errors
    (e.g. ``"config"``, ``"ensemble file"``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} '{path}' is not valid YAML ({error})") from None
