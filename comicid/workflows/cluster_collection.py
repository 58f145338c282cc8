"""The job behind `comicid cluster` and :func:`comicid.cluster` on a collection: embed (cached), cluster
keeping what people decided, name clusters from a character bank, and save everything.

It sits above :mod:`comicid.workflows.cluster` (clustering embedded instances) and
:mod:`comicid.workflows.persist` (re-clustering that keeps edits), which both stay usable on their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comicid.identity.curation import Curator
from comicid.models.embedding_model import EmbeddingModel
from comicid.store.collection import Collection
from comicid.store.edits import EditLog
from comicid.store.vectors import save_instance_vectors
from comicid.errors import ConfigError
from comicid.workflows.bank import CharacterBank, apply_bank, check_naming_threshold
from comicid.workflows.cluster import Assignment, assign_identities, collection_params, save_learnt_state, views_needed
from comicid.workflows.embed import embed_collection
from comicid.workflows.persist import recluster_keeping_edits


def cluster_collection(collection: Collection, model: EmbeddingModel, method: str = "agglomerative",
                       scope: str = "book", threshold: str | float | None = "auto",
                       params: dict[str, Any] | None = None, device: str = "cpu", batch_size: int = 64,
                       progress: bool = True, keep_edits: bool | None = None,
                       bank: str | Path | None = None, bank_threshold: float | None = None) -> Assignment:
    """Embed ``collection`` (cached), cluster it, and keep the result.

    Writes ``assignments.parquet`` (atomically, with how it was made in the collection's meta), the
    instance vectors the viewer and the bank read, and what the method learnt per scope (the adaptive
    method's adapters, read back by search); a method that checkpoints its stages resumes from
    ``COLLECTION/models/<method>-state``.

    ``keep_edits`` (default: on once the collection has an edit log) turns a person's decisions into
    constraints: confirmed labels become must-links, "not this" edits cannot-links, and named identities
    keep their id and name. ``bank`` (a folder made by `comicid bank`) names the clusters that match a
    banked character and keeps the others as new identities; ``bank_threshold`` overrides the naming
    threshold (default: the model's, see :func:`comicid.workflows.bank.naming_threshold`).
    """
    if bank_threshold is not None:  # refused before the embedding and clustering it would follow
        if bank is None:
            raise ConfigError("a naming threshold (--bank-threshold) needs a bank to name from (--bank DIR)")
        check_naming_threshold(bank_threshold)
    embedded = embed_collection(collection, model, device=device, batch_size=batch_size, progress=progress,
                                n_views=views_needed(method))
    options: dict[str, Any] = dict(method=method, scope=scope, threshold=threshold,
                                   params={**collection_params(method, collection.models_dir), **(params or {})},
                                   progress=progress, on_fitted=save_learnt_state(collection.adapters_dir))
    keep = EditLog(collection.root).exists() if keep_edits is None else keep_edits
    protected: set[str] = set()
    if keep and collection.assignments_path.is_file():
        state = Curator(collection).state()
        assignment = recluster_keeping_edits(embedded, state, **options)
        protected = set(state.confirmed.values()) | {i for i, entry in state.roster.items() if entry.name}
    else:
        assignment = assign_identities(embedded, **options)
    if bank is not None:
        assignment = apply_bank(assignment, embedded, CharacterBank(bank), protected=protected,
                                threshold=bank_threshold)
    collection.write_assignments(assignment.table, assignment.info)
    save_instance_vectors(collection, embedded)
    return assignment
