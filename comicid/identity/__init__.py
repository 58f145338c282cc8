"""Identity assignment: clusterers swappable by name, comic constraints, scopes, thresholds.

Every clusterer has hyper-parameters in ``__init__`` and
``fit_predict(embeddings (N, D) L2-normalised, constraints: Constraints | None) -> labels (N,)``
(int64, numbered by first appearance, -1 = unknown), keeps no state between calls, and names the
``__init__`` argument that ``--threshold`` sets in the class attribute ``threshold_parameter``.
A new method is added by putting its class in :data:`CLUSTERERS`. See ``docs/CLUSTERING.md``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from comicid.errors import ConfigError
from comicid.identity.agglomerative import AgglomerativeClusterer, confidence
from comicid.identity.calibration import (
    DEFAULT_THRESHOLDS,
    Calibration,
    ThresholdChoice,
    auto_threshold,
    calibrate_threshold,
)
from comicid.identity.constraints import Constraints, IdentityInputError
from comicid.identity.density import HDBSCANClusterer
from comicid.identity.graph import GraphClusterer
from comicid.identity.adaptive import AdaptiveClusterer  # after constraints: it imports them
from comicid.identity.scopes import SCOPES, assignment_table, cluster_by_scope, write_assignments


class Clusterer(Protocol):
    """What identity assignment needs from a clustering method."""

    threshold_parameter: str | None

    def fit_predict(self, embeddings: np.ndarray, constraints: Constraints | None = None) -> np.ndarray: ...


CLUSTERERS: dict[str, type] = {
    "agglomerative": AgglomerativeClusterer,
    "hdbscan": HDBSCANClusterer,
    "adaptive": AdaptiveClusterer,
    "graph": GraphClusterer,
}


def create_clusterer(name: str, **params: object) -> Clusterer:
    """Build a registered clusterer by name; unknown names and arguments raise :class:`ConfigError`."""
    if name not in CLUSTERERS:
        raise ConfigError(f"unknown clustering method {name!r}; choose one of {', '.join(sorted(CLUSTERERS))}")
    try:
        return CLUSTERERS[name](**params)
    except TypeError as error:  # an argument the method does not take
        raise ConfigError(f"clustering method {name!r}: {error}") from None


__all__ = [
    "CLUSTERERS", "DEFAULT_THRESHOLDS", "SCOPES", "AdaptiveClusterer", "AgglomerativeClusterer", "Calibration", "Clusterer",
    "Constraints", "GraphClusterer", "HDBSCANClusterer", "IdentityInputError", "ThresholdChoice", "assignment_table",
    "auto_threshold", "calibrate_threshold", "cluster_by_scope", "confidence", "create_clusterer",
    "write_assignments",
]
