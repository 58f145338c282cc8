"""One registry mechanism for everything swappable by name (clusterers, checkpoint kinds, ...).

Modelled on timm's ``register_model`` / ``create_model``: a module registers what it defines with a
decorator where it is defined, and callers build it by name. A registry is a ``dict`` (name -> the
registered class or factory), so ``name in REGISTRY`` and ``sorted(REGISTRY)`` work as usual; unknown
names raise the caller's :class:`~comicid.errors.ComicidError` subclass with the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from comicid.errors import ComicidError, ConfigError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Named entries of one kind; ``what`` names the kind in error messages (e.g. "clustering method")."""

    def __init__(self, what: str, error: type[ComicidError] = ConfigError) -> None:
        super().__init__()
        self.what = what
        self.error = error

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering a class or factory under ``name``; a second entry of one name is a bug."""

        def add(entry: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self[name] = entry
            return entry

        return add

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises ``error`` listing the choices."""
        if name not in self:
            raise self.error(f"unknown {self.what} {name!r}; choose one of {', '.join(sorted(self))}")
        return self[name]

    def create(self, name: str, /, **params: Any) -> Any:
        """Call the entry ``name`` with ``params``; an argument it does not take raises ``error``."""
        factory = self.lookup(name)
        try:
            return factory(**params)  # type: ignore[operator]
        except TypeError as error:  # an argument the entry does not take
            raise self.error(f"{self.what} {name!r}: {error}") from None
