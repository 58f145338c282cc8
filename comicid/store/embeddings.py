"""Embeddings of a collection's instances (the record), and the instance table they are fused over.

The unit of retrieval and clustering is the *instance*: the face row and the body row of one
character instance are embedded separately by one shared model and fused as
``normalise(head(sum_i normalise(part_i)))`` (see :func:`comicid.models.embed.fuse_parts`; the embedding itself is
:func:`comicid.workflows.embed.embed_collection`). Part features are cached per (crop, model id) under ``COLLECTION/embeddings/``, so a second `embed` with the
same model costs nothing and an interrupted one resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


#: Columns of the instance table: one row per instance, labels taken from its parts.
INSTANCE_COLUMNS = ("instance_key", "book", "instance", "page", "panel", "sequence", "identity", "split",
                    "role", "source", "text", "parts")


@dataclass
class InstanceEmbeddings:
    """Instances of a collection and their embeddings, row for row.

    ``table`` has :data:`INSTANCE_COLUMNS` (``parts`` is e.g. ``"face+body"``); ``vectors`` is
    ``(N, D)`` float32, L2-normalised; ``model_id`` names the model that made them. ``views``, when
    computed, holds ``(V, N, D)`` embeddings of augmented views of each instance (the adaptive method
    learns from them).
    """

    table: pd.DataFrame
    vectors: np.ndarray
    model_id: str
    views: np.ndarray | None = None
    #: The model's label-free thresholds per clustering method (``EmbeddingModel.label_free_thresholds``):
    #: what ``--threshold auto`` uses when no dev rows are labelled.
    label_free_thresholds: dict[str, float] = field(default_factory=dict)
    #: Further clusterer parameters of the model's label-free rule per method
    #: (``EmbeddingModel.label_free_params``), used with the label-free threshold only; ``"bank"``: the
    #: model's naming threshold (:func:`comicid.workflows.bank.apply_bank`).
    label_free_params: dict[str, dict[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    def subset(self, mask: np.ndarray) -> InstanceEmbeddings:
        views = None if self.views is None else self.views[:, mask]
        return InstanceEmbeddings(self.table[mask].reset_index(drop=True), self.vectors[mask], self.model_id, views,
                                  self.label_free_thresholds, self.label_free_params)


def _first_non_empty(values: pd.Series) -> str:
    for value in values:
        if value:
            return str(value)
    return ""


def instance_table(parts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per instance (first-seen order) and the instance index of every part row."""
    codes, uniques = pd.factorize(parts["instance_key"], sort=False)
    grouped = parts.assign(_instance=codes).groupby("_instance", sort=True)
    table = pd.DataFrame({"instance_key": uniques.astype(str)})
    for column in INSTANCE_COLUMNS[1:-1]:
        table[column] = grouped[column].agg(_first_non_empty).to_numpy() if column in parts else ""
    table["parts"] = grouped["kind"].agg(lambda kinds: "+".join(sorted(kinds))).to_numpy()
    return table, codes.astype(np.int64)
