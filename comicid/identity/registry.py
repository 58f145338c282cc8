"""The clustering methods, by name: each clusterer module registers its class here where it is defined
(``@CLUSTERERS.register("name")``), and callers build one with :func:`create_clusterer`."""

from __future__ import annotations

from typing import Any

from comicid.registry import Registry

#: name -> clusterer class (a scikit-learn estimator; see :mod:`comicid.identity.base`).
CLUSTERERS: Registry[type] = Registry("clustering method")


def create_clusterer(name: str, **params: Any) -> Any:
    """Build a registered clusterer by name; unknown names and arguments raise :class:`ConfigError`."""
    return CLUSTERERS.create(name, **params)
