"""What people decided about identities: the replay of the edit log over a machine assignment.

Each event carries the instance keys it touched at the time it was made, so replaying the log gives
the same decisions over any base assignment (the one it was made on, or a later re-clustering).
Meaning of each event (``data`` fields):

* ``merge`` {into, sources, instances}: all ``instances`` (members of ``into`` and ``sources``) are
  confirmed as ``into``; names of the sources become aliases of ``into``.
* ``split`` {source, into, instances}: ``instances`` leave ``source`` for the new identity ``into``,
  are confirmed there and are "not ``source``".
* ``move`` {instances, sources, target}: the instances are confirmed as ``target`` and are "not" their
  ``sources`` (aligned with ``instances``).
* ``not_this`` {instances, identities}: cannot-links (aligned lists); an instance becomes unknown if it
  was in the identity it is rejected from.
* ``confirm`` {identity, instances}: the instances are confirmed as that identity.
* ``name`` {identity, name?, aliases?, attributes?}: the roster entry (given fields replace old ones).
* ``add_box`` {instance, kind, row, identity} / ``delete_box`` {instance, kind, row}: a part drawn or
  removed by a person (:mod:`comicid.identity.boxes` writes them into the parts table); an added
  box is a new instance, confirmed as ``identity`` when one is given, else unknown.
* ``undo`` {target} / ``redo`` {target}: switch an earlier edit off / on again.

Confirmed instances become must-links and "not this" become cannot-links when re-clustering
(:mod:`comicid.workflows.persist`).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from comicid.errors import ConfigError
from comicid.store.collection import Collection
from comicid.store.edits import EditEvent, EditLog

EDIT_TYPES = ("merge", "split", "move", "not_this", "name", "confirm", "add_box", "delete_box")
MAX_TEXT = 200
MAX_ATTRIBUTES = 50
UNKNOWN = ""


class EditError(ConfigError):
    """An edit that cannot be applied: an unknown identity or instance, a bad name, nothing to undo."""


@dataclass
class Roster:
    """What a person said about one identity."""

    name: str = ""
    aliases: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class EditState:
    """The current view: machine labels with every active edit applied.

    Attributes:
        labels: instance key -> identity id ("" = unknown).
        confirmed: instance key -> identity id a person placed it in (must-links).
        cannot: (instance key, identity id) pairs a person said are wrong (cannot-links).
        roster: identity id -> names, aliases, attributes.
        mentioned: every identity id any event named (never reused for a new identity).
        undo_target / redo_target: the edit an undo / redo would switch (None = nothing to do).
        active: sequence numbers of edits currently in force.
    """

    labels: dict[str, str]
    confirmed: dict[str, str] = field(default_factory=dict)
    cannot: set[tuple[str, str]] = field(default_factory=set)
    roster: dict[str, Roster] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)
    undo_target: int | None = None
    redo_target: int | None = None
    active: list[int] = field(default_factory=list)
    _members: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def members(self) -> dict[str, list[str]]:
        """Identity id -> member instance keys (computed once: a state is not changed after replay)."""
        if self._members is None:
            groups: dict[str, list[str]] = defaultdict(list)
            for key, identity in self.labels.items():
                if identity:
                    groups[identity].append(key)
            self._members = dict(groups)
        return self._members

    def confirmed_groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for key, identity in self.confirmed.items():
            groups[identity].append(key)
        return dict(groups)


def active_edits(events: list[EditEvent]) -> tuple[list[EditEvent], int | None, int | None]:
    """The edits in force after undo/redo, the edit an undo would switch off, the one a redo would restore.

    Undo switches off the newest edit in force; redo restores the newest undone one, as long as no new
    edit was made since (a new edit clears the redo stack, as in every editor).
    """
    edits = {event.seq: event for event in events if event.type in EDIT_TYPES}
    active: set[int] = set()
    redo_stack: list[int] = []
    for event in events:
        if event.type in EDIT_TYPES:
            active.add(event.seq)
            redo_stack.clear()
        elif event.type == "undo" and int(event.data.get("target", -1)) in active:
            active.discard(int(event.data["target"]))
            redo_stack.append(int(event.data["target"]))
        elif event.type == "redo" and redo_stack and int(event.data.get("target", -1)) == redo_stack[-1]:
            active.add(redo_stack.pop())
    ordered = [edits[seq] for seq in sorted(active)]
    return ordered, (ordered[-1].seq if ordered else None), (redo_stack[-1] if redo_stack else None)


def replay(events: list[EditEvent], base: dict[str, str]) -> EditState:
    """Apply the active edits of ``events`` in order over ``base`` (instance key -> identity id)."""
    ordered, undo_target, redo_target = active_edits(events)
    state = EditState(labels=dict(base), undo_target=undo_target, redo_target=redo_target,
                      active=[event.seq for event in ordered])

    def place(key: str, identity: str) -> None:
        state.labels[key] = identity
        state.confirmed[key] = identity
        state.cannot.discard((key, identity))

    def reject(key: str, identity: str) -> None:
        state.cannot.add((key, identity))
        if state.labels.get(key) == identity:
            state.labels[key] = UNKNOWN
        if state.confirmed.get(key) == identity:
            del state.confirmed[key]

    for event in ordered:
        data = event.data
        state.mentioned.update(str(value) for name in ("into", "source", "target", "identity")
                               if (value := data.get(name)))
        state.mentioned.update(str(value) for name in ("sources", "identities") for value in data.get(name, [])
                               if value)
        if event.type == "merge":
            into = str(data["into"])
            for key in data["instances"]:
                place(str(key), into)
            entry = state.roster.setdefault(into, Roster())
            for source in data.get("sources", []):
                old = state.roster.pop(str(source), None)
                if old is not None:
                    for alias in [old.name, *old.aliases]:
                        if alias and alias != entry.name and alias not in entry.aliases:
                            entry.aliases.append(alias)
                    entry.attributes = {**old.attributes, **entry.attributes}
                    if not entry.name:
                        entry.name = old.name
                        entry.aliases = [alias for alias in entry.aliases if alias != old.name]
        elif event.type == "split":
            for key in data["instances"]:
                place(str(key), str(data["into"]))
                state.cannot.add((str(key), str(data["source"])))
        elif event.type == "move":
            for key, source in zip(data["instances"], data["sources"]):
                place(str(key), str(data["target"]))
                if source and source != data["target"]:
                    state.cannot.add((str(key), str(source)))
        elif event.type == "not_this":
            for key, identity in zip(data["instances"], data["identities"]):
                reject(str(key), str(identity))
        elif event.type == "add_box":
            if data.get("identity"):
                place(str(data["instance"]), str(data["identity"]))
            else:
                state.labels.setdefault(str(data["instance"]), UNKNOWN)
        elif event.type == "confirm":
            for key in data["instances"]:
                place(str(key), str(data["identity"]))
        elif event.type == "name":
            entry = state.roster.setdefault(str(data["identity"]), Roster())
            if "name" in data:
                entry.name = str(data["name"])
            if "aliases" in data:
                entry.aliases = [str(alias) for alias in data["aliases"]]
            if "attributes" in data:
                entry.attributes = {str(k): str(v) for k, v in dict(data["attributes"]).items()}
    return state


def clean_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise EditError(f"{what} must be text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise EditError(f"{what} is longer than {MAX_TEXT} characters")
    if any(ord(char) < 32 for char in text):
        raise EditError(f"{what} must not contain control characters")
    return text


def new_identity_id(source: str) -> str:
    """A fresh id in the scope of ``source`` (``book/c0003`` -> ``book/e<hex>``); never clashes with
    clusterer ids, which are ``c<number>``."""
    prefix = source.rsplit("/", 1)[0] + "/" if "/" in source else ""
    return f"{prefix}e{uuid.uuid4().hex[:8]}"


class Curator:
    """Validated edits of one collection's identities, written to its edit log.

    The web app and the CLI call this; a notebook can too. The current view is recomputed only when
    the log or the assignment changed, so reads are cheap between edits.
    """

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.log = EditLog(collection.root)
        self._cache: tuple[Any, EditState] | None = None

    def base(self) -> dict[str, str]:
        table = self.collection.assignments()
        return dict(zip(table["instance_key"].astype(str).tolist(), table["identity_id"].astype(str).tolist()))

    def state(self) -> EditState:
        path = self.collection.assignments_path
        token = (self.log.stamp(), path.stat().st_mtime_ns if path.is_file() else 0)
        if self._cache is None or self._cache[0] != token:
            state = replay(self.log.events(), self.base())
            machine = (self.collection.meta().get("assignments") or {}).get("names") or {}
            for identity, name in machine.items():  # names from a character bank; a person's name wins
                entry = state.roster.setdefault(str(identity), Roster())
                entry.name = entry.name or str(name)
            self._cache = (token, state)
        return self._cache[1]

    def labels_frame(self) -> pd.DataFrame:
        """The current assignment as a table: instance_key, identity_id, confirmed."""
        state = self.state()
        keys = list(state.labels)
        return pd.DataFrame({"instance_key": keys, "identity_id": [state.labels[key] for key in keys],
                             "confirmed": [key in state.confirmed for key in keys]})

    # -- checks ---------------------------------------------------------------------------------
    def _identity(self, state: EditState, identity: object) -> str:
        identity = clean_text(identity, "identity id")
        if not identity or (identity not in state.members() and identity not in state.roster):
            raise EditError(f"no identity {identity!r}")
        return identity

    def _instances(self, state: EditState, keys: object) -> list[str]:
        if not isinstance(keys, list | tuple) or not keys:
            raise EditError("give at least one instance")
        unknown = [key for key in keys if not isinstance(key, str) or key not in state.labels]
        if unknown:
            raise EditError(f"no instance {unknown[0]!r}")
        return list(dict.fromkeys(keys))

    # -- edits ----------------------------------------------------------------------------------
    def merge(self, identities: list[str], into: str | None = None, who: str | None = None) -> EditEvent:
        state = self.state()
        ids = list(dict.fromkeys(self._identity(state, identity) for identity in identities))
        if len(ids) < 2:
            raise EditError("merging needs two different identities")
        into = self._identity(state, into) if into is not None else ids[0]
        if into not in ids:
            raise EditError(f"merge target {into!r} is not one of the merged identities")
        members = state.members()
        instances = [key for identity in ids for key in members.get(identity, [])]
        return self.log.append("merge", {"into": into, "sources": [i for i in ids if i != into],
                                         "instances": instances}, who)

    def split(self, identity: str, instances: list[str], who: str | None = None) -> EditEvent:
        state = self.state()
        identity = self._identity(state, identity)
        keys = self._instances(state, instances)
        outside = [key for key in keys if state.labels[key] != identity]
        if outside:
            raise EditError(f"instance {outside[0]!r} is not in identity {identity!r}")
        return self.log.append("split", {"source": identity, "into": new_identity_id(identity),
                                         "instances": keys}, who)

    def move(self, instances: str | list[str], target: str, who: str | None = None) -> EditEvent:
        """Move one or more instances to ``target`` (one event, so one undo)."""
        state = self.state()
        keys = self._instances(state, [instances] if isinstance(instances, str) else instances)
        target = self._identity(state, target)
        return self.log.append("move", {"instances": keys, "sources": [state.labels[key] for key in keys],
                                        "target": target}, who)

    def not_this(self, instances: str | list[str], identity: str | None = None, who: str | None = None) -> EditEvent:
        """Say the instances are not ``identity`` (default: each one's current identity); one event."""
        state = self.state()
        keys = self._instances(state, [instances] if isinstance(instances, str) else instances)
        identities = [self._identity(state, identity if identity is not None else state.labels[key]) for key in keys]
        return self.log.append("not_this", {"instances": keys, "identities": identities}, who)

    def confirm(self, identity: str, instances: list[str] | None = None, who: str | None = None) -> EditEvent:
        state = self.state()
        identity = self._identity(state, identity)
        keys = self._instances(state, instances) if instances else state.members().get(identity, [])
        return self.log.append("confirm", {"identity": identity, "instances": keys}, who)

    def name(self, identity: str, name: str | None = None, aliases: list[str] | None = None,
             attributes: dict[str, str] | None = None, who: str | None = None) -> EditEvent:
        state = self.state()
        data: dict[str, Any] = {"identity": self._identity(state, identity)}
        if name is not None:
            data["name"] = clean_text(name, "name")
        if aliases is not None:
            if not isinstance(aliases, list) or len(aliases) > MAX_ATTRIBUTES:
                raise EditError(f"aliases must be a list of at most {MAX_ATTRIBUTES} names")
            data["aliases"] = [alias for alias in (clean_text(a, "alias") for a in aliases) if alias]
        if attributes is not None:
            if not isinstance(attributes, dict) or len(attributes) > MAX_ATTRIBUTES:
                raise EditError(f"attributes must be a mapping of at most {MAX_ATTRIBUTES} entries")
            data["attributes"] = {clean_text(k, "attribute name"): clean_text(v, f"attribute {k!r}")
                                  for k, v in attributes.items()}
        if len(data) == 1:
            raise EditError("give a name, aliases or attributes")
        return self.log.append("name", data, who)

    def undo(self, who: str | None = None) -> EditEvent:
        target = self.state().undo_target
        if target is None:
            raise EditError("nothing to undo")
        return self.log.append("undo", {"target": target}, who)

    def redo(self, who: str | None = None) -> EditEvent:
        target = self.state().redo_target
        if target is None:
            raise EditError("nothing to redo")
        return self.log.append("redo", {"target": target}, who)


_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str) -> str:
    """A file- and id-safe form of a name (``Mary Jane`` -> ``Mary_Jane``)."""
    return _SLUG.sub("_", text.strip()).strip("_") or "unnamed"
