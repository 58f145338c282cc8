"""Running a clusterer per scope (sequence, page, book, collection) and naming identities globally.

A cast is usually closed within a book (series, album, volume): clustering per book keeps unrelated
books from merging look-alike characters, and keeps each problem small. Labels of different scopes
are made globally unique by prefixing the scope key: ``"<book>/c0003"`` for book scope,
``"<book>/<page>/c0003"`` for page scope, ``"<book>/<sequence>/c0003"`` for sequence scope, plain
``"c0003"`` for the whole collection. An unknown page or sequence ("") is one scope per book.
"""

from __future__ import annotations


from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from comicid.data.manifest import display_key
from comicid.identity.base import confidence
from comicid.identity.constraints import Constraints, IdentityInputError, check_embeddings
from comicid.atomic import write_table
from comicid.store.collection import ASSIGNMENT_COLUMNS

SCOPES = ("sequence", "page", "book", "collection")
#: The user-facing ``comicid cluster --out`` file keeps a manifest's words: ``instance`` is the display
#: key (``book/instance``), ``identity`` the identity id. :func:`output_table` is the only conversion.
OUTPUT_COLUMNS = ("instance", "identity", "confidence")


def scope_keys(table: pd.DataFrame, scope: str) -> np.ndarray:
    """The scope key of each instance row (object array of str); a missing column counts as ""."""
    if scope not in SCOPES:
        raise IdentityInputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")

    def column(name: str) -> list[str]:
        return table[name].fillna("").astype(str).tolist() if name in table.columns else [""] * len(table)

    if scope == "collection":
        return np.full(len(table), "", dtype=object)
    parts = [column("book")] + ([column(scope)] if scope in ("page", "sequence") else [])
    return np.array(["/".join(values) for values in zip(*parts)], dtype=object)


def cluster_by_scope(embeddings: np.ndarray, table: pd.DataFrame, clusterer: object, scope: str = "book",
                     must_link: object = None, progress: bool = False, views: np.ndarray | None = None,
                     on_fitted: Callable[[str, object], None] | None = None,
                     cannot_link: object = None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster each scope separately with cannot-links from its panels; name identities globally.

    Args:
        embeddings: ``(N, D)`` instance embeddings (re-normalised here), one per row of ``table``.
        table: one row per instance, same order; columns ``book``, ``page``, ``panel``, ``sequence``
            (text, "" = unknown) as far as known.
        clusterer: any object with ``fit_predict(embeddings, constraints)`` (see ``CLUSTERERS``).
        scope: ``sequence``, ``page``, ``book`` or ``collection``.
        must_link: optional ``(M, 2)`` instance index pairs known to be one character; a pair that
            spans two scopes is refused (it could not be honoured).
        progress: show a tqdm bar over scopes.
        views: optional ``(V, N, D)`` embeddings of augmented views of each instance, passed (sliced
            to the scope) to clusterers that learn from them (``image_views > 0``: the adaptive method).
        on_fitted: called with ``(scope key, clusterer)`` after each scope, e.g. to save what the
            clusterer learnt there.
        cannot_link: optional ``(K, 2)`` instance index pairs known to be different characters (e.g. a
            person's "not this"), added to the panel cannot-links; pairs spanning scopes are moot.

    Returns:
        ``identity`` (object array of str ids, "" where the clusterer said -1/unknown) and
        ``confidence`` (float array in [0, 1], 0 for unknown), both ``(N,)``. Scopes run in sorted key
        order and labels are numbered by first appearance, so the output is deterministic.
    """
    unit = check_embeddings(embeddings)  # (N, D), L2-normalised
    if len(table) != len(unit):
        raise IdentityInputError(f"the instance table has {len(table)} rows but there are {len(unit)} embeddings")
    keys = scope_keys(table, scope)
    constraints = Constraints.from_instances(table, must_link=must_link)
    if cannot_link is not None:
        extra = Constraints(cannot_link=cannot_link).cannot_link
        constraints = Constraints(cannot_link=np.concatenate([constraints.cannot_link, extra]),
                                  must_link=constraints.must_link)
    constraints.check(len(unit))
    split = constraints.must_link[keys[constraints.must_link[:, 0]] != keys[constraints.must_link[:, 1]]]
    if len(split):
        a, b = int(split[0, 0]), int(split[0, 1])
        raise IdentityInputError(f"must-linked instances {a} and {b} are in different {scope} scopes "
                                 f"({keys[a]!r} and {keys[b]!r}); cluster with a wider scope")
    identity = np.full(len(unit), "", dtype=object)
    scores = np.zeros(len(unit))
    scopes = pd.Series(keys, dtype=object).groupby(keys, sort=True).indices  # key -> sorted row positions
    for key, members in tqdm(scopes.items(), total=len(scopes), desc=f"clustering per {scope}", unit=scope,
                             disable=not progress):
        extra = {"views": views[:, members]} if views is not None and getattr(clusterer, "image_views", 0) else {}
        labels = np.asarray(clusterer.fit_predict(unit[members], constraints.subset(members), **extra),
                            dtype=np.int64)
        if on_fitted is not None:
            on_fitted(str(key), clusterer)
        prefix = f"{key}/" if scope != "collection" else ""
        identity[members] = [f"{prefix}c{label:04d}" if label >= 0 else "" for label in labels]
        scores[members] = confidence(unit[members], labels, neighbours=getattr(clusterer, "neighbours_", None))
    return identity, scores


def output_table(table: pd.DataFrame) -> pd.DataFrame:
    """The ``--out`` form of an assignment table (the library's
    :data:`~comicid.store.collection.ASSIGNMENT_COLUMNS` -> :data:`OUTPUT_COLUMNS`)."""
    missing = [column for column in ASSIGNMENT_COLUMNS if column not in table.columns]
    if missing:
        raise IdentityInputError(f"an assignment table needs columns {', '.join(missing)}")
    return pd.DataFrame({"instance": [display_key(str(value)) for value in table["instance_key"]],
                         "identity": [str(value) for value in table["identity_id"]],
                         "confidence": table["confidence"].to_numpy(dtype=np.float64)})


def write_assignments(table: pd.DataFrame, path: str | Path) -> Path:
    """Write an assignment table as the user-facing file (:func:`output_table`), atomically, as Parquet for
    ``.parquet``/``.pq`` and CSV otherwise."""
    return write_table(output_table(table), Path(path), float_format="%.6g")
