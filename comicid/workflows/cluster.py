"""Identity assignment of embedded instances: threshold resolution, clustering per scope, the table.

This is the library behind `comicid cluster` and the clustering half of `comicid evaluate`. The
threshold ``auto`` is calibrated on labelled ``split=dev`` instances when the data has enough of them,
and otherwise falls back to the documented default of the method (see docs/CLUSTERING.md); test rows
are never used to choose it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comicid.atomic import atomic_write
from comicid.errors import ComicidError, ConfigError
from comicid.identity.adaptive.clusterer import save_adapter
from comicid.identity import CLUSTERERS, SCOPES, auto_threshold, cluster_by_scope, create_clusterer
from comicid.models.embedding_model import EmbeddingModel
from comicid.store.collection import Collection
from comicid.identity.limits import AUTO, choose_method
from comicid.identity.scopes import scope_keys
from comicid.store.embeddings import InstanceEmbeddings
from comicid.workflows.embed import embed_collection


@dataclass
class Assignment:
    """The outcome of identity assignment: one row per instance, plus how it was made."""

    table: pd.DataFrame  # instance_key, book, identity_id, confidence
    info: dict[str, Any] = field(default_factory=dict)


def collection_params(method: str, models_dir: Path) -> dict[str, Any]:
    """Parameters a method gets from the collection: a ``state_dir`` for methods that checkpoint their
    stages (adaptive), so an interrupted run resumes where it stopped."""
    takes_state = method in CLUSTERERS and "state_dir" in CLUSTERERS[method]().get_params()
    return {"state_dir": str(models_dir / f"{method}-state")} if takes_state else {}


def views_needed(method: str) -> int:
    """Augmented views per crop that ``method`` learns from (0 for most methods)."""
    return int(getattr(CLUSTERERS.get(method), "image_views", 0))


def learnt_state_paths(folder: Path, scope_key: str) -> tuple[Path, Path]:
    """Where the adapter and centring vector learnt for one scope live: written by
    :func:`save_learnt_state`, read back by search."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", scope_key) or "collection"
    return folder / f"{name}.adapter.pt", folder / f"{name}.centre.npy"


def save_learnt_state(folder: Path) -> Callable[[str, object], None]:
    """An ``on_fitted`` callback keeping what a clusterer learnt per scope under ``folder``.

    For the adaptive method that is its adapter and centring vector (``<scope>.adapter.pt``,
    ``<scope>.centre.npy``); other methods learn nothing and write nothing. What an earlier run left in
    ``folder`` is removed first: it belongs to the assignment this run replaces, so search (which uses
    whatever learnt state the folder holds) never mixes runs or methods.
    """
    shutil.rmtree(folder, ignore_errors=True)

    def save(key: str, clusterer: object) -> None:
        adapter = getattr(clusterer, "adapter_", None)
        if adapter is None:
            return
        adapter_path, centre_path = learnt_state_paths(folder, key)
        save_adapter(adapter, adapter_path)
        with atomic_write(centre_path, "wb") as handle:
            np.save(handle, np.asarray(getattr(clusterer, "centre_", np.zeros(0)), dtype=np.float32))

    return save


