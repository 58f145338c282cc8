"""Re-clustering that keeps what people decided, and identities that keep their ids across runs.

Three steps around any clusterer:

1. **Constraints from edits.** Instances a person placed in an identity (merge, split, move, confirm)
   are must-linked within their scope; "not this" and split-offs become cannot-links to the confirmed
   members of the rejected identity, and distinct confirmed identities are cannot-linked to each other
   (a person who keeps two identities apart means two characters). The clusterer honours them where it
   can (agglomerative and HDBSCAN both do).
2. **Matching to old identities.** In each scope, new clusters are matched one-to-one to the identities
   of the current view by member overlap with the Hungarian method
   (:func:`scipy.optimize.linear_sum_assignment`); a matched cluster takes the old id, so names, aliases
   and attributes (kept by id in the edit log) stay with it. An identity spanning several books is
   matched in each book and keeps one id. Unmatched clusters get ids never used before.
3. **Enforcement.** Every confirmed instance ends in the identity a person put it in, and no instance
   ends in an identity it was rejected from (it becomes unknown instead), whatever the clusterer did:
   the guarantee holds for every method, not only for those that take constraints.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from comicid.workflows.cluster import Assignment, assign_identities
from comicid.identity.constraints import IdentityInputError
from comicid.identity.curation import UNKNOWN, EditState
from comicid.identity.scopes import scope_keys
from comicid.store.embeddings import InstanceEmbeddings


def edit_constraints(keys: list[str], scopes: np.ndarray, state: EditState) -> tuple[np.ndarray, np.ndarray]:
    """Must-link and cannot-link index pairs (into ``keys``) from ``state``, within scopes only."""
    index = {key: i for i, key in enumerate(keys)}
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)  # (scope, identity) -> members
    for key, identity in state.confirmed.items():
        if key in index:
            groups[(str(scopes[index[key]]), identity)].append(index[key])
    must = [(members[0], other) for members in groups.values() for other in members[1:]]
    cannot = []
    by_scope: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for (scope, identity), members in sorted(groups.items()):
        by_scope[scope].append((identity, members))
    for entries in by_scope.values():  # one pair per two confirmed identities: must-links carry it to all
        cannot.extend((a[1][0], b[1][0]) for i, a in enumerate(entries) for b in entries[i + 1:])
    for key, identity in sorted(state.cannot):
        if key not in index:
            continue
        scope = str(scopes[index[key]])
        cannot.extend((index[key], member) for member in groups.get((scope, identity), [])[:1])
    return (np.array(must, dtype=np.int64).reshape(-1, 2), np.array(cannot, dtype=np.int64).reshape(-1, 2))


def match_identities(new: np.ndarray, old: np.ndarray, scopes: np.ndarray, reserved: set[str]) -> np.ndarray:
    """Rename new cluster ids to old identity ids by maximum overlap, one-to-one within each scope.

    Args:
        new, old: ``(N,)`` str ids of the same instances ("" = unknown), from the new clustering and
            from the current view.
        scopes: ``(N,)`` scope key of each instance.
        reserved: ids that must not be given to an unmatched cluster (every id ever used).
    """
    out = np.full(len(new), UNKNOWN, dtype=object)
    used = set(reserved) | {str(value) for value in old if value}
    for scope in sorted(set(scopes.tolist())):
        members = np.flatnonzero(scopes == scope)
        new_ids = sorted({str(v) for v in new[members] if v})
        old_ids = sorted({str(v) for v in old[members] if v})
        mapping: dict[str, str] = {}
        if new_ids and old_ids:
            row = {v: i for i, v in enumerate(new_ids)}
            column = {v: i for i, v in enumerate(old_ids)}
            overlap = np.zeros((len(new_ids), len(old_ids)))
            for a, b in zip(new[members], old[members]):
                if a and b:
                    overlap[row[a], column[b]] += 1
            rows, columns = linear_sum_assignment(overlap, maximize=True)
            mapping = {new_ids[r]: old_ids[c] for r, c in zip(rows, columns) if overlap[r, c] > 0}
        for cluster in new_ids:
            if cluster not in mapping:
                mapping[cluster] = _fresh(cluster, used)
                used.add(mapping[cluster])
        out[members] = [mapping.get(str(v), UNKNOWN) if v else UNKNOWN for v in new[members]]
    return out


def _fresh(cluster: str, used: set[str]) -> str:
    """``cluster`` itself if never used, else the next free ``<prefix>c<number>``."""
    if cluster not in used:
        return cluster
    match = re.fullmatch(r"(.*?)c(\d+)", cluster)
    prefix, number = (match.group(1), int(match.group(2))) if match else (cluster + "-", 0)
    while f"{prefix}c{number:04d}" in used:
        number += 1
    return f"{prefix}c{number:04d}"


def enforce_edits(labels: np.ndarray, keys: list[str], state: EditState) -> tuple[np.ndarray, int]:
    """Put confirmed instances where people put them and take rejected ones out; count the changes."""
    labels = labels.copy()
    index = {key: i for i, key in enumerate(keys)}
    changed = 0
    for key, identity in state.confirmed.items():
        if key in index and labels[index[key]] != identity:
            labels[index[key]] = identity
            changed += 1
    for key, identity in state.cannot:
        if key in index and labels[index[key]] == identity:
            labels[index[key]] = UNKNOWN
            changed += 1
    return labels, changed


def recluster_keeping_edits(embedded: InstanceEmbeddings, state: EditState, method: str = "agglomerative",
                            scope: str = "book", threshold: str | float | None = "auto",
                            params: dict[str, Any] | None = None, progress: bool = True,
                            on_fitted: Callable[[str, object], None] | None = None) -> Assignment:
    """Cluster ``embedded`` again under the decisions in ``state``; ids of matched identities persist.

    Returns an :class:`Assignment` whose ``info["edits"]`` counts the constraints used, identities kept
    and instances the enforcement step had to move (0 when the clusterer honoured every constraint).
    """
    keys = embedded.table["instance_key"].astype(str).tolist()
    scopes = scope_keys(embedded.table, scope)
    must, cannot = edit_constraints(keys, scopes, state)
    dropped_must = 0
    try:
        assignment = assign_identities(embedded, method=method, scope=scope, threshold=threshold, params=params,
                                       progress=progress, on_fitted=on_fitted, must_link=must, cannot_link=cannot)
    except IdentityInputError:
        # People's must-links contradict a panel's cannot-link (two confirmed members of one identity
        # share a panel): cluster without must-links; enforcement below still keeps the decisions.
        dropped_must = len(must)
        assignment = assign_identities(embedded, method=method, scope=scope, threshold=threshold, params=params,
                                       progress=progress, on_fitted=on_fitted, cannot_link=cannot)
    new = assignment.table["identity_id"].astype(str).to_numpy(dtype=object)
    old = np.array([state.labels.get(key, UNKNOWN) for key in keys], dtype=object)
    reserved = set(state.mentioned) | set(state.roster)
    matched = match_identities(new, old, scopes, reserved)
    final, moved = enforce_edits(matched, keys, state)
    table = assignment.table.copy()
    table["identity_id"] = final.astype(str)
    table.loc[table["identity_id"] == UNKNOWN, "confidence"] = 0.0
    kept = len({v for v in final if v} & {v for v in old if v})
    assignment.info["identities"] = int(len({v for v in final if v}))
    assignment.info["edits"] = {"must_links": int(len(must)), "cannot_links": int(len(cannot)),
                                "must_links_dropped": dropped_must, "identities_kept": int(kept),
                                "instances_enforced": int(moved), "confirmed": len(state.confirmed)}
    return Assignment(table=table, info=assignment.info)