def parse_threshold(value: str | float | None) -> float | None:
    """``auto``/None -> None (calibrate), else a float; a clear error for anything else."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--threshold must be 'auto' or a number, not {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise ConfigError(f"--threshold must be a non-negative number, not {value!r}")
    return number


def describe_threshold(info: dict[str, Any]) -> str:
    """How an assignment chose its cut, for people: ``0.65 (model)``, ``0.4 (dev)``, or with the
    model's per-scope rule ``silhouette cut per book (tolerance 0.1), else 0.65 (model)``; ``n/a`` for
    methods without a threshold."""
    if info.get("threshold") is None:
        return "n/a"
    tolerance = (info.get("params") or {}).get("silhouette_tolerance")
    rule = "" if tolerance is None else f"silhouette cut per {info.get('scope', 'scope')} (tolerance {tolerance:g}), else "
    return f"{rule}{float(info['threshold']):.3g} ({info['threshold_source']})"


def assign_identities(embedded: InstanceEmbeddings, method: str = "agglomerative", scope: str = "book",
                      threshold: str | float | None = "auto", params: dict[str, Any] | None = None,
                      calibration: InstanceEmbeddings | None = None, progress: bool = True,
                      on_fitted: Callable[[str, object], None] | None = None,
                      must_link: np.ndarray | None = None, cannot_link: np.ndarray | None = None) -> Assignment:
    """Cluster instances into identities.

    Args:
        embedded: the instances to cluster and their embeddings.
        method: a name in :data:`comicid.identity.CLUSTERERS`, or ``auto``: agglomerative when every
            scope holds at most :data:`comicid.identity.limits.AUTO_GRAPH_MIN` instances, else ``graph``
            (``info["method"]`` says which ran).
        scope: clustering unit (``sequence``, ``page``, ``book``, ``collection``); cannot-links come from
            panels inside it.
        threshold: ``auto`` or a number for the method's threshold parameter.
        params: other hyper-parameters of the method.
        calibration: instances whose ``split=dev`` labels calibrate ``auto`` (default: ``embedded``).
        on_fitted: called with ``(scope key, fitted clusterer)`` after each scope (to save adapters).
        must_link, cannot_link: optional ``(K, 2)`` index pairs into ``embedded`` that a person decided
            (see :mod:`comicid.workflows.persist`); pairs touching an instance without evidence are dropped.
    """
    if method not in CLUSTERERS and method != AUTO:
        raise ConfigError(f"unknown clustering method {method!r}; choose one of "
                          f"{', '.join([*sorted(CLUSTERERS), AUTO])}")
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    requested = method
    if method == AUTO:
        method = choose_method(pd.Series(scope_keys(embedded.table, scope)).value_counts().tolist())
    params = dict(params or {})
    parameter = getattr(CLUSTERERS[method], "threshold_parameter", None)
    value = parse_threshold(threshold)
    if parameter is None and value is not None:
        raise ConfigError(f"--method {method} takes no --threshold (it sets its own per-cluster thresholds); "
                          "leave --threshold at auto")
    source = "user"
    if parameter is not None and value is None:
        reference = calibration if calibration is not None else embedded
        reference = reference.subset(np.any(reference.vectors != 0, axis=1))
        choice = auto_threshold(reference.vectors, reference.table, method=method, scope=scope, params=params,
                                label_free=embedded.label_free_thresholds.get(method))
        value, source = choice.value, choice.source
        if source == "model":  # the rest of the model's label-free rule; what the caller set wins
            params = {**embedded.label_free_params.get(method, {}), **params}
    if parameter is not None and value is not None:
        params[parameter] = value
    try:
        clusterer = create_clusterer(method, **params).check_params()
    except ComicidError as error:
        if source != "user" or parameter is None:
            raise
        raise ConfigError(f"--threshold {value:g} does not suit --method {method}: {error}") from None
    # An instance whose embedding is zero carried no evidence (e.g. a blank crop under colour-hist):
    # it is left unknown rather than forced into a cluster.
    evidence = np.any(embedded.vectors != 0, axis=1)
    identity = np.full(len(embedded), "", dtype=object)
    confidence = np.zeros(len(embedded))
    if evidence.any():
        kept = embedded.subset(evidence)
        position = np.cumsum(evidence) - 1  # index into ``kept`` of each evidence row

        def kept_pairs(pairs: np.ndarray | None) -> np.ndarray | None:
            if pairs is None or len(pairs) == 0:
                return None
            pairs = np.asarray(pairs, dtype=np.int64)
            return position[pairs[evidence[pairs].all(axis=1)]]

        identity[evidence], confidence[evidence] = cluster_by_scope(kept.vectors, kept.table, clusterer,
                                                                    scope=scope, progress=progress,
                                                                    views=kept.views, on_fitted=on_fitted,
                                                                    must_link=kept_pairs(must_link),
                                                                    cannot_link=kept_pairs(cannot_link))
    table = pd.DataFrame({"instance_key": embedded.table["instance_key"].to_numpy(),
                          "book": embedded.table["book"].to_numpy(),
                          "identity_id": identity.astype(str), "confidence": confidence})
    info = {"method": method, "requested_method": requested, "scope": scope, "model": embedded.model_id, "threshold": value,
            "threshold_source": source if parameter is not None else "none", "params": params,
            "instances": int(len(table)), "without_evidence": int((~evidence).sum()), "identities": int(pd.Series(identity)[identity != ""].nunique())}
    return Assignment(table=table, info=info)
